"""install_disk: verified, arch-checked and resized before it ever appears at the destination.

The loaders inside the disks are synthetic PE headers (see test_images_support.synthetic_pe); the
arch check reads only headers.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from podman_emu.errors import ImageError
from podman_emu.images.install import DiskInstall, DiskSource, install_disk
from testing.images import AARCH64_PE, X86_64_PE, compress, make_disk, sha256_file, to_qcow2

GIB = 1 << 30
QEMU_IMG = shutil.which("qemu-img") or "qemu-img"


@pytest.fixture(scope="module")
def disks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("install")
    aarch64 = make_disk(base / "a.raw", files={"EFI/BOOT/BOOTAA64.EFI": AARCH64_PE})
    x86_64 = make_disk(base / "x.raw", files={"EFI/BOOT/BOOTX64.EFI": X86_64_PE})
    no_esp = make_disk(base / "n.raw", files=None)
    return {
        "aarch64.xz": compress(to_qcow2(aarch64, base / "a.qcow2"), "xz", base / "a.qcow2.xz"),
        "x86_64.xz": compress(to_qcow2(x86_64, base / "x.qcow2"), "xz", base / "x.qcow2.xz"),
        "x86_64.qcow2": base / "x.qcow2",
        "no-esp.qcow2": to_qcow2(no_esp, base / "n.qcow2"),
    }


def machine_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "machine" / "qemu"
    directory.mkdir(parents=True)
    return directory


def test_aarch64_image_is_decompressed_checked_and_resized(disks: dict[str, Path], tmp_path: Path) -> None:
    destination = machine_dir(tmp_path) / "emu_aarch64.qcow2"
    source = disks["aarch64.xz"]
    installed = install_disk(
        DiskInstall(DiskSource(source, sha256=sha256_file(source)), size_gib=100, qemu_img=QEMU_IMG), destination
    )
    assert installed.arch.arch == "aarch64"
    assert installed.virtual_size == 100 * GIB
    assert installed.format.compression == "xz" and installed.format.container == "qcow2"
    assert installed.source_sha256 == sha256_file(source)
    assert sorted(p.name for p in destination.parent.iterdir()) == ["emu_aarch64.qcow2"]


@pytest.mark.parametrize("source_name", ["x86_64.xz", "x86_64.qcow2"])
def test_x86_64_image_is_refused_and_nothing_is_placed(
    disks: dict[str, Path], tmp_path: Path, source_name: str
) -> None:
    directory = machine_dir(tmp_path)
    with pytest.raises(ImageError, match="is an x86_64 disk") as caught:
        install_disk(DiskInstall(DiskSource(disks[source_name]), 10, QEMU_IMG), directory / "d.qcow2")
    assert caught.value.hint is not None and "--force" in caught.value.hint
    assert list(directory.iterdir()) == []


def test_force_installs_an_x86_64_image(disks: dict[str, Path], tmp_path: Path) -> None:
    destination = machine_dir(tmp_path) / "d.qcow2"
    installed = install_disk(DiskInstall(DiskSource(disks["x86_64.xz"]), None, QEMU_IMG, force=True), destination)
    assert installed.arch.arch == "x86_64" and installed.virtual_size is None
    assert destination.exists()


def test_undecidable_disk_is_installed_with_its_reason(disks: dict[str, Path], tmp_path: Path) -> None:
    destination = machine_dir(tmp_path) / "d.qcow2"
    installed = install_disk(DiskInstall(DiskSource(disks["no-esp.qcow2"]), 1, QEMU_IMG), destination)
    assert installed.arch.arch is None and "no EFI system partition" in installed.arch.reason
    assert installed.disk_sha256 == sha256_file(disks["no-esp.qcow2"])  # uncompressed: same bytes


def test_failed_resize_places_nothing(disks: dict[str, Path], tmp_path: Path) -> None:
    directory = machine_dir(tmp_path)
    with pytest.raises(ImageError, match="cannot run"):
        disk = DiskInstall(DiskSource(disks["aarch64.xz"]), 10, str(tmp_path / "missing"))
        install_disk(disk, directory / "d.qcow2")
    assert list(directory.iterdir()) == []
