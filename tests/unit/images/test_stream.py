"""resolve_stream_image against a real HTTP server on loopback serving a stream document and a
small .qcow2.xz made in the test."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
from pathlib import Path

import pytest

from podman_emu.errors import ImageError
from podman_emu.images import stream as stream_module
from podman_emu.images.formats import sniff_disk
from podman_emu.images.materialize import materialize
from podman_emu.images.stream import list_cached_images, resolve_stream_image
from testing.images import MIB, Behaviour, serve, unused_port_url

IMAGE_PATH = "/prod/streams/stable/builds/40.1/aarch64/fedora-coreos-40.1-qemu.aarch64.qcow2.xz"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PODMAN_EMU_CACHE_DIR", str(cache))
    # Retries pause between attempts; the tests' server never needs time to recover.
    monkeypatch.setattr(stream_module, "_RETRY_PAUSE", 0.0)
    return cache


@pytest.fixture(scope="module")
def image() -> tuple[bytes, bytes]:
    """(qcow2 bytes, xz bytes): a qcow2 header plus 3 MiB of mixed content, compressed with xz."""
    qcow2 = b"QFI\xfb" + bytes(60) + os.urandom(MIB) + b"fedora coreos " * 150_000
    return qcow2, lzma.compress(qcow2, preset=1)


def stream_document(
    xz: bytes, qcow2: bytes, *, location: str, arches: tuple[str, ...] = ("aarch64", "x86_64")
) -> bytes:
    disk = {
        "location": location,
        "signature": location + ".sig",
        "sha256": hashlib.sha256(xz).hexdigest(),
        "uncompressed-sha256": hashlib.sha256(qcow2).hexdigest(),
    }
    architectures = {
        arch: {"artifacts": {"qemu": {"release": "40.1", "formats": {"qcow2.xz": {"disk": disk}}}}} for arch in arches
    }
    return json.dumps({"stream": "stable", "metadata": {}, "architectures": architectures}).encode()


def published(image: tuple[bytes, bytes], **document: object) -> Behaviour:
    qcow2, xz = image
    behaviour = Behaviour(files={IMAGE_PATH: xz})
    behaviour.files["/streams/stable.json"] = stream_document(xz, qcow2, location=IMAGE_PATH, **document)  # type: ignore[arg-type]
    return behaviour


def image_requests(behaviour: Behaviour) -> list[str | None]:
    return [range_header for path, range_header in behaviour.requests if path == IMAGE_PATH]


def cache_files(cache: Path) -> list[str]:
    images = cache / "images"
    return sorted(p.name for p in images.iterdir() if not p.name.endswith(".lock")) if images.exists() else []


def test_download_verify_cache_and_reuse(image: tuple[bytes, bytes], isolated_cache: Path, tmp_path: Path) -> None:
    qcow2, xz = image
    behaviour = published(image)
    with serve(behaviour) as base:
        url = f"{base}/streams/stable.json"
        first = resolve_stream_image("stable", stream_url=url)
        second = resolve_stream_image("stable", stream_url=url)
    sha = hashlib.sha256(xz).hexdigest()
    assert first.path.read_bytes() == xz
    assert (first.sha256, first.release, first.stream) == (sha, "40.1", "stable")
    assert first.uncompressed_sha256 == hashlib.sha256(qcow2).hexdigest()
    assert first.location == f"{base}{IMAGE_PATH}"  # relative location resolved against the stream URL
    assert first.offline_reason is None
    assert second == first
    assert image_requests(behaviour) == [None]  # the second call used the cache
    assert cache_files(isolated_cache) == [f"{sha}.meta.json", f"{sha}.qcow2.xz"]
    assert [entry.sha256 for entry in list_cached_images()] == [sha]
    # What convert does with it next.
    out = tmp_path / "disk"
    materialize(first.path, out, expected_sha256=first.sha256)
    assert out.read_bytes() == qcow2 and sniff_disk(out).container == "qcow2"


def test_wrong_sha256_deletes_the_partial_and_places_nothing(image: tuple[bytes, bytes], isolated_cache: Path) -> None:
    behaviour = published(image)
    document = json.loads(behaviour.files["/streams/stable.json"])
    document["architectures"]["aarch64"]["artifacts"]["qemu"]["formats"]["qcow2.xz"]["disk"]["sha256"] = "ab" * 32
    behaviour.files["/streams/stable.json"] = json.dumps(document).encode()
    with serve(behaviour) as base, pytest.raises(ImageError, match="sha256 mismatch"):
        resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert cache_files(isolated_cache) == []
    assert list_cached_images() == []


def test_wrong_uncompressed_sha256_places_nothing(image: tuple[bytes, bytes], isolated_cache: Path) -> None:
    qcow2, xz = image
    behaviour = published(image)
    # Publish the checksum of different decompressed content.
    behaviour.files["/streams/stable.json"] = stream_document(xz, qcow2 + b"x", location=IMAGE_PATH)
    with serve(behaviour) as base, pytest.raises(ImageError, match="uncompressed sha256 mismatch"):
        resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert cache_files(isolated_cache) == []


def test_connection_dropped_midway_is_resumed_with_a_range_request(image: tuple[bytes, bytes]) -> None:
    _, xz = image
    behaviour = published(image)
    behaviour.drop_after, behaviour.drops_left = len(xz) // 3, 1
    with serve(behaviour) as base:
        entry = resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert entry.path.read_bytes() == xz
    assert image_requests(behaviour) == [None, f"bytes={len(xz) // 3}-"]


def test_server_ignoring_range_restarts_cleanly(image: tuple[bytes, bytes]) -> None:
    _, xz = image
    behaviour = published(image)
    behaviour.drop_after, behaviour.drops_left, behaviour.honour_range = len(xz) // 2, 1, False
    with serve(behaviour) as base:
        entry = resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert entry.path.read_bytes() == xz  # the 200 answer replaced the partial file, not appended to it
    assert len(image_requests(behaviour)) == 2


def test_interrupted_command_keeps_the_partial_and_the_next_one_resumes(
    image: tuple[bytes, bytes], isolated_cache: Path
) -> None:
    _, xz = image
    behaviour = published(image)
    step = len(xz) // 10
    behaviour.drop_after, behaviour.drops_left = step, stream_module.DOWNLOAD_ATTEMPTS
    with serve(behaviour) as base:
        url = f"{base}/streams/stable.json"
        with pytest.raises(ImageError, match="failed 4 times") as caught:
            resolve_stream_image("stable", stream_url=url)
        assert caught.value.hint is not None and "resumes" in caught.value.hint
        sha = hashlib.sha256(xz).hexdigest()
        partial = isolated_cache / "images" / f"{sha}.qcow2.xz.partial"
        assert partial.stat().st_size == 4 * step
        entry = resolve_stream_image("stable", stream_url=url)
    assert entry.path.read_bytes() == xz
    assert image_requests(behaviour)[-1] == f"bytes={4 * step}-"
    assert not partial.exists()


def test_stale_partial_is_discarded_after_a_failed_resume(image: tuple[bytes, bytes], isolated_cache: Path) -> None:
    """A partial file left by another build of the same name: the resumed file fails its checksum,
    so the download starts over from zero and succeeds."""
    _, xz = image
    sha = hashlib.sha256(xz).hexdigest()
    images = isolated_cache / "images"
    images.mkdir(parents=True)
    (images / f"{sha}.qcow2.xz.partial").write_bytes(b"\x00" * 1000)
    behaviour = published(image)
    with serve(behaviour) as base:
        entry = resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert entry.path.read_bytes() == xz
    assert image_requests(behaviour) == ["bytes=1000-", None]


def test_stream_without_aarch64_is_a_clear_error(image: tuple[bytes, bytes], isolated_cache: Path) -> None:
    behaviour = published(image, arches=("x86_64", "s390x"))
    with serve(behaviour) as base, pytest.raises(ImageError, match=r"no architectures\.aarch64") as caught:
        resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    assert "found: s390x, x86_64" in caught.value.message
    assert image_requests(behaviour) == []
    assert cache_files(isolated_cache) == []


def test_offline_reuses_the_cached_image_of_that_stream(image: tuple[bytes, bytes]) -> None:
    with serve(published(image)) as base:
        online = resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    offline = resolve_stream_image("stable", stream_url=unused_port_url())
    assert offline.path == online.path and offline.sha256 == online.sha256
    assert offline.offline_reason is not None and "cannot fetch the stable stream metadata" in offline.offline_reason
    # Nothing cached for another stream: offline is an error there.
    with pytest.raises(ImageError, match="cannot fetch the testing stream metadata") as caught:
        resolve_stream_image("testing", stream_url=unused_port_url())
    assert caught.value.hint is not None and "--image" in caught.value.hint


def test_server_error_on_metadata_falls_back_to_the_cache(image: tuple[bytes, bytes]) -> None:
    behaviour = published(image)
    with serve(behaviour) as base:
        url = f"{base}/streams/stable.json"
        resolve_stream_image("stable", stream_url=url)
        behaviour.fail_status = 503
        entry = resolve_stream_image("stable", stream_url=url)
    assert entry.offline_reason is not None and "HTTP 503" in entry.offline_reason


def test_damaged_cache_file_is_not_reused(image: tuple[bytes, bytes]) -> None:
    _, xz = image
    behaviour = published(image)
    with serve(behaviour) as base:
        url = f"{base}/streams/stable.json"
        entry = resolve_stream_image("stable", stream_url=url)
        with entry.path.open("r+b") as handle:
            handle.truncate(100)
        again = resolve_stream_image("stable", stream_url=url)
    assert again.path.read_bytes() == xz
    assert image_requests(behaviour) == [None, None]


def test_unknown_stream_name_without_url(isolated_cache: Path) -> None:
    with pytest.raises(ImageError, match="unknown Fedora CoreOS stream 'rawhide'"):
        resolve_stream_image("rawhide")
    assert not isolated_cache.exists()


def test_metadata_that_is_not_json(image: tuple[bytes, bytes]) -> None:
    behaviour = published(image)
    behaviour.files["/streams/stable.json"] = b"<html>maintenance</html>"
    with serve(behaviour) as base, pytest.raises(ImageError, match="is not JSON"):
        resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")


def test_cached_image_json_for_the_images_command(image: tuple[bytes, bytes]) -> None:
    with serve(published(image)) as base:
        entry = resolve_stream_image("stable", stream_url=f"{base}/streams/stable.json")
    [listed] = list_cached_images()
    data = listed.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["path"] == str(entry.path) and data["size"] == len(image[1]) and data["release"] == "40.1"
