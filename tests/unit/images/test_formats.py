"""sniff_disk: formats from magic bytes, for disks and compressors made here with the real tools."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podman_emu.errors import ImageError
from podman_emu.images.formats import DiskFormat, ZstdFrameWalker, sniff_disk
from testing.images import compress, make_disk, run


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sniff")
    qcow2 = base / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", qcow2, "1G")
    raw = make_disk(base / "disk.raw", files=None, disk_mib=8, esp_mib=2)
    return {"qcow2": qcow2, "raw": raw}


@pytest.mark.parametrize("container", ["qcow2", "raw"])
@pytest.mark.parametrize("compression", [None, "xz", "gz", "zst"])
def test_sniff_every_container_and_compression(
    disks: dict[str, Path], tmp_path: Path, container: str, compression: str | None
) -> None:
    # One misleading name for every variant: only the bytes can tell them apart.
    image = compress(disks[container], compression, tmp_path / "image.qcow2.xz")
    assert sniff_disk(image) == DiskFormat(container, compression)  # type: ignore[arg-type]


def test_decompressed_qcow2_under_an_xz_name_is_plain_qcow2(disks: dict[str, Path], tmp_path: Path) -> None:
    # What podman 4.x leaves in its data dir after "Extracting compressed file".
    stored = tmp_path / "fedora-coreos-40-qemu.x86_64.qcow2.xz"
    stored.write_bytes(disks["qcow2"].read_bytes())
    assert sniff_disk(stored) == DiskFormat("qcow2", None)


def test_raw_gpt_disk_with_4k_sectors_layout_is_raw(tmp_path: Path) -> None:
    # A GPT header at byte 4096 (LBA 1 with 4096-byte sectors) and no protective MBR.
    image = tmp_path / "disk4k.img"
    image.write_bytes(bytes(4096) + b"EFI PART" + bytes(8192))
    assert sniff_disk(image) == DiskFormat("raw", None)


def test_zstd_with_skippable_frame_and_several_frames(disks: dict[str, Path], tmp_path: Path) -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    data = disks["qcow2"].read_bytes()
    compressor = zstandard.ZstdCompressor()
    image = tmp_path / "multi"
    image.write_bytes(skippable + compressor.compress(data[:1000]) + compressor.compress(data[1000:]))
    assert sniff_disk(image) == DiskFormat("qcow2", "zst")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (bytes(100_000), "starts with zeros only"),
        (b"hello, world" * 100, "not a qcow2 or raw disk image"),
        (b"\xfd7zXZ\x00" + b"\x00" * 30, "cannot be decompressed"),
    ],
)
def test_unrecognised_content_is_an_image_error(tmp_path: Path, content: bytes, message: str) -> None:
    image = tmp_path / "disk.qcow2"
    image.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        sniff_disk(image)


def test_other_qemu_formats_are_named_with_a_conversion_hint(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "vmdk", image, "64M")
    with pytest.raises(ImageError, match="vmdk") as caught:
        sniff_disk(image)
    assert caught.value.hint is not None and "qemu-img convert" in caught.value.hint


def test_double_compression_is_reported(disks: dict[str, Path], tmp_path: Path) -> None:
    inner = compress(disks["qcow2"], "gz", tmp_path / "a")
    outer = compress(inner, "xz", tmp_path / "b")
    with pytest.raises(ImageError, match="compressed twice"):
        sniff_disk(outer)


def test_truncated_compressed_header_is_an_image_error(disks: dict[str, Path], tmp_path: Path) -> None:
    full = compress(disks["qcow2"], "gz", tmp_path / "full").read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(full[:12])
    with pytest.raises(ImageError):
        sniff_disk(cut)


def test_directory_missing_and_unreadable_paths(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        sniff_disk(tmp_path)
    with pytest.raises(ImageError, match="does not exist"):
        sniff_disk(tmp_path / "absent.qcow2")
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.write_bytes(b"QFI\xfb")
        locked.chmod(0)
        with pytest.raises(ImageError, match="cannot read"):
            sniff_disk(locked)


# --------------------------------------------------------------------------------------------------
# The zstd frame walker decides whether a zstd input was truncated: it must say "boundary" at the end
# of complete input and never at a strict prefix that ends inside a frame.


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    payloads=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=3),
    level=st.integers(min_value=1, max_value=5),
    checksum=st.booleans(),
    write_size=st.booleans(),
    read_size=st.integers(min_value=1, max_value=700),
    cut=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_zstd_frame_walker_finds_exact_frame_ends(
    payloads: list[bytes], level: int, checksum: bool, write_size: bool, read_size: int, cut: float
) -> None:
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=write_size)
    frames = [compressor.compress(p * 20) for p in payloads]
    data = b"".join(frames)

    def walk(prefix: bytes) -> bool:
        walker = ZstdFrameWalker(io.BytesIO(prefix))
        while walker.read(read_size):
            pass
        return walker.at_frame_boundary()

    assert walk(data)
    ends = {sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))}
    cut_at = int(len(data) * cut)
    assert walk(data[:cut_at]) == (cut_at == 0 or cut_at in ends)
