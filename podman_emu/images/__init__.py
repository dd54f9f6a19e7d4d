"""aarch64 disk images: sniffing, materializing, resizing, the arch check and Fedora CoreOS streams."""

from podman_emu.images.arch import ArchVerdict, detect_disk_arch
from podman_emu.images.formats import DiskFormat, sniff_disk
from podman_emu.images.install import InstalledDisk, check_arch, install_disk
from podman_emu.images.materialize import Materialized, materialize, materialize_disk
from podman_emu.images.resize import resize_disk, virtual_size
from podman_emu.images.stream import (
    STREAMS,
    CachedImage,
    StreamDisk,
    images_dir,
    list_cached_images,
    resolve_stream_image,
)

__all__ = [
    "STREAMS",
    "ArchVerdict",
    "CachedImage",
    "DiskFormat",
    "InstalledDisk",
    "Materialized",
    "StreamDisk",
    "check_arch",
    "detect_disk_arch",
    "images_dir",
    "install_disk",
    "list_cached_images",
    "materialize",
    "materialize_disk",
    "resize_disk",
    "resolve_stream_image",
    "sniff_disk",
    "virtual_size",
]
