"""Podman 5.x machine configs: which provider wrote one, and the answer for each.

Podman 5 writes one `MachineConfig` for every provider ("Version": 1) and stores no qemu command
line (it rebuilds it at every start, podman v5.8.2 pkg/machine/qemu/stubber.go:54-90), so there is
nothing podman-emu can rewrite. What the user can do instead depends on the provider, told apart
by the one provider key podman fills (vmconfigs/config.go:35-39, all `omitempty`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

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
        return "a podman 5.x qemu machine", (
            "podman 5 stores no qemu command: it rebuilds the qemu command line at every start from "
            "compiled-in options (-accel kvm -cpu host), so editing this file cannot make the machine "
            "emulated, and podman-emu has no route for 5.x qemu machines yet. " + _USER_MODE + " For a "
            "fully emulated aarch64 machine, use podman 4.9 with its qemu provider."
        )
    return "a podman 5.x machine config", (
        "podman 5 stores no qemu command line (it rebuilds it at every start), so there is nothing to "
        "convert. " + _USER_MODE
    )


def refuse_podman5(path: Path, content: Mapping[str, Any]) -> NoReturn:
    what, applies = _answer(provider_of(content), _image_arch(content))
    raise UnsupportedLayout(
        f'{path}: {what} ("Version": {content.get("Version")}); podman-emu converts podman 3.3–4.9 qemu machines only',
        hint=f"{applies} Nothing was changed.",
    )
