"""Grow a disk to the machine's DiskSize with qemu-img, as podman does after copying its image."""

from __future__ import annotations

import json
from pathlib import Path

from podman_emu import proc
from podman_emu.errors import ImageError
from podman_emu.images.formats import sniff_disk

GIB = 1 << 30
# `info` and `resize` only touch metadata (qcow2) or ftruncate (raw): seconds at most, even on a
# slow disk shared with other work.
QEMU_IMG_TIMEOUT_S = 120


def _run_qemu_img(qemu_img: str, args: list[str], what: str) -> str:
    result = proc.run(
        [qemu_img, *args],
        timeout=QEMU_IMG_TIMEOUT_S,
        what=f"qemu-img {args[0]}",
        error=ImageError,
        missing_hint="install qemu-img (Debian/Ubuntu: qemu-utils, Fedora: qemu-img, Homebrew: qemu)",
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise ImageError(f"qemu-img could not {what}: {message}")
    return result.stdout


def virtual_size(path: Path, *, qemu_img: str) -> int:
    """The disk's virtual size in bytes, as qemu-img reports it for the sniffed format."""
    disk_format = sniff_disk(path)
    if disk_format.compression is not None:
        raise ImageError(f"{path} is {disk_format.compression}-compressed; it must be decompressed first")
    output = _run_qemu_img(qemu_img, ["info", "--output=json", "-f", disk_format.container, str(path)], f"read {path}")
    try:
        size = json.loads(output)["virtual-size"]
    except (ValueError, KeyError, TypeError):
        raise ImageError(f"unexpected output from {qemu_img} info for {path}") from None
    if not isinstance(size, int):
        raise ImageError(f"unexpected virtual size {size!r} from {qemu_img} info for {path}")
    return size


def resize_disk(path: Path, size_gib: int, *, qemu_img: str) -> None:
    """Grow ``path`` to ``size_gib`` GiB when its virtual size is smaller; a disk that is already as
    large or larger is left alone (shrinking would destroy the guest's filesystems). The format is
    passed explicitly (-f from the magic bytes), so qemu-img never guesses."""
    if size_gib <= 0:
        raise ImageError(f"disk size must be a positive number of GiB, not {size_gib}")
    disk_format = sniff_disk(path)
    if virtual_size(path, qemu_img=qemu_img) >= size_gib * GIB:
        return
    _run_qemu_img(qemu_img, ["resize", "-f", disk_format.container, str(path), f"{size_gib}G"], f"resize {path}")
