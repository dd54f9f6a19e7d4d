"""What goes into the real guest and where it comes from. Part of the cache key."""

from __future__ import annotations

SUITE = "bookworm"
ARCH = "arm64"
MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# mmdebstrap takes full sources.list lines as mirrors: bookworm plus its updates and security
# suites, so the kernel and podman are the ones a current Debian 12 install gets.
MIRROR_LINES = (
    f"deb {MIRROR} {SUITE} main",
    f"deb {MIRROR} {SUITE}-updates main",
    f"deb {SECURITY_MIRROR} {SUITE}-security main",
)

# What an FCOS podman machine guest offers podman 4.3.1: systemd + logind (the ACPI power button
# for `machine stop`), sshd, sudo, rootless podman with netavark, and a bootable kernel. busybox
# gives the guest a wget for network checks.
GUEST_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "libpam-systemd",
    "dbus-user-session",
    "openssh-server",
    "sudo",
    "iproute2",
    "iputils-ping",
    "procps",
    "kmod",
    "e2fsprogs",
    "podman",
    "crun",
    "conmon",
    "golang-github-containers-common",
    "netavark",
    "aardvark-dns",
    "slirp4netns",
    "uidmap",
    "fuse-overlayfs",
    "catatonit",
    "iptables",
    "linux-image-arm64",
    "initramfs-tools",
    "zstd",
    "systemd-boot-efi",
    "busybox-static",
)

# Neither exists in bookworm. Exact trixie versions, so the cache key pins what is inside.
TRIXIE_SUITE = "trixie"
IGNITION = ("ignition", "arm64", "2.14.0+ds1-1+b19")
GVPROXY = ("gvproxy", "amd64", "0.8.1-3")

# The modules the initrd must load before it can find the root; the rest (virtio_net, 9p,
# qemu_fw_cfg) load from the real root. virtio_console too: podman's ready.service writes
# /dev/vport1p1 as soon as its ordering allows, and udev may not have loaded the module by then.
INITRD_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "virtio_console")

TIMERS_TO_MASK = ("apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer", "man-db.timer")

BUSYBOX_APPLETS = ("sh", "uname", "cat", "wget", "echo", "ls")


def key_material() -> dict[str, object]:
    return {
        "suite": SUITE,
        "arch": ARCH,
        "mirrors": list(MIRROR_LINES),
        "packages": list(GUEST_PACKAGES),
        "trixie": [list(IGNITION), list(GVPROXY)],
        "initrd_modules": list(INITRD_MODULES),
        "masked": list(TIMERS_TO_MASK),
        "busybox_applets": list(BUSYBOX_APPLETS),
    }
