"""What a disk file is, judged from its bytes alone, and how to read it decompressed.

Podman stores a decompressed qcow2 under a ``.xz`` name, so nothing here ever looks at a file name.
"""

from __future__ import annotations

import gzip
import lzma
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal, Protocol, cast

import zstandard

from podman_emu.errors import ImageError
from podman_emu.fsutil import NotRegularFile, open_regular

Container = Literal["qcow2", "raw"]
Compression = Literal["xz", "gz", "zst"]

QCOW2_MAGIC = b"QFI\xfb"
XZ_MAGIC = b"\xfd7zXZ\x00"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# zstd skippable frames (0x184D2A50..0x184D2A5F, little endian) may precede the first real frame.
_ZSTD_SKIPPABLE_LOW = 0x184D2A50

# Enough decompressed bytes to see a GPT header on a 4096-byte-sector disk (LBA 1 = byte 4096).
_SNIFF_BYTES = 4096 + 512

# Formats qemu-img understands that podman's `-drive if=virtio,file=…` (no format=) would probe but that
# podman-emu does not convert; naming them gives the user the right qemu-img command.
_OTHER_CONTAINERS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"KDMV", "vmdk"),
    (0, b"conectix", "vpc/vhd"),
    (0, b"vhdxfile", "vhdx"),
    (64, b"\x7f\x10\xda\xbe", "vdi"),
    (0, b"QEVM", "qed"),
    (0, b"LUKS\xba\xbe", "luks"),
    (0, b"BZh", "bzip2-compressed"),
    (0, b"\x04\x22\x4d\x18", "lz4-compressed"),
)


class ByteReader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class DiskFormat:
    """The container format after decompression, and the compression wrapped around it (if any)."""

    container: Container
    compression: Compression | None

    def describe(self) -> str:
        return self.container if self.compression is None else f"{self.container} ({self.compression})"


def compression_of(head: bytes) -> Compression | None:
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(GZIP_MAGIC):
        return "gz"
    if head.startswith(ZSTD_MAGIC):
        return "zst"
    if len(head) >= 4 and (struct.unpack_from("<I", head)[0] & 0xFFFFFFF0) == _ZSTD_SKIPPABLE_LOW:
        return "zst"
    return None


def container_of(head: bytes) -> Container | None:
    """qcow2 by its magic; raw by a partition table (MBR boot signature, or a GPT header at LBA 1 for
    512- or 4096-byte sectors). A raw file without either cannot be booted by UEFI firmware, so it is
    not accepted as a disk: that turns a mistaken file (a tarball, an ISO, zeros) into a clear error."""
    if head.startswith(QCOW2_MAGIC):
        return "qcow2"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "raw"
    if head[512:520] == b"EFI PART" or head[4096:4104] == b"EFI PART":
        return "raw"
    return None


def _unknown_format(path: Path, head: bytes, inside: Compression | None) -> ImageError:
    where = f"{path} (inside its {inside} compression)" if inside else str(path)
    for offset, magic, name in _OTHER_CONTAINERS:
        if head[offset : offset + len(magic)] == magic:
            return ImageError(
                f"{where} is a {name} image; podman-emu uses qcow2 or raw disks",
                hint=f"convert it first: qemu-img convert -O qcow2 {path} disk.qcow2",
            )
    if inside is not None and compression_of(head) is not None:
        return ImageError(f"{where} is compressed twice", hint="decompress the outer layer first")
    if not head:
        return ImageError(f"{where} is empty", hint="the file was not downloaded or copied completely")
    if not head.strip(b"\x00"):
        return ImageError(
            f"{where} starts with zeros only: no qcow2 header and no partition table",
            hint="a bootable aarch64 disk is a qcow2 file or a raw disk with a GPT",
        )
    return ImageError(
        f"{where} is not a qcow2 or raw disk image (unrecognised first bytes {head[:8].hex()})",
        hint="use the Fedora CoreOS qemu image (…-qemu.aarch64.qcow2.xz) or another aarch64 qcow2/raw disk",
    )


def open_source(path: Path) -> BinaryIO:
    """Open a disk file for reading, turning every OS-level problem into an ImageError."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except FileNotFoundError:
        raise ImageError(f"{path} does not exist", hint="check the path given to --image") from None
    except NotRegularFile as exc:
        if exc.kind == "a directory":
            raise ImageError(f"{path} is a directory, not a disk image", hint="pass the image file itself") from None
        raise ImageError(
            f"{path} is {exc.kind}, not a disk image file",
            hint="podman-emu reads the image several times (format, architecture, copy), which a pipe or "
            "device cannot give; save it to a file first (e.g. `cat > disk.qcow2.xz`) and pass that file.",
        ) from None
    except OSError as exc:
        raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None


def decompressing_reader(raw: ByteReader, compression: Compression) -> ByteReader:
    """A file object yielding the decompressed bytes of ``raw``; every read is bounded by its size
    argument, so memory never depends on the compression ratio. Concatenated xz streams, gzip members
    and zstd frames are all read, as the command-line tools do. Truncated or corrupt input raises
    (EOFError, lzma.LZMAError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)."""
    # The decompressors only ever call read() on their input, which is all a ByteReader promises.
    source = cast(IO[bytes], raw)
    if compression == "xz":
        return lzma.LZMAFile(source, "rb")
    if compression == "gz":
        return gzip.GzipFile(fileobj=source, mode="rb")
    # zstandard's stream_reader returns a short, error-free EOF on a truncated frame, so the raw bytes
    # also pass through a frame walker that knows whether the input ended on a frame boundary.
    walker = ZstdFrameWalker(raw)
    reader = zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], walker), read_across_frames=True)
    return _ZstdReader(reader, walker)


# What corrupt or truncated compressed data raises (BadGzipFile is an OSError, so list it before any
# OSError handler).
CORRUPT_DATA_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    lzma.LZMAError,
    gzip.BadGzipFile,
    zlib.error,
    zstandard.ZstdError,
)
_UNREADABLE_ERRORS: tuple[type[Exception], ...] = (*CORRUPT_DATA_ERRORS, OSError)


def sniff_disk(path: Path) -> DiskFormat:
    """The disk's format from its magic bytes (never its name). A compressed file is decompressed just
    far enough to see the inner magic."""
    with open_source(path) as raw:
        try:
            head = raw.read(_SNIFF_BYTES)
        except OSError as exc:
            raise ImageError(f"cannot read {path}: {exc.strerror or exc}") from None
        compression = compression_of(head)
        if compression is None:
            container = container_of(head)
            if container is None:
                raise _unknown_format(path, head, None)
            return DiskFormat(container, None)
        raw.seek(0)
        try:
            inner = read_at_most(decompressing_reader(raw, compression), _SNIFF_BYTES)
        except _UNREADABLE_ERRORS as exc:
            raise ImageError(
                f"{path} looks {compression}-compressed but cannot be decompressed: {exc}",
                hint="the file is corrupt or truncated; download it again",
            ) from None
        container = container_of(inner)
        if container is None:
            raise _unknown_format(path, inner, compression)
        return DiskFormat(container, compression)


def read_at_most(reader: ByteReader, size: int) -> bytes:
    """Read until ``size`` bytes or EOF (decompressing readers may return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        block = reader.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


class ZstdFrameWalker:
    """Passes bytes through unchanged while following zstd's frame and block headers (RFC 8878 §3.1),
    so that the end of input can be checked to fall exactly on a frame boundary. Only headers are
    parsed; block contents are skipped, so this costs almost nothing next to decompression."""

    def __init__(self, raw: ByteReader) -> None:
        self._raw = raw
        self._pending = bytearray()  # bytes of a header not yet complete
        self._skip = 0  # payload bytes to pass before the next header
        self._state = "frame"  # "frame" | "block" | "checksum"
        self._checksum_after_last = False
        self._last_block = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._walk(memoryview(data))
        return data

    def _walk(self, data: memoryview) -> None:
        pos = 0
        while pos < len(data):
            if self._skip:
                step = min(self._skip, len(data) - pos)
                self._skip -= step
                pos += step
                continue
            need = self._header_size()
            take = min(need - len(self._pending), len(data) - pos)
            self._pending += data[pos : pos + take]
            pos += take
            # The frame header's length is known only once its descriptor byte has arrived.
            if len(self._pending) == self._header_size():
                self._consume_header()

    def _header_size(self) -> int:
        if self._state == "frame":
            if len(self._pending) < 5:
                return 5
            if self._is_skippable():
                return 8
            descriptor = self._pending[4]
            fcs_flag, single, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
            fcs_size = (1 if single else 0, 2, 4, 8)[fcs_flag]
            return 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + fcs_size
        return 3 if self._state == "block" else 4

    def _is_skippable(self) -> bool:
        magic = struct.unpack_from("<I", self._pending)[0]
        return bool((magic & 0xFFFFFFF0) == _ZSTD_SKIPPABLE_LOW)

    def _consume_header(self) -> None:
        header = bytes(self._pending)
        self._pending.clear()
        if self._state == "frame":
            if self._is_skippable_header(header):
                self._skip = struct.unpack_from("<I", header, 4)[0]
                return
            if header[:4] != ZSTD_MAGIC:
                raise zstandard.ZstdError("data after the last zstd frame is not a zstd frame")
            self._checksum_after_last = bool(header[4] & 0x04)
            self._state = "block"
        elif self._state == "block":
            value = header[0] | header[1] << 8 | header[2] << 16
            last, kind, size = value & 1, (value >> 1) & 3, value >> 3
            if kind == 3:
                raise zstandard.ZstdError("reserved zstd block type")
            self._skip = 1 if kind == 1 else size  # an RLE block stores one byte
            if last:
                self._state = "checksum" if self._checksum_after_last else "frame"
        else:
            self._state = "frame"

    @staticmethod
    def _is_skippable_header(header: bytes) -> bool:
        return bool((struct.unpack_from("<I", header)[0] & 0xFFFFFFF0) == _ZSTD_SKIPPABLE_LOW)

    def at_frame_boundary(self) -> bool:
        return self._state == "frame" and not self._pending and not self._skip


class _ZstdReader:
    """stream_reader plus the truncation check it lacks."""

    def __init__(self, reader: zstandard.ZstdDecompressionReader, walker: ZstdFrameWalker) -> None:
        self._reader = reader
        self._walker = walker

    def read(self, size: int = -1) -> bytes:
        data: bytes = self._reader.read(size)
        if not data and size != 0 and not self._walker.at_frame_boundary():
            raise EOFError("zstd input ended in the middle of a frame")
        return data
