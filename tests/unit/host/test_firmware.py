"""Finding the aarch64 UEFI firmware: QEMU's descriptors first, then the known paths."""

import json
from pathlib import Path

import pytest

from podman_emu.errors import UsageError
from podman_emu.host.capabilities import PFLASH_SIZE
from podman_emu.host.firmware import find_firmware


def test_firmware_comes_from_the_distro_descriptor(qemu_aarch64: str, aavmf: str) -> None:
    firmware = find_firmware(Path(qemu_aarch64))
    assert firmware.code == "/usr/share/AAVMF/AAVMF_CODE.fd"
    assert firmware.vars_template == "/usr/share/AAVMF/AAVMF_VARS.fd"
    # Debian 12's 50-edk2-aarch64-secure.json names a file that does not exist; it must be skipped.
    assert "60-edk2-aarch64.json" in firmware.source
    assert not firmware.bios


def test_user_descriptor_overrides_and_dangling_ones_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, variables = tmp_path / "code.fd", tmp_path / "vars.fd"
    for path in (code, variables):
        with open(path, "wb") as handle:
            handle.truncate(PFLASH_SIZE)
    descriptors = tmp_path / "config" / "qemu" / "firmware"
    descriptors.mkdir(parents=True)

    def descriptor(name: str, code_file: Path) -> None:
        document = {
            "interface-types": ["uefi"],
            "mapping": {
                "device": "flash",
                "executable": {"filename": str(code_file), "format": "raw"},
                "nvram-template": {"filename": str(variables), "format": "raw"},
            },
            "targets": [{"architecture": "aarch64", "machines": ["virt-*"]}],
            "features": [],
        }
        (descriptors / name).write_text(json.dumps(document))

    descriptor("10-dangling.json", tmp_path / "missing.fd")
    descriptor("20-mine.json", code)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    firmware = find_firmware(None)
    assert firmware.code == str(code) and "20-mine.json" in firmware.source


def test_explicit_firmware_of_the_wrong_size_is_refused_with_a_fix(tmp_path: Path) -> None:
    small = tmp_path / "QEMU_EFI.fd"
    small.write_bytes(b"\0" * 2 * 1024 * 1024)
    with pytest.raises(UsageError) as raised:
        find_firmware(None, code_override=str(small))
    assert "67108864" in raised.value.message and "truncate -s 64M" in (raised.value.hint or "")


def test_vars_template_alone_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        find_firmware(None, vars_override=str(tmp_path / "v.fd"))
