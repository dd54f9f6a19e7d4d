"""A GPT disk with an EFI system partition that AAVMF boots on its own.

The firmware finds `\\EFI\\BOOT\\BOOTAA64.EFI` on the removable-media path without any boot entry
in its variable store, so a fresh vars file is enough. That file is systemd-boot, which loads the
kernel and initramfs from the same partition (kernel and initrd are never handed to qemu).
Everything is built in plain files: sgdisk for the table, mkfs.vfat/mtools for the FAT, no mounts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .debian import require_tool

SECTOR = 512
MIB = 1024 * 1024
ESP_TYPE = "ef00"
ESP_NAME = "PODMAN-EMU-ESP"


def _run(args: list[str], timeout: float = 120) -> None:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


def check_tools() -> None:
    require_tool("sgdisk", "gdisk")
    require_tool("mkfs.vfat", "dosfstools")
    require_tool("mcopy", "mtools")
    require_tool("qemu-img", "qemu-utils")


def build_esp(dest: Path, files: dict[str, Path | str]) -> Path:
    """A FAT image holding `files` (ESP path -> host file, or text content)."""
    payload = sum(len(v.encode()) if isinstance(v, str) else v.stat().st_size for v in files.values())
    # Room for FAT tables and cluster slack; the minimum keeps mkfs.vfat away from FAT12.
    size_mib = max(32, -(-(payload * 11 // 10 + 4 * MIB) // MIB))
    dest.unlink(missing_ok=True)
    _run(["mkfs.vfat", "-C", "-n", "PODMANESP", str(dest), str(size_mib * 1024)])
    dirs = sorted({str(Path(p).parent) for p in files} - {"."}, key=lambda d: d.count("/"))
    made: set[str] = set()
    for d in dirs:
        parts = Path(d).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                _run(["mmd", "-i", str(dest), f"::/{sub}"])
                made.add(sub)
    text_dir = dest.parent / "esp-text"
    text_dir.mkdir(exist_ok=True)
    for esp_path, src in files.items():
        if isinstance(src, str):
            text_file = text_dir / Path(esp_path).name
            text_file.write_text(src)
            src = text_file
        _run(["mcopy", "-i", str(dest), str(src), f"::/{esp_path}"])
    return dest


def build_gpt_disk(raw: Path, esp_image: Path, *, disk_guid: str, esp_guid: str) -> Path:
    """Lay esp_image into partition 1 of a fresh GPT disk (1 MiB aligned, room for the backup GPT)."""
    esp_bytes = esp_image.stat().st_size
    total = MIB + esp_bytes + MIB
    with raw.open("wb") as fh:
        fh.truncate(total)
    first = MIB // SECTOR
    last = first + esp_bytes // SECTOR - 1
    _run(
        [
            "sgdisk",
            "--clear",
            f"--disk-guid={disk_guid}",
            f"--new=1:{first}:{last}",
            f"--typecode=1:{ESP_TYPE}",
            f"--change-name=1:{ESP_NAME}",
            f"--partition-guid=1:{esp_guid}",
            str(raw),
        ]
    )
    with raw.open("r+b") as out, esp_image.open("rb") as src:
        out.seek(MIB)
        while chunk := src.read(4 * MIB):
            out.write(chunk)
    return raw


def to_qcow2(raw: Path, dest: Path) -> Path:
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(dest)], timeout=300)
    return dest
