"""Put a disk image in place: decompress, checksum and write in one streaming pass."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from podman_emu.errors import ImageError
from podman_emu.images.formats import (
    CORRUPT_DATA_ERRORS,
    ByteReader,
    DiskFormat,
    decompressing_reader,
    open_source,
    sniff_disk,
)
from podman_emu.images.pipeline import (
    CHUNK_SIZE,
    Cancelled,
    Channel,
    HashingReader,
    SparseWriter,
    check_digest,
    normalize_sha256,
    placed_output,
    start_thread,
)
from podman_emu.images.progress import byte_progress


@dataclass(frozen=True)
class Materialized:
    format: DiskFormat
    source_sha256: str
    disk_sha256: str | None  # of the bytes written; only computed when asked for (it costs a hash pass)
    disk_size: int


def materialize(
    source: Path,
    destination: Path,
    *,
    expected_sha256: str | None = None,
    expected_uncompressed_sha256: str | None = None,
    hash_output: bool = False,
    progress: bool = False,
    before_place: Callable[[Path], None] | None = None,
) -> Materialized:
    """Stream ``source`` (decompressed if needed) into ``destination``. ``destination`` appears
    only when the copy is complete and every given checksum matches; on any failure nothing is left
    there (an existing file is replaced only on success). Returns the format, the sha256 of the
    source bytes as read, and the sha256 of the written disk when ``hash_output`` or
    ``expected_uncompressed_sha256`` asks for it. ``before_place`` is called with the complete,
    verified temporary file before it is renamed into place; if it raises, nothing is placed
    (install_disk checks the arch and resizes there)."""
    expected = normalize_sha256(expected_sha256)
    expected_disk = normalize_sha256(expected_uncompressed_sha256, what="uncompressed sha256")
    disk_format = sniff_disk(source)
    # For an uncompressed source the written bytes are the source bytes: no second hash is needed.
    want_disk_digest = hash_output or expected_disk is not None
    written_hash = hashlib.sha256() if want_disk_digest and disk_format.compression is not None else None
    verb = "Decompressing" if disk_format.compression else "Copying"
    channel = Channel()
    try:
        with (
            open_source(source) as raw,
            byte_progress(f"{verb} {source.name}", os.fstat(raw.fileno()).st_size, enabled=progress) as advance,
            placed_output(destination) as output,
        ):
            reader = HashingReader(raw, advance)

            def produce() -> None:
                # Reading, hashing the source and decompressing happen here; the caller's thread writes.
                try:
                    decoded: ByteReader = reader
                    if disk_format.compression is not None:
                        decoded = decompressing_reader(reader, disk_format.compression)
                    while chunk := decoded.read(CHUNK_SIZE):
                        channel.put(chunk)
                    reader.drain()
                    channel.close()
                except Cancelled:
                    pass
                except BaseException as exc:
                    channel.fail(exc)

            writer = SparseWriter(output.fd)
            worker = start_thread("materialize-read", produce)
            try:
                for chunk in channel:
                    if written_hash is not None:
                        written_hash.update(chunk)
                    writer.write(chunk)
                writer.finish()
            finally:
                channel.cancel()
                worker.join()
            source_digest = reader.hash.hexdigest()
            check_digest(source_digest, expected, what="sha256", subject=str(source))
            disk_digest = written_hash.hexdigest() if written_hash is not None else None
            if disk_format.compression is None and want_disk_digest:
                disk_digest = source_digest
            if disk_digest is not None:
                check_digest(disk_digest, expected_disk, what="uncompressed sha256", subject=str(source))
            if before_place is not None:
                output.sync()
                before_place(output.path)
    except CORRUPT_DATA_ERRORS as exc:
        raise ImageError(
            f"{source} is corrupt or truncated ({disk_format.compression} data: {exc})",
            hint="fetch the image again; nothing was written",
        ) from None
    except OSError as exc:
        raise _copy_error(exc, source, destination) from None
    return Materialized(disk_format, source_digest, disk_digest, writer.offset)


def _copy_error(exc: OSError, source: Path, destination: Path) -> ImageError:
    if exc.errno == errno.ENOSPC:
        hint = f"free space in {destination.parent} (the decompressed disk can be several GB)"
        return ImageError(f"no space left while writing {destination}", hint=hint)
    return ImageError(f"copying {source} to {destination} failed: {exc.strerror or exc}")
