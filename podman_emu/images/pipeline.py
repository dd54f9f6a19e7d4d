"""Plumbing shared by materialize and download: a bounded hand-off between two threads, hashing
readers, sparse writes and atomic placement (through fsutil.replace_atomically).

Two threads instead of one because the expensive steps (lzma/zlib/zstd decompression, sha256, file
writes) all release the GIL: decompressing in one thread while the other hashes and writes gets close
to the throughput of ``xz -dc | sha256sum``, which also uses two processes. The hand-off queue is
bounded, so memory stays at a few chunks whatever the image size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from podman_emu.errors import ImageError
from podman_emu.fsutil import PendingFile, replace_atomically
from podman_emu.images.formats import ByteReader

CHUNK_SIZE = 1 << 20
QUEUE_DEPTH = 8
# Zero detection granularity for sparse output: a multiple of every common filesystem block size.
SPARSE_BLOCK = 1 << 16
_ZERO_CHUNK = bytes(CHUNK_SIZE)
_ZERO_BLOCK = bytes(SPARSE_BLOCK)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def normalize_sha256(value: str | None, *, what: str = "sha256") -> str | None:
    """Accept upper or lower case hex (as sha256sum and web pages print it); refuse anything else early
    rather than reporting a confusing mismatch after a long copy."""
    if value is None:
        return None
    cleaned = value.strip().lower()
    if cleaned.startswith("sha256:"):
        cleaned = cleaned[len("sha256:") :]
    if not _SHA256_RE.fullmatch(cleaned):
        raise ImageError(
            f"{what} {value!r} is not 64 hexadecimal digits", hint="pass the checksum as sha256sum prints it"
        )
    return cleaned


class Cancelled(Exception):
    """The receiving side went away; the sending thread should stop quietly."""


class _End:
    pass


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Channel:
    """A bounded queue of byte chunks between one sending and one receiving thread. The sender ends it
    with close() or fail(exc); the receiver re-raises the sender's exception. cancel() unblocks a
    sender whose receiver has given up."""

    def __init__(self, depth: int = QUEUE_DEPTH) -> None:
        self._queue: queue.Queue[bytes | _End | _Failure] = queue.Queue(depth)
        self._cancelled = threading.Event()

    def _put(self, item: bytes | _End | _Failure) -> None:
        while not self._cancelled.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise Cancelled

    def put(self, chunk: bytes) -> None:
        if chunk:
            self._put(chunk)

    def close(self) -> None:
        self._put(_End())

    def fail(self, error: BaseException) -> None:
        with contextlib.suppress(Cancelled):
            self._put(_Failure(error))

    def cancel(self) -> None:
        self._cancelled.set()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item


class ChannelReader:
    """The receiving end of a Channel as a file object, for decompressors that pull their input."""

    def __init__(self, channel: Channel) -> None:
        self._chunks = iter(channel)
        self._current = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        if not self._current:
            chunk = next(self._chunks, b"")
            self._current = memoryview(chunk)
        if size < 0 or size >= len(self._current):
            data, self._current = bytes(self._current), memoryview(b"")
            return data
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data


class HashingReader:
    """Reads a file, hashing and counting every byte that passes, and reporting progress."""

    def __init__(self, raw: ByteReader, advance: Callable[[int], None]) -> None:
        self._raw = raw
        self._advance = advance
        self.hash = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self.hash.update(data)
            self.count += len(data)
            self._advance(len(data))
        return data

    def drain(self) -> None:
        """Hash whatever the decompressor left unread, so the digest always covers the whole file."""
        while self.read(CHUNK_SIZE):
            pass


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    # Daemon, so that an interrupted CLI never hangs on exit; every caller also joins it.
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


class SparseWriter:
    """Writes a stream of chunks to a file descriptor, leaving holes for zero blocks: a raw disk is
    mostly zeros, and seeking over them keeps the copy fast and the file small. The final size is
    set with ftruncate so trailing zeros still count."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.offset = 0

    def write(self, chunk: bytes) -> None:
        if len(chunk) == CHUNK_SIZE and chunk == _ZERO_CHUNK:
            self.offset += CHUNK_SIZE
            return
        start = 0
        for block_start in range(0, len(chunk), SPARSE_BLOCK):
            block = chunk[block_start : block_start + SPARSE_BLOCK]
            if block == _ZERO_BLOCK[: len(block)]:
                self._pwrite(memoryview(chunk)[start:block_start], self.offset + start)
                start = block_start + len(block)
        self._pwrite(memoryview(chunk)[start:], self.offset + start)
        self.offset += len(chunk)

    def _pwrite(self, data: memoryview, offset: int) -> None:
        while data:
            written = os.pwrite(self._fd, data, offset)
            data = data[written:]
            offset += written

    def finish(self) -> None:
        os.ftruncate(self._fd, self.offset)


@contextlib.contextmanager
def placed_output(destination: Path) -> Iterator[PendingFile]:
    """fsutil.replace_atomically for an image: a private (0600) temp file beside ``destination``,
    renamed over it only when the block completes; failures to start are ImageErrors."""
    directory = destination.parent
    if not directory.is_dir():
        raise ImageError(f"cannot write {destination}: {directory} is not a directory")
    with contextlib.ExitStack() as stack:
        try:
            output = stack.enter_context(replace_atomically(destination, mode=0o600))
        except OSError as exc:
            raise ImageError(f"cannot create a file in {directory}: {exc.strerror or exc}") from None
        yield output


def check_digest(actual: str, expected: str | None, *, what: str, subject: str) -> None:
    if expected is not None and actual != expected:
        raise ImageError(
            f"{what} mismatch for {subject}: expected {expected}, got {actual}",
            hint="the file is corrupt, truncated or not the one you meant; fetch it again",
        )
