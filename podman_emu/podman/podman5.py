"""Podman 5.x machine configs: which provider wrote one, the answer for each, and the qemu
command line podman 5 builds for a qemu machine.

Podman 5 writes one `MachineConfig` for every provider ("Version": 1) and stores no qemu command
line: it rebuilds it at every start (podman v5.8.2 pkg/machine/qemu/stubber.go:54-90). A Linux
qemu machine is converted through podman-emu's qemu wrapper (conversion.start_helpers); every
other provider gets what applies to it, told apart by the one provider key podman fills
(vmconfigs/config.go:35-39, all `omitempty`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from podman_emu import paths
from podman_emu.errors import UnsupportedLayout

ARM64_CHECK = "podman run --rm --platform linux/arm64 docker.io/library/alpine uname -m"
# Every 5.x x86_64 machine-os image (built for applehv, hyperv and qemu alike) installs
# qemu-user-static for aarch64 and registers it with binfmt (podman-machine-os v5.4.2
# podman-image/Containerfile:66,71-72; v5.8.2 build_common.sh:82-86,123-124), and its CI checks it.
_USER_MODE = (
    "arm64 containers already run in it through user-mode emulation: every podman 5.x x86_64 "
    "machine image ships qemu-user-static for aarch64 with binfmt registered. Check it with "
    f"`{ARM64_CHECK}` (it prints aarch64)."
)
_NATIVE_ARM64 = (
    "so this is a native arm64 machine: arm64 containers already run natively in it, and there is nothing to convert."
)
PROVIDER_KEYS = {
    "AppleHypervisor": "applehv",
    "LibKrunHypervisor": "libkrun",
    "WSLHypervisor": "wsl",
    "HyperVHypervisor": "hyperv",
    "QEMUHypervisor": "qemu",
}


def provider_of(content: Mapping[str, Any]) -> str | None:
    return next((provider for key, provider in PROVIDER_KEYS.items() if isinstance(content.get(key), dict)), None)


def _image_arch(content: Mapping[str, Any]) -> str | None:
    """Podman 5 names the disk NAME-<GOARCH>.<ext> (v5.8.2 shim/host.go:160); Windows paths too."""
    image = content.get("ImagePath")
    path = image.get("Path") if isinstance(image, dict) else None
    if not isinstance(path, str):
        return None
    stem = path.replace("\\", "/").rsplit("/", 1)[-1].split(".", 1)[0]
    arch = stem.rsplit("-", 1)[-1]
    return arch if arch in ("amd64", "arm64") else None


def _answer(provider: str | None, arch: str | None) -> tuple[str, str]:
    """(what this machine is, what applies to it)."""
    if provider == "applehv":
        what = "a podman 5.x applehv machine (Apple's Virtualization.framework, run by vfkit)"
        if arch == "arm64":
            return what, f"It runs on Apple silicon, {_NATIVE_ARM64}"
        return what, (
            "Full emulation is impossible with that provider: vfkit runs guests of the host's own "
            "architecture only, and podman 5 has no qemu provider on macOS. But " + _USER_MODE
        )
    if provider == "libkrun":
        return "a podman 5.x libkrun machine (krunkit)", (
            f"libkrun runs only on Apple silicon (podman refuses it on Intel Macs), {_NATIVE_ARM64}"
        )
    if provider == "hyperv":
        return "a podman 5.x Hyper-V machine", (
            "Full emulation is impossible with that provider: Hyper-V runs guests of the host's own "
            "architecture only, and podman 5 offers no qemu provider on Windows. But " + _USER_MODE
        )
    if provider == "wsl":
        return "a podman 5.x WSL machine", (
            "Full emulation is impossible with that provider: WSL 2 runs the distribution in Windows' "
            "own lightweight VM, with the host's architecture. Whether arm64 containers run in it "
            "through user-mode emulation depends on its image: podman's machine-os checks that only "
            f"for the other providers (podman#19961). Check it with `{ARM64_CHECK}`; an `exec format "
            "error` means qemu-user-static for aarch64 is missing in the WSL distribution."
        )
    if provider == "qemu":
        # Only an arm64 host's machine comes here (is_convertible_podman5 takes the others).
        return "a podman 5.x qemu machine with an arm64 disk", f"It runs on an arm64 host, {_NATIVE_ARM64}"
    # Every file podman 5 writes has its provider's section; without one podman cannot start it.
    return "a podman 5.x machine config with no provider section (" + ", ".join(PROVIDER_KEYS) + ")", (
        "podman cannot start it either: if it is a qemu machine, its QEMUHypervisor section is "
        "gone or null. Restore the file from a backup, or recreate the machine."
    )


def is_convertible_podman5(content: Mapping[str, Any]) -> bool:
    """A 5.x qemu machine of an x86_64 host (the provider exists only on Linux in 5.x): the one
    podman-emu converts. Its disk is NAME-amd64.* as podman made it, or the aarch64 disk a
    conversion put there; an arm64 host's machine is native already."""
    return provider_of(content) == "qemu" and _image_arch(content) != "arm64"


NATIVE_QEMU = "qemu-system-x86_64"
# What podman 5 on linux/amd64 hard-codes (v5.4.2 qemu/options_linux_amd64.go:9-16; 5.0 and 5.1
# lack the -M) and the MAC every 5.x machine gets (qemu/command/command.go:51-61).
_ARCH_OPTIONS = ["-accel", "kvm", "-cpu", "host", "-M", "memory-backend=mem"]
_MAC = "5a:94:ef:e4:0c:ee"


def podman5_argv(content: Mapping[str, Any]) -> list[str]:
    """The qemu command line podman 5.2+ builds for this (validated) config at `podman machine
    start` (reference podman5-and-slow-boot.md §A2; checked against the argv the real 5.4.2 passed
    in tests/data), with the binary by name: podman finds it at start through its helper dirs
    and $PATH. What podman-emu shows and plans with, never what it writes: the config stores no
    command line."""
    name = str(content["Name"])
    ignition = paths.podman_config_dir() / f"{name}.ign"  # written once, at init
    resources = content["Resources"]
    qemu = content["QEMUHypervisor"]
    runtime = os.path.dirname(str(qemu["QEMUPidPath"]["Path"]))
    argv = [
        NATIVE_QEMU,
        *_ARCH_OPTIONS,
        "-drive", f"if=virtio,file={content['ImagePath']['Path']}",
        "-object", f"memory-backend-memfd,id=mem,size={resources['Memory']}M,share=on",
        "-m", str(resources["Memory"]),
        "-smp", str(resources["CPUs"]),
        "-fw_cfg", f"name=opt/com.coreos/config,file={ignition}",
        "-qmp", f"unix:{qemu['QMPMonitor']['Address']['Path']},server=on,wait=off",
        "-netdev", f"stream,id=vlan,server=off,addr.type=unix,addr.path={runtime}/{name}-gvproxy.sock",
        "-device", f"virtio-net-pci,netdev=vlan,mac={_MAC}",
        "-device", "virtio-serial",
        "-chardev", f"socket,path={runtime}/{name}.sock,server=on,wait=off,id=a{name}_ready",
        "-device", f"virtserialport,chardev=a{name}_ready,name=org.fedoraproject.port.0",
        "-pidfile", str(qemu["QEMUPidPath"]["Path"]),
    ]  # fmt: skip
    argv += _usb_passthrough(resources.get("USBs") or [])
    for index, mount in enumerate(content.get("Mounts") or []):
        argv += [
            "-chardev", f"socket,id=virtiofschar{index},path={runtime}/virtiofschar{index}",
            "-device", f"vhost-user-fs-pci,queue-size=1024,chardev=virtiofschar{index},tag={mount['Tag']}",
        ]  # fmt: skip
    return [*argv, "-display", "none"]


def _usb_passthrough(usbs: list[Mapping[str, Any]]) -> list[str]:
    """`podman machine init --usb`: podman 5's SetUSBHostPassthrough, right after the pid file
    (5.0 had it as a TODO and passed none)."""
    if not usbs:
        return []
    argv = ["-device", "qemu-xhci"]
    for usb in usbs:
        if usb.get("Bus") and usb.get("DevNumber"):
            argv += ["-device", f"usb-host,hostbus={usb['Bus']},hostaddr={usb['DevNumber']}"]
        else:
            argv += ["-device", f"usb-host,vendorid={usb.get('Vendor', 0)},productid={usb.get('Product', 0)}"]
    return argv


def refuse_podman5(path: Path, content: Mapping[str, Any]) -> NoReturn:
    what, applies = _answer(provider_of(content), _image_arch(content))
    raise UnsupportedLayout(
        f'{path}: {what} ("Version": {content.get("Version")}); podman-emu converts podman 3.3–4.9 qemu machines only',
        hint=f"{applies} Nothing was changed.",
    )
