"""resize_disk through the real qemu-img."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podman_emu.errors import ImageError
from podman_emu.images.resize import resize_disk, virtual_size
from testing.images import MIB, make_disk, run

GIB = 1 << 30
QEMU_IMG = shutil.which("qemu-img") or "qemu-img"


def test_qcow2_grows_to_the_machine_disk_size(tmp_path: Path) -> None:
    disk = tmp_path / "disk.xz"  # podman's naming habit: the name must not matter
    run("qemu-img", "create", "-q", "-f", "qcow2", disk, "1G")
    resize_disk(disk, 100, qemu_img=QEMU_IMG)
    assert virtual_size(disk, qemu_img=QEMU_IMG) == 100 * GIB


def test_raw_grows_and_keeps_its_content(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", files=None, disk_mib=8, esp_mib=2)
    before = disk.read_bytes()
    resize_disk(disk, 1, qemu_img=QEMU_IMG)
    assert disk.stat().st_size == GIB
    with disk.open("rb") as handle:
        assert handle.read(len(before)) == before


def test_a_larger_disk_is_never_shrunk(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", disk, "20G")
    before = disk.read_bytes()
    resize_disk(disk, 10, qemu_img=QEMU_IMG)
    assert virtual_size(disk, qemu_img=QEMU_IMG) == 20 * GIB
    assert disk.read_bytes() == before  # not even rewritten


def test_qemu_img_failure_carries_its_message(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", disk, "1G")
    data = bytearray(disk.read_bytes())
    data[40:48] = (12345).to_bytes(8, "big")  # an l1_table_offset that is not cluster aligned
    disk.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="qemu-img could not") as caught:
        resize_disk(disk, 2, qemu_img=QEMU_IMG)
    assert "L1 table offset invalid" in caught.value.message


def test_missing_qemu_img_is_an_image_error_with_an_install_hint(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "disk.raw", files=None, disk_mib=8, esp_mib=1)
    with pytest.raises(ImageError, match="cannot run") as caught:
        resize_disk(disk, 1, qemu_img=str(tmp_path / "no-such-qemu-img"))
    assert caught.value.hint is not None and "qemu-utils" in caught.value.hint


def test_compressed_disk_is_refused(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", disk, "1G")
    packed = tmp_path / "disk.gz"
    packed.write_bytes(run("gzip", "-c", disk))
    with pytest.raises(ImageError, match="gz-compressed"):
        resize_disk(packed, 2, qemu_img=QEMU_IMG)
    assert packed.stat().st_size < MIB
