"""detect_disk_arch on disks built here with sgdisk/sfdisk, mkfs.vfat and mtools, as raw, qcow2 and
compressed qcow2.

The loaders are synthetic PE images (a DOS header, the PE signature and a COFF header with the
machine field, see test_images_support.synthetic_pe): the arch check reads only those headers, so
they exercise it exactly as a real BOOTAA64.EFI would, without a foreign-arch package.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podman_emu.errors import ImageError
from podman_emu.images.arch import ArchVerdict, detect_disk_arch
from testing.images import AARCH64_PE, ESP_START, MIB, X86_64_PE, compress, make_disk, run, synthetic_pe, to_qcow2

AARCH64_FILES = {"EFI/BOOT/BOOTAA64.EFI": AARCH64_PE, "EFI/fedora/grubaa64.efi": AARCH64_PE}
X86_64_FILES = {"EFI/BOOT/BOOTX64.EFI": X86_64_PE, "EFI/BOOT/BOOTIA32.EFI": synthetic_pe(0x014C)}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each disk once, in every container the arch check reads."""
    base = tmp_path_factory.mktemp("arch")
    raws = {
        "aarch64": make_disk(base / "aarch64.raw", files=AARCH64_FILES),
        "x86_64": make_disk(base / "x86_64.raw", files=X86_64_FILES),
        "no-esp": make_disk(base / "no-esp.raw", files=None),
    }
    disks: dict[str, Path] = {}
    for name, raw in raws.items():
        disks[f"{name}/raw"] = raw
        disks[f"{name}/qcow2"] = to_qcow2(raw, base / f"{name}.qcow2")
        disks[f"{name}/qcow2-compressed"] = to_qcow2(raw, base / f"{name}.c.qcow2", compressed=True)
    return disks


CONTAINERS = ["raw", "qcow2", "qcow2-compressed"]


@pytest.mark.parametrize("container", CONTAINERS)
def test_aarch64_disk(built: dict[str, Path], container: str) -> None:
    verdict = detect_disk_arch(built[f"aarch64/{container}"])
    assert verdict == ArchVerdict("aarch64", "EFI/BOOT/BOOTAA64.EFI found (PE machine 0xAA64)")


@pytest.mark.parametrize("container", CONTAINERS)
def test_x86_64_disk(built: dict[str, Path], container: str) -> None:
    verdict = detect_disk_arch(built[f"x86_64/{container}"])
    assert verdict.arch == "x86_64"
    assert "no EFI/BOOT/BOOTAA64.EFI" in verdict.reason
    assert "EFI/BOOT/BOOTX64.EFI (PE machine 0x8664, x86_64)" in verdict.reason


@pytest.mark.parametrize("container", CONTAINERS)
def test_disk_without_esp_is_undecidable(built: dict[str, Path], container: str) -> None:
    verdict = detect_disk_arch(built[f"no-esp/{container}"])
    assert verdict.arch is None
    assert "no EFI system partition in the GPT" in verdict.reason


@pytest.mark.parametrize(("bits", "esp_mib", "per_cluster"), [(12, 4, 0), (16, 32, 0), (32, 40, 1)])
def test_every_fat_type(tmp_path: Path, bits: int, esp_mib: int, per_cluster: int) -> None:
    # FAT32 with one-sector clusters and a PE header 8 KiB into the file: reading it means following
    # the cluster chain through the FAT.
    loader = synthetic_pe(0xAA64, pe_offset=0x2000, size=40 * 1024)
    disk = make_disk(
        tmp_path / "d.raw",
        files={"EFI/BOOT/BOOTAA64.EFI": loader},
        fat_bits=bits,
        esp_mib=esp_mib,
        disk_mib=esp_mib + 8,
        sectors_per_cluster=per_cluster,
    )
    assert detect_disk_arch(disk).arch == "aarch64"


def test_mbr_esp_type_0xef(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "mbr.raw", files=AARCH64_FILES, table="mbr")
    assert detect_disk_arch(disk).arch == "aarch64"
    no_esp = make_disk(tmp_path / "mbr-linux.raw", files=None, table="mbr")
    assert "no EFI system partition in the MBR" in detect_disk_arch(no_esp).reason


def test_loader_under_the_aarch64_name_but_built_for_x86_64(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "d.raw", files={"EFI/BOOT/BOOTAA64.EFI": X86_64_PE})
    verdict = detect_disk_arch(disk)
    assert verdict.arch == "x86_64"
    assert "BOOTAA64.EFI is not aarch64 (PE machine 0x8664, x86_64)" in verdict.reason


def test_loader_that_is_not_a_pe_image(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "d.raw", files={"EFI/BOOT/BOOTAA64.EFI": b"#!/bin/sh\necho not a PE\n" * 40})
    assert detect_disk_arch(disk) == ArchVerdict(None, "EFI/BOOT/BOOTAA64.EFI is not a PE image")


def test_vendor_loaders_without_fallback_path(tmp_path: Path) -> None:
    disk = make_disk(tmp_path / "d.raw", files={"EFI/debian/grubaa64.efi": AARCH64_PE})
    verdict = detect_disk_arch(disk)
    assert verdict.arch == "aarch64"
    assert "no EFI/BOOT fallback loader" in verdict.reason
    assert "EFI/DEBIAN/GRUBAA64.EFI" in verdict.reason


def test_empty_esp_and_esp_without_efi_directory(tmp_path: Path) -> None:
    empty = make_disk(tmp_path / "empty.raw", files={"README.TXT": b"nothing here"})
    assert detect_disk_arch(empty) == ArchVerdict(None, "the ESP (partition 1) has no EFI directory")
    unformatted = make_disk(tmp_path / "unformatted.raw", files={})
    with unformatted.open("r+b") as handle:  # wipe the FAT boot sector
        handle.seek(ESP_START)
        handle.write(bytes(512))
    verdict = detect_disk_arch(unformatted)
    assert verdict.arch is None and "not a FAT filesystem" in verdict.reason


def test_qcow2_with_backing_file_is_undecidable(built: dict[str, Path], tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", built["aarch64/qcow2"], overlay)
    verdict = detect_disk_arch(overlay)
    assert verdict.arch is None and "backing file" in verdict.reason


def test_truncated_qcow2_is_undecidable_not_a_crash(built: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut.qcow2"
    cut.write_bytes(built["aarch64/qcow2"].read_bytes()[: 256 * 1024])
    verdict = detect_disk_arch(cut)
    assert verdict.arch is None and "past the end of the file" in verdict.reason


def test_compressed_file_is_refused(built: dict[str, Path], tmp_path: Path) -> None:
    packed = compress(built["aarch64/qcow2"], "xz", tmp_path / "d.xz")
    with pytest.raises(ImageError, match="xz-compressed"):
        detect_disk_arch(packed)


def test_large_sparse_qcow2_is_checked_quickly(built: dict[str, Path], tmp_path: Path) -> None:
    big = tmp_path / "big.qcow2"
    shutil.copyfile(built["aarch64/qcow2"], big)
    run("qemu-img", "resize", "-q", "-f", "qcow2", big, "512G")
    start = time.perf_counter()
    verdict = detect_disk_arch(big)
    assert verdict.arch == "aarch64"
    assert time.perf_counter() - start < 1.0


@pytest.fixture(scope="module")
def fuzz_base(built: dict[str, Path]) -> bytes:
    with built["aarch64/raw"].open("rb") as handle:
        return handle.read(ESP_START + 2 * MIB)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_metadata_never_crashes(fuzz_base: bytes, tmp_path: Path, data: st.DataObject) -> None:
    """Random damage to the partition table, FAT and directories yields a verdict or an ImageError,
    never another exception."""
    disk = bytearray(fuzz_base)
    for _ in range(data.draw(st.integers(min_value=1, max_value=12))):
        region = data.draw(st.sampled_from([(0, 34 * 512), (ESP_START, ESP_START + 256 * 1024)]))
        offset = data.draw(st.integers(min_value=region[0], max_value=region[1] - 8))
        disk[offset : offset + 4] = data.draw(st.binary(min_size=4, max_size=4))
    path = tmp_path / "fuzz.raw"
    path.write_bytes(bytes(disk))
    try:
        verdict = detect_disk_arch(path)
    except ImageError:
        return
    assert verdict.arch in ("aarch64", "x86_64", None) and verdict.reason
