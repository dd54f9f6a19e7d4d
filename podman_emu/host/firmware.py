"""aarch64 UEFI firmware: a read-only code image and a template for the per-machine vars file.

QEMU's firmware descriptors (docs/interop/firmware.json) come first because they are what the
packager says is right for this qemu; the path lists after them cover installs that ship none.
"""

from __future__ import annotations

import fnmatch
import json
import os
from pathlib import Path
from typing import Any

from podman_emu.errors import HostNotReady, UsageError
from podman_emu.host.capabilities import PFLASH_SIZE, Firmware, FirmwareFormat


def _is_pflash_sized(path: str) -> bool:
    try:
        return os.path.getsize(path) == PFLASH_SIZE
    except OSError:
        return False


def descriptor_dirs(qemu_binary: Path | None) -> list[Path]:
    """Most specific last, as the interop spec orders them (user > sysadmin > distro)."""
    dirs = [Path("/usr/share/qemu/firmware")]
    if qemu_binary is not None:
        # Homebrew, MacPorts, Nix and self-built qemu install descriptors under their prefix.
        for binary in (qemu_binary, qemu_binary.resolve()):
            prefix_dir = binary.parent.parent / "share" / "qemu" / "firmware"
            if prefix_dir not in dirs:
                dirs.append(prefix_dir)
    dirs.append(Path("/etc/qemu/firmware"))
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    dirs.append(Path(config_home) / "qemu" / "firmware")
    return dirs


def _load_descriptors(dirs: list[Path]) -> list[tuple[str, Path]]:
    by_name: dict[str, Path | None] = {}
    for directory in dirs:
        try:
            entries = sorted(directory.glob("*.json"))
        except OSError:
            continue
        for entry in entries:
            try:
                # An empty file in a more specific dir hides the same-named descriptor (spec).
                by_name[entry.name] = None if entry.stat().st_size == 0 else entry
            except OSError:
                continue
    return [(name, path) for name, path in sorted(by_name.items()) if path is not None]


def _usable_descriptor(document: Any) -> tuple[str, str, str, str] | None:
    if not isinstance(document, dict) or "uefi" not in document.get("interface-types", []):
        return None
    features = set(document.get("features", []))
    if features & {"secure-boot", "enrolled-keys", "requires-smm", "amd-sev", "intel-tdx"}:
        return None
    targets = document.get("targets", [])
    if not any(
        isinstance(t, dict)
        and t.get("architecture") == "aarch64"
        and any(
            fnmatch.fnmatch("virt", pattern) or fnmatch.fnmatch("virt-7.2", pattern)
            for pattern in t.get("machines", [])
        )
        for t in targets
    ):
        return None
    mapping = document.get("mapping", {})
    if not isinstance(mapping, dict) or mapping.get("device") != "flash":
        return None
    if mapping.get("mode", "split") != "split":
        return None
    executable = mapping.get("executable", {})
    template = mapping.get("nvram-template", {})
    if not isinstance(executable, dict) or not isinstance(template, dict):
        return None
    code, vars_template = executable.get("filename"), template.get("filename")
    if not isinstance(code, str) or not isinstance(vars_template, str):
        return None
    return code, str(executable.get("format", "raw")), vars_template, str(template.get("format", "raw"))


def _from_descriptors(qemu_binary: Path | None) -> Firmware | None:
    for _name, path in _load_descriptors(descriptor_dirs(qemu_binary)):
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        usable = _usable_descriptor(document)
        if usable is None:
            continue
        code, code_format, vars_template, vars_format = usable
        # Debian 12's 50-edk2-aarch64-secure.json names a file the package does not ship.
        if not (os.path.isfile(code) and os.path.isfile(vars_template)):
            continue
        if code_format not in ("raw", "qcow2") or vars_format not in ("raw", "qcow2"):
            continue
        if code_format == "raw" and not _is_pflash_sized(code):
            continue
        return Firmware(code, code_format, vars_template, vars_format, f"descriptor {path}")  # type: ignore[arg-type]
    return None


def _known_pairs(qemu_binary: Path | None) -> list[tuple[str, str | None]]:
    pairs: list[tuple[str, str | None]] = []
    if qemu_binary is not None:
        for binary in (qemu_binary, qemu_binary.resolve()):
            share = binary.parent.parent / "share" / "qemu"
            pairs.append((str(share / "edk2-aarch64-code.fd"), str(share / "edk2-arm-vars.fd")))
    pairs += [
        (str(Path.home() / ".local/share/qemu/edk2-aarch64-code.fd"), None),
        ("/usr/local/share/qemu/edk2-aarch64-code.fd", "/usr/local/share/qemu/edk2-arm-vars.fd"),
        ("/opt/homebrew/share/qemu/edk2-aarch64-code.fd", "/opt/homebrew/share/qemu/edk2-arm-vars.fd"),
        ("/opt/local/share/qemu/edk2-aarch64-code.fd", "/opt/local/share/qemu/edk2-arm-vars.fd"),
        ("/usr/share/AAVMF/AAVMF_CODE.fd", "/usr/share/AAVMF/AAVMF_VARS.fd"),
        ("/usr/share/edk2/aarch64/QEMU_EFI-pflash.raw", "/usr/share/edk2/aarch64/vars-template-pflash.raw"),
        ("/usr/share/edk2/aarch64/QEMU_CODE.fd", "/usr/share/edk2/aarch64/QEMU_VARS.fd"),
        ("/usr/share/qemu/edk2-aarch64-code.fd", "/usr/share/qemu/edk2-arm-vars.fd"),
    ]
    return pairs


# Firmware that is not pflash-sized but works with -bios (podman's own linux/arm64 choice).
BIOS_FALLBACKS = ("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd", "/usr/share/edk2/aarch64/QEMU_EFI.fd")


def find_firmware(
    qemu_binary: Path | None, *, code_override: str | None = None, vars_override: str | None = None
) -> Firmware:
    if code_override:
        return _explicit_firmware(code_override, vars_override)
    if vars_override:
        raise UsageError(
            "--vars-template needs --firmware too",
            hint="A vars template only fits the code image it was built with; give both.",
        )
    found = _from_descriptors(qemu_binary)
    if found is not None:
        return found
    for code, vars_template in _known_pairs(qemu_binary):
        if not _is_pflash_sized(code):
            continue
        if vars_template is not None and not _is_pflash_sized(vars_template):
            vars_template = None
        # Without a template, podman's own recipe applies: a 64 MiB zero file that edk2 formats.
        return Firmware(code, "raw", vars_template, "raw", "well-known path")
    for bios in BIOS_FALLBACKS:
        if os.path.isfile(bios):
            return Firmware(bios, "raw", None, "raw", "well-known path (not 64 MiB: loaded with -bios)", bios=True)
    raise HostNotReady(
        "no aarch64 UEFI firmware was found (checked QEMU firmware descriptors and the usual "
        "Homebrew, MacPorts, Debian, Fedora, Arch and Nix locations)",
        hint="Install it: Debian/Ubuntu `apt-get install qemu-efi-aarch64`, Fedora `dnf install "
        "edk2-aarch64`, macOS `brew install qemu` (ships edk2-aarch64-code.fd). Or pass --firmware CODE "
        "[--vars-template VARS].",
    )


def _sniff_format(path: str) -> FirmwareFormat:
    with open(path, "rb") as handle:
        return "qcow2" if handle.read(4) == b"QFI\xfb" else "raw"


def _explicit_firmware(code: str, vars_template: str | None) -> Firmware:
    code = os.path.abspath(os.path.expanduser(code))
    if not os.path.isfile(code):
        raise UsageError(f"--firmware {code}: no such file", hint="Give the path of an aarch64 UEFI code image.")
    code_format = _sniff_format(code)
    if code_format == "raw" and not _is_pflash_sized(code):
        size = os.path.getsize(code)
        raise UsageError(
            f"--firmware {code} is {size} bytes; a pflash image must be exactly {PFLASH_SIZE} bytes "
            "(qemu refuses it: 'device requires 67108864 bytes')",
            hint=f"Use a 64 MiB image (edk2-aarch64-code.fd, AAVMF_CODE.fd), or pad a copy: "
            f"`cp {code} code.fd && truncate -s 64M code.fd`, then pass --firmware code.fd.",
        )
    vars_format: FirmwareFormat = "raw"
    if vars_template is not None:
        vars_template = os.path.abspath(os.path.expanduser(vars_template))
        if not os.path.isfile(vars_template):
            raise UsageError(f"--vars-template {vars_template}: no such file", hint="Give an existing vars template.")
        vars_format = _sniff_format(vars_template)
        if vars_format == "raw" and not _is_pflash_sized(vars_template):
            raise UsageError(
                f"--vars-template {vars_template} is {os.path.getsize(vars_template)} bytes; it must be "
                f"exactly {PFLASH_SIZE} bytes",
                hint="Use the vars template shipped with the code image, or leave it out: podman-emu then "
                "creates a 64 MiB blank vars file that the firmware formats on first boot.",
            )
    return Firmware(code, code_format, vars_template, vars_format, "command line")
