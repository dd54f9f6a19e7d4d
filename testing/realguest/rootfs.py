"""The Debian 12 arm64 root: mmdebstrap (arm64 maintainer scripts run through qemu-user via
binfmt_misc), then the FCOS-like customisation from guestfiles."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from . import guestfiles, packages
from .run import BuildError, run

IGNITION_IN_DEB = "usr/lib/dracut/modules.d/30ignition/ignition"
MMDEBSTRAP_TIMEOUT = 1800


@dataclass(frozen=True)
class RootInfo:
    kernel_release: str
    vmlinuz: Path
    initrd: Path
    podman_version: str
    ignition_version: str
    systemd_boot_efi: Path


def write_file(root: Path, item: guestfiles.GuestFile) -> None:
    target = root / item.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    target.write_text(item.content)
    target.chmod(item.mode)


def mmdebstrap(root: Path, work: Path) -> None:
    """A minbase bookworm arm64 tree with GUEST_PACKAGES. The initramfs-tools settings go in with
    the essential packages, before the kernel's postinst builds the initrd: it is built once,
    small, and able to boot from virtio."""
    hook = work / "initramfs-hook"
    hook.write_text(guestfiles.INITRAMFS_HOOK)
    conf = work / "initramfs.conf"
    conf.write_text("MODULES=list\nCOMPRESS=zstd\n")
    # /etc/initramfs-tools/modules is a conffile of initramfs-tools: it must not exist beforehand.
    essential_hook = (
        'mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/hooks"'
        f' && install -m 0755 {hook} "$1/etc/initramfs-tools/hooks/podman-guest-virtio"'
        f' && install -m 0644 {conf} "$1/etc/initramfs-tools/conf.d/podman-guest.conf"'
    )
    run(
        [
            "mmdebstrap",
            "--mode=root",
            "--format=directory",
            f"--arch={packages.ARCH}",
            "--variant=minbase",
            '--aptopt=APT::Install-Recommends "false"',
            '--aptopt=Acquire::Retries "3"',
            f"--include={','.join(packages.GUEST_PACKAGES)}",
            f"--essential-hook={essential_hook}",
            packages.SUITE,
            str(root),
            *packages.MIRROR_LINES,
        ],
        timeout=MMDEBSTRAP_TIMEOUT,
    )


def _dpkg_version(root: Path, package: str) -> str:
    return run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f=${Version}", package]).strip()


def customize(root: Path, ignition_deb: Path, work: Path, *, hostname: str, machine_id: str) -> RootInfo:
    for rel in guestfiles.REMOVED_PATHS:
        path = root / rel
        if path.is_symlink() or path.exists():
            path.unlink()
    for pattern in guestfiles.REMOVED_GLOBS:
        for path in root.glob(pattern):
            path.unlink()
    for item in guestfiles.root_files(hostname, machine_id):
        write_file(root, item)

    unpacked = work / "ignition-deb"
    run(["dpkg-deb", "-x", str(ignition_deb), str(unpacked)])
    binary = unpacked / IGNITION_IN_DEB
    if not binary.is_file():
        raise BuildError(f"{ignition_deb.name} has no {IGNITION_IN_DEB}")
    dest = root / "usr/local/sbin/ignition"
    shutil.copyfile(binary, dest)
    dest.chmod(0o755)

    # The host's systemctl edits the tree offline: fast, and no arm64 emulation needed.
    systemctl = ["systemctl", f"--root={root}"]
    run([*systemctl, "enable", guestfiles.FIRSTBOOT_UNIT, "systemd-networkd.service"])
    run([*systemctl, "mask", *packages.TIMERS_TO_MASK])
    # FCOS's presets enable the user podman.socket for every user; podman's config relies on it.
    run([*systemctl, "--global", "enable", "podman.socket"])

    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in {root / 'boot'}, found {[k.name for k in kernels]}")
    release = kernels[0].name.removeprefix("vmlinuz-")
    initrd = root / "boot" / f"initrd.img-{release}"
    if not initrd.is_file():
        raise BuildError(f"the kernel's postinst built no {initrd.name}")
    sd_boot = root / "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"
    if not sd_boot.is_file():
        raise BuildError(f"{sd_boot} missing (systemd-boot-efi)")
    return RootInfo(
        kernel_release=release,
        vmlinuz=kernels[0],
        initrd=initrd,
        podman_version=_dpkg_version(root, "podman"),
        ignition_version=packages.IGNITION[2],
        systemd_boot_efi=sd_boot,
    )
