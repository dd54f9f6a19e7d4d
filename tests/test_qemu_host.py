"""Probing the real qemu-system-aarch64 and firmware on this host."""

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import QEMU_AARCH64

from podman_emu.errors import HostNotReady, UsageError
from podman_emu.host.capabilities import PFLASH_SIZE, QemuCapabilities
from podman_emu.host.cpu_profile import choose_profile
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import find_qemu, probe_qemu

needs_qemu = pytest.mark.skipif(
    QEMU_AARCH64 is None, reason="qemu-system-aarch64 missing (apt-get install qemu-system-arm qemu-efi-aarch64)"
)


def facts(version: tuple[int, int, int], models: tuple[str, ...], impdef: bool) -> QemuCapabilities:
    return QemuCapabilities("/q", version, "QEMU emulator version x", models, ("tcg",), impdef)


@needs_qemu
def test_probe_reads_version_cpus_and_pauth_impdef(podman_home: object) -> None:
    qemu = find_qemu(None, None)
    probed = probe_qemu(qemu)
    assert probed.version >= (6, 0, 0)
    assert {"max", "cortex-a57", "neoverse-n1"} <= set(probed.cpu_models)
    assert "tcg" in probed.accelerators
    assert probed.has_pauth_impdef
    assert probe_qemu(qemu) == probed  # second call answers from the cache


@needs_qemu
def test_an_x86_qemu_is_not_accepted_as_aarch64(podman_home: object, tmp_path: Path) -> None:
    x86 = shutil.which("qemu-system-x86_64")
    if x86 is None:
        pytest.skip("qemu-system-x86_64 not installed")
    with pytest.raises(HostNotReady) as raised:
        probe_qemu(Path(x86))
    assert "not an aarch64 system emulator" in raised.value.message


def test_explicit_qemu_must_exist() -> None:
    with pytest.raises(UsageError):
        find_qemu("/nonexistent/qemu-system-aarch64", None)


@needs_qemu
def test_qemu_beside_the_native_binary_is_preferred() -> None:
    assert find_qemu(None, "/usr/bin/qemu-system-x86_64") == Path("/usr/bin/qemu-system-aarch64")


@pytest.mark.parametrize(
    ("version", "models", "impdef", "cpu"),
    [
        ((7, 2, 0), ("max", "cortex-a57", "neoverse-n1"), True, "max,pauth-impdef=on"),
        ((10, 1, 0), ("max", "cortex-a57"), True, "max"),
        ((5, 2, 0), ("max", "cortex-a72", "cortex-a57"), False, "cortex-a72"),
        ((5, 2, 0), ("max",), False, "max"),
    ],
)
def test_profile_choice_per_capability(
    version: tuple[int, int, int], models: tuple[str, ...], impdef: bool, cpu: str
) -> None:
    assert choose_profile(facts(version, models, impdef)).cpu == cpu


@pytest.mark.parametrize(
    ("requested", "fragment"),
    [
        ("host", "hardware accelerator"),
        ("cortex-z9", "no CPU model 'cortex-z9'"),
        ("cortex-a57,pauth-impdef=on", "no pauth-impdef"),
    ],
)
def test_cpu_override_is_checked(requested: str, fragment: str) -> None:
    with pytest.raises(UsageError) as raised:
        choose_profile(facts((7, 2, 0), ("max", "cortex-a57"), False), requested)
    assert fragment in raised.value.message


def test_cpu_override_accepts_known_models() -> None:
    assert choose_profile(facts((7, 2, 0), ("max", "cortex-a57"), True), "cortex-a57").cpu == "cortex-a57"


@pytest.mark.skipif(not os.path.exists("/usr/share/AAVMF/AAVMF_CODE.fd"), reason="qemu-efi-aarch64 missing")
def test_firmware_comes_from_the_distro_descriptor() -> None:
    firmware = find_firmware(Path(QEMU_AARCH64 or "/usr/bin/qemu-system-aarch64"))
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
