"""Real aarch64 guest parts, built from Debian packages, for the end-to-end tests and benchmarks.

Independent of pytest on purpose: `benchmarks/boot.py` imports it too.
"""

from .boot import AAVMF_CODE, AAVMF_VARS, MILESTONES, BootResult, boot_disk, parse_milestones
from .build import CACHE_ENV, DEFAULT_CACHE, GuestImage, GuestSpec, build_guest_image, cache_root, check_host
from .debian import GuestToolMissing
from .initramfs import DEFAULT_INIT, MARK

__all__ = [
    "AAVMF_CODE",
    "AAVMF_VARS",
    "CACHE_ENV",
    "DEFAULT_CACHE",
    "DEFAULT_INIT",
    "MARK",
    "MILESTONES",
    "BootResult",
    "GuestImage",
    "GuestSpec",
    "GuestToolMissing",
    "boot_disk",
    "build_guest_image",
    "cache_root",
    "check_host",
    "parse_milestones",
]
