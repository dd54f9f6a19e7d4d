"""What goes into the trixie amd64 root that runs podman 5.4.2. Part of the root's cache key."""

from __future__ import annotations

SUITE = "trixie"
ARCH = "amd64"
MIRROR = "http://deb.debian.org/debian"

# podman 5.4.2 with its qemu provider's helpers (qemu-system-x86 for native machines, qemu 10's
# qemu-system-arm + AAVMF for emulated ones, qemu-img for init, gvproxy, virtiofsd), rootless
# podman's uidmap/passt, ssh for `podman machine ssh` and podman's own ssh after Ready, and
# python3-venv: podman-emu runs from a venv of the root's python (3.13), not the host's.
ROOT_PACKAGES = (
    "podman",
    "qemu-system-x86",
    "qemu-system-arm",
    "qemu-efi-aarch64",
    "qemu-utils",
    "gvproxy",
    "virtiofsd",
    "openssh-client",
    "uidmap",
    "passt",
    "ca-certificates",
    "iproute2",
    "procps",
    "psmisc",
    "mount",
    "python3",
    "python3-venv",
    # The native machine's check: `strace -f -e execve` records the argv podman passes to
    # qemu-system-x86_64 and the argv the real qemu-system-x86_64 is finally exec'd with.
    "strace",
)

# Debian installs these outside podman's default helper_binaries_dir (/usr/local/libexec/podman,
# /usr/local/lib/podman, /usr/libexec/podman, /usr/lib/podman; trixie's containers.conf sets no
# other list): gvproxy is looked up there only (no $PATH fallback), virtiofsd there and on $PATH.
# The root links them into /usr/local/libexec/podman, which is what a Debian user has to do too.
HELPER_DIR = "usr/local/libexec/podman"
HELPER_LINKS = {"gvproxy": "/usr/bin/gvproxy", "virtiofsd": "/usr/libexec/virtiofsd"}

# Where podman-emu's dependencies live inside the root (world-readable: the test user runs it).
VENV = "opt/podman-emu-venv"


def key_material(python_requirements: list[str]) -> dict[str, object]:
    return {
        "suite": SUITE,
        "arch": ARCH,
        "mirror": MIRROR,
        "packages": list(ROOT_PACKAGES),
        "helper_links": HELPER_LINKS,
        "venv": VENV,
        "python_requirements": python_requirements,
    }
