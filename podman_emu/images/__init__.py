"""aarch64 disk images: sniffing, materializing, resizing, the arch check and Fedora CoreOS streams."""

from podman_emu.images.arch import ArchVerdict, detect_disk_arch
from podman_emu.images.formats import DiskFormat, sniff_disk
from podman_emu.images.materialize import Materialized, materialize, materialize_disk
from podman_emu.images.resize import resize_disk, virtual_size

__all__ = [
    "ArchVerdict",
    "DiskFormat",
    "Materialized",
    "detect_disk_arch",
    "materialize",
    "materialize_disk",
    "resize_disk",
    "sniff_disk",
    "virtual_size",
]
