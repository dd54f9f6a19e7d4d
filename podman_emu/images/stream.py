"""Fedora CoreOS aarch64 images by stream name, verified and cached.

The stream metadata (``streams/<stream>.json``) names one qcow2.xz per arch with its sha256 and,
usually, the sha256 of the decompressed qcow2. Both are checked while downloading: the compressed
bytes are hashed as they arrive and, in a second thread, decompressed and hashed, so a bad image is
caught before it is ever placed in the cache, at no extra wall-clock time on any real network.

Cache layout (``cache_dir()/images/``), keyed by the compressed sha256 so that two streams pointing at
the same build share one file:
    <sha256>.qcow2.xz          the verified image, exactly as published
    <sha256>.meta.json         stream, release, location, checksums, size, time fetched
    <sha256>.qcow2.xz.partial  an interrupted download, resumed with an HTTP Range request
    <sha256>.lock              held while downloading, so two commands never write one partial file
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import httpx

from podman_emu import __version__, fsutil, paths
from podman_emu.errors import ImageError
from podman_emu.images.formats import CORRUPT_DATA_ERRORS, decompressing_reader
from podman_emu.images.pipeline import (
    CHUNK_SIZE,
    Cancelled,
    Channel,
    ChannelReader,
    check_digest,
    normalize_sha256,
    placed_output,
    start_thread,
)
from podman_emu.images.progress import Advance, byte_progress

STREAMS = ("stable", "testing", "next")
STREAM_URL = "https://builds.coreos.fedoraproject.org/streams/{stream}.json"
ARCH = "aarch64"
ARTIFACT = "qemu"
FORMAT = "qcow2.xz"
DOWNLOAD_ATTEMPTS = 4
# Another podman-emu downloading the same image holds its lock; a real download of the ~700 MB
# image can take many minutes, a hung one must not block every later convert without a word.
DOWNLOAD_LOCK_WAIT_S = 20 * 60
_RETRY_PAUSE = 1.0
_TIMEOUT = httpx.Timeout(30.0, read=60.0)
_STREAM_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class CachedImage:
    path: Path
    stream: str
    release: str
    sha256: str  # of the .qcow2.xz file, as published
    uncompressed_sha256: str | None  # of the .qcow2 inside, when the stream publishes it
    size: int
    location: str
    fetched: str  # ISO 8601, UTC
    # Set when the stream metadata could not be fetched and this cached image was used instead.
    offline_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass(frozen=True)
class StreamDisk:
    """One stream's aarch64 qemu disk, as the metadata describes it."""

    stream: str
    release: str
    location: str
    sha256: str
    uncompressed_sha256: str | None


def images_dir() -> Path:
    return paths.cache_dir() / "images"


def _client() -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=_TIMEOUT, headers={"User-Agent": f"podman-emu/{__version__}"})


# --------------------------------------------------------------------------------------------------
# Metadata


def parse_stream_metadata(document: object, stream: str, base_url: str) -> StreamDisk:
    """Pick ``architectures.aarch64.artifacts.qemu.formats["qcow2.xz"].disk`` out of a stream
    document; a relative location (a mirror's) is resolved against the metadata URL."""

    def step(node: object, key: str, path: str) -> object:
        if not isinstance(node, dict) or key not in node:
            found = ", ".join(sorted(node)) if isinstance(node, dict) else type(node).__name__
            raise ImageError(
                f"the {stream} stream metadata has no {path}{key} (found: {found or 'nothing'})",
                hint="this stream publishes no aarch64 qemu image; try another stream or pass --image",
            )
        value: object = node[key]
        return value

    architectures = step(document, "architectures", "")
    arch = step(architectures, ARCH, "architectures.")
    artifacts = step(arch, "artifacts", f"architectures.{ARCH}.")
    qemu = step(artifacts, ARTIFACT, f"architectures.{ARCH}.artifacts.")
    formats = step(qemu, "formats", f"architectures.{ARCH}.artifacts.{ARTIFACT}.")
    disk = step(step(formats, FORMAT, f"…{ARTIFACT}.formats."), "disk", f"…formats.{FORMAT}.")
    if not isinstance(disk, dict) or not isinstance(disk.get("location"), str):
        raise ImageError(f"the {stream} stream metadata has no location for the aarch64 {FORMAT} disk")
    sha256 = normalize_sha256(_string(disk.get("sha256")), what="the stream's sha256")
    if sha256 is None:
        raise ImageError(f"the {stream} stream metadata gives no sha256 for the aarch64 {FORMAT} disk")
    uncompressed = normalize_sha256(_string(disk.get("uncompressed-sha256")), what="the stream's uncompressed-sha256")
    release = qemu.get("release") if isinstance(qemu, dict) else None
    return StreamDisk(
        stream=stream,
        release=release if isinstance(release, str) else "unknown",
        location=str(httpx.URL(base_url).join(disk["location"])),
        sha256=sha256,
        uncompressed_sha256=uncompressed,
    )


def _string(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ImageError(f"unexpected checksum value {value!r} in the stream metadata")


def fetch_stream_disk(stream: str, *, stream_url: str | None = None) -> StreamDisk:
    url = _stream_url(stream, stream_url)
    with _client() as client:
        response = client.get(url)
        response.raise_for_status()
    try:
        document = response.json()
    except ValueError as exc:
        raise ImageError(f"the stream metadata at {url} is not JSON ({exc})") from None
    return parse_stream_metadata(document, stream, url)


def _stream_url(stream: str, stream_url: str | None) -> str:
    if stream_url is not None:
        return stream_url
    if stream not in STREAMS:
        raise ImageError(
            f"unknown Fedora CoreOS stream {stream!r}",
            hint=f"use one of {', '.join(STREAMS)}, or --stream-url for a mirror",
        )
    return STREAM_URL.format(stream=stream)


# --------------------------------------------------------------------------------------------------
# Cache


def _meta_path(directory: Path, sha256: str) -> Path:
    return directory / f"{sha256}.meta.json"


def _image_path(directory: Path, sha256: str) -> Path:
    return directory / f"{sha256}.{FORMAT}"


def _load_entry(meta: Path) -> CachedImage | None:
    try:
        data = json.loads(meta.read_text())
        sha256 = normalize_sha256(data["sha256"])
        assert sha256 is not None
        image = _image_path(meta.parent, sha256)
        if image.stat().st_size != data["size"]:
            return None  # replaced or damaged behind our back; a fresh download will fix it
        return CachedImage(
            path=image,
            stream=str(data["stream"]),
            release=str(data["release"]),
            sha256=sha256,
            uncompressed_sha256=normalize_sha256(data.get("uncompressed_sha256")),
            size=int(data["size"]),
            location=str(data["location"]),
            fetched=str(data["fetched"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AssertionError, ImageError):
        return None


def list_cached_images() -> list[CachedImage]:
    """Every complete, recorded image in the cache, newest first (for ``podman-emu images``)."""
    directory = images_dir()
    if not directory.is_dir():
        return []
    entries = [entry for meta in directory.glob("*.meta.json") if (entry := _load_entry(meta))]
    return sorted(entries, key=lambda entry: entry.fetched, reverse=True)


def _cached_for_stream(stream: str) -> CachedImage | None:
    return next((entry for entry in list_cached_images() if entry.stream == stream), None)


def _record(directory: Path, disk: StreamDisk, size: int) -> CachedImage:
    entry = CachedImage(
        path=_image_path(directory, disk.sha256),
        stream=disk.stream,
        release=disk.release,
        sha256=disk.sha256,
        uncompressed_sha256=disk.uncompressed_sha256,
        size=size,
        location=disk.location,
        fetched=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    data = entry.to_json()
    del data["path"], data["offline_reason"]
    with placed_output(_meta_path(directory, disk.sha256)) as output:
        output.write((json.dumps(data, indent=1) + "\n").encode())
    return entry


# --------------------------------------------------------------------------------------------------
# Download


class _Verifier:
    """sha256 of the compressed bytes in the caller's thread; decompression and the sha256 of the
    decompressed bytes in a worker, fed through a bounded channel."""

    def __init__(self, decompress: bool) -> None:
        self.compressed = hashlib.sha256()
        self._channel: Channel | None = Channel() if decompress else None
        self._uncompressed: str | None = None
        self._error: BaseException | None = None
        self._worker = start_thread("stream-verify", self._run) if decompress else None

    def _run(self) -> None:
        assert self._channel is not None
        digest = hashlib.sha256()
        try:
            reader = decompressing_reader(ChannelReader(self._channel), "xz")
            while chunk := reader.read(CHUNK_SIZE):
                digest.update(chunk)
            self._uncompressed = digest.hexdigest()
        except BaseException as exc:
            self._error = exc
            self._channel.cancel()  # unblocks update() in the downloading thread

    def update(self, chunk: bytes) -> None:
        self.compressed.update(chunk)
        if self._channel is not None:
            # Cancelled means the worker failed; finish() reports why.
            with contextlib.suppress(Cancelled):
                self._channel.put(chunk)

    def finish(self) -> str | None:
        """Wait for the worker; the uncompressed digest, or None when not asked for. A corrupt
        stream raises ImageError."""
        if self._channel is None or self._worker is None:
            return None
        with contextlib.suppress(Cancelled):
            self._channel.close()
        self._worker.join()
        if self._error is not None:
            if isinstance(self._error, CORRUPT_DATA_ERRORS):
                raise ImageError(f"the downloaded image does not decompress ({self._error})")
            raise self._error
        return self._uncompressed

    def abort(self) -> None:
        """Stop the worker after a failed transfer (it sees a truncated stream and ends)."""
        with contextlib.suppress(BaseException):
            self.finish()


class _Interrupted(Exception):
    """A transfer that can be resumed or retried."""


@dataclass(frozen=True)
class _Attempt:
    size: int
    resumed: bool
    error: ImageError | None  # a checksum or decompression failure of the complete file


def _open_partial(partial: Path, resumed: bool) -> BinaryIO:
    """The download's partial file, continued or started over; never through a symlink."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if resumed else os.O_TRUNC) | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(partial, flags | getattr(os, "O_CLOEXEC", 0), 0o600), "ab" if resumed else "wb")


def _feed_existing(partial: Path, verifier: _Verifier) -> int:
    size = 0
    with os.fdopen(fsutil.open_regular(partial, follow_symlinks=False), "rb") as existing:
        while chunk := existing.read(CHUNK_SIZE):
            verifier.update(chunk)
            size += len(chunk)
    return size


def _transfer(client: httpx.Client, disk: StreamDisk, partial: Path, progress: bool) -> _Attempt:
    """One attempt: continue ``partial`` from its current size (or start over when the server ignores
    the Range request), then verify the whole file."""
    offset = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    with client.stream("GET", disk.location, headers=headers) as response:
        if response.status_code == 416:
            # The partial file is at least as long as the image; it cannot be trusted, start over.
            partial.unlink()
            raise _Interrupted("the server refused to resume")
        if response.status_code >= 500:
            raise _Interrupted(f"the server answered HTTP {response.status_code}")
        response.raise_for_status()
        resumed = offset > 0 and response.status_code == 206 and _range_start(response) == offset
        length = int(response.headers.get("Content-Length", "0")) or None
        verifier = _Verifier(decompress=disk.uncompressed_sha256 is not None)
        try:
            size = _feed_existing(partial, verifier) if resumed else 0
            total = size + length if length is not None else None
            name = disk.location.rsplit("/", 1)[-1]
            with (
                _open_partial(partial, resumed) as out,
                byte_progress(f"Downloading {name}", total, enabled=progress, completed=size) as advance,
            ):
                size += _copy_body(response, out, verifier, advance)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            verifier.abort()
            raise
    try:
        uncompressed = verifier.finish()
        check_digest(verifier.compressed.hexdigest(), disk.sha256, what="sha256", subject=disk.location)
        if uncompressed is not None:
            what = "uncompressed sha256"
            check_digest(uncompressed, disk.uncompressed_sha256, what=what, subject=disk.location)
    except ImageError as exc:
        return _Attempt(size, resumed, exc)
    return _Attempt(size, resumed, None)


def _copy_body(response: httpx.Response, out: BinaryIO, verifier: _Verifier, advance: Advance) -> int:
    size = 0
    try:
        # No chunk_size: httpx would hold back a partly filled chunk, and those bytes would be lost
        # (not resumable) when the connection drops.
        for chunk in response.iter_bytes():
            out.write(chunk)
            verifier.update(chunk)
            size += len(chunk)
            advance(len(chunk))
    except httpx.TransportError as exc:
        raise _Interrupted(str(exc) or type(exc).__name__) from None
    return size


def _range_start(response: httpx.Response) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None


def _download(disk: StreamDisk, directory: Path, progress: bool) -> CachedImage:
    """Download with up to DOWNLOAD_ATTEMPTS attempts, each resuming where the last one stopped. A
    checksum failure deletes the partial file; after a resumed attempt it starts over once more (the
    earlier part may have come from an older file), otherwise it is final."""
    partial = directory / f"{disk.sha256}.{FORMAT}.partial"
    last_problem = ""
    with _client() as client:
        for attempt in range(DOWNLOAD_ATTEMPTS):
            if attempt:
                time.sleep(_RETRY_PAUSE * attempt)
            try:
                result = _transfer(client, disk, partial, progress)
            except (_Interrupted, httpx.TransportError) as exc:
                last_problem = str(exc) or type(exc).__name__
                continue
            except httpx.HTTPStatusError as exc:
                raise ImageError(
                    f"downloading {disk.location} failed: HTTP {exc.response.status_code}",
                    hint="the stream may have moved on to a newer build; run the command again",
                ) from None
            if result.error is not None:
                partial.unlink(missing_ok=True)
                if result.resumed and attempt + 1 < DOWNLOAD_ATTEMPTS:
                    last_problem = f"{result.error.message} (after resuming)"
                    continue
                raise result.error
            os.replace(partial, _image_path(directory, disk.sha256))
            # The metadata file is written last: an image without it is never listed or reused.
            return _record(directory, disk, result.size)
    raise ImageError(
        f"downloading {disk.location} failed {DOWNLOAD_ATTEMPTS} times (last: {last_problem})",
        hint="run the command again: the download resumes where it stopped",
    )


def resolve_stream_image(
    stream: str,
    *,
    stream_url: str | None = None,
    progress: bool = False,
    notice: Callable[[str], None] | None = None,
) -> CachedImage:
    """The cached, verified aarch64 qcow2.xz of a Fedora CoreOS stream, downloading it when the
    stream has moved on or nothing is cached. When the metadata cannot be fetched (offline, server
    down) the newest cached image of that stream is returned with ``offline_reason`` set.
    ``notice`` hears when another podman-emu is downloading the same image and this one waits."""
    if not _STREAM_NAME.fullmatch(stream):
        raise ImageError(f"invalid stream name {stream!r}")
    url = _stream_url(stream, stream_url)
    try:
        disk = fetch_stream_disk(stream, stream_url=url)
    except httpx.HTTPError as exc:
        problem = _describe_http_error(exc, url)
        cached = _cached_for_stream(stream)
        if cached is None:
            raise ImageError(
                f"cannot fetch the {stream} stream metadata: {problem}",
                hint="check the network (nothing is cached for this stream yet), or pass --image",
            ) from None
        return replace(cached, offline_reason=f"cannot fetch the {stream} stream metadata: {problem}")
    directory = fsutil.private_dir(images_dir(), root=paths.cache_dir())
    with fsutil.flocked(
        directory / f"{disk.sha256}.lock",
        create=True,
        what=f"the download of {disk.location.rsplit('/', 1)[-1]}",
        wait_s=DOWNLOAD_LOCK_WAIT_S,
        error=ImageError,
        hint="Another podman-emu is downloading the same image and has not finished; let it finish (or end "
        "it) and run this again: the download resumes where it stopped.",
        on_wait=notice,
    ):
        cached_entry = _load_entry(_meta_path(directory, disk.sha256))
        if cached_entry is not None:
            if cached_entry.stream != stream:
                return _record(directory, disk, cached_entry.size)
            return cached_entry
        return _download(disk, directory, progress)


def _describe_http_error(exc: httpx.HTTPError, url: str) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {url}"
    return f"{type(exc).__name__} for {url}: {exc}" if str(exc) else f"{type(exc).__name__} for {url}"
