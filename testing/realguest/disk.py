"""ESP (systemd-boot, kernel, initrd) + ext4 root in a GPT disk, as qcow2. Built in plain files:
mke2fs -d fills the root without a mount."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from testing.guest.disk import build_esp, to_qcow2

from .run import run

MIB = 1024 * 1024
SECTOR = 512
ROOT_SIZE = 3 * 1024 * MIB
ESP_KERNEL = "vmlinuz"
ESP_INITRD = "initrd.img"
ENTRY = "debian.conf"
ROOT_TYPE = "8305"  # Linux ARM64 root (/)


def kernel_cmdline(root_partuuid: str) -> str:
    return (
        f"root=PARTUUID={root_partuuid} rw rootwait console=ttyAMA0,115200 "
        "systemd.show_status=1 systemd.journald.forward_to_console=1"
    )


def make_esp(dest: Path, *, sd_boot: Path, vmlinuz: Path, initrd: Path, cmdline: str, release: str) -> Path:
    return build_esp(
        dest,
        {
            "EFI/BOOT/BOOTAA64.EFI": sd_boot,
            "loader/loader.conf": f"default {ENTRY}\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n",
            f"loader/entries/{ENTRY}": (
                f"title Debian 12 arm64 ({release})\nlinux /{ESP_KERNEL}\ninitrd /{ESP_INITRD}\noptions {cmdline}\n"
            ),
            ESP_KERNEL: vmlinuz,
            ESP_INITRD: initrd,
        },
    )


def make_root_fs(dest: Path, tree: Path, fs_uuid: str) -> Path:
    dest.unlink(missing_ok=True)
    size = f"{ROOT_SIZE // 1024}k"
    run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-L", "root", "-U", fs_uuid, "-d", str(tree), str(dest), size], timeout=600
    )
    return dest


def _copy_sparse(src: Path, out_fh: BinaryIO, offset: int) -> None:
    # Zero chunks stay holes, so the raw disk costs only what its filesystems hold.
    chunk_size = 4 * MIB
    zero = bytes(chunk_size)
    with src.open("rb") as fh:
        pos = offset
        while chunk := fh.read(chunk_size):
            if chunk != zero[: len(chunk)]:
                out_fh.seek(pos)
                out_fh.write(chunk)
            pos += len(chunk)


def make_disk(dest: Path, *, esp: Path, root_fs: Path, disk_guid: str, esp_guid: str, root_guid: str) -> Path:
    """A GPT disk: partition 1 the ESP, partition 2 the root, 1 MiB aligned; then qcow2."""
    raw = dest.with_suffix(".raw")
    esp_bytes = -(-esp.stat().st_size // MIB) * MIB
    root_bytes = root_fs.stat().st_size
    with raw.open("wb") as fh:
        fh.truncate(MIB + esp_bytes + root_bytes + MIB)
    esp_first = MIB // SECTOR
    root_first = esp_first + esp_bytes // SECTOR
    run(
        [
            "sgdisk",
            "--clear",
            f"--disk-guid={disk_guid}",
            f"--new=1:{esp_first}:{root_first - 1}",
            "--typecode=1:ef00",
            "--change-name=1:ESP",
            f"--partition-guid=1:{esp_guid}",
            f"--new=2:{root_first}:{root_first + root_bytes // SECTOR - 1}",
            f"--typecode=2:{ROOT_TYPE}",
            "--change-name=2:root",
            f"--partition-guid=2:{root_guid}",
            str(raw),
        ]
    )
    with raw.open("r+b") as out:
        _copy_sparse(esp, out, MIB)
        _copy_sparse(root_fs, out, MIB + esp_bytes)
    try:
        to_qcow2(raw, dest)
    finally:
        raw.unlink(missing_ok=True)
    return dest
