"""Finding and probing the real qemu-system-aarch64 on this host."""

import shutil
from pathlib import Path

import pytest

from podman_emu.errors import HostNotReady, UsageError
from podman_emu.host.qemu import NIC_ROM, find_qemu, missing_nic_rom, probe_qemu
from testing.podman_home import Sandbox

needs_qemu = pytest.mark.usefixtures("qemu_aarch64")


@needs_qemu
def test_probe_reads_version_cpus_pauth_impdef_and_lpa2(podman_home: Sandbox) -> None:
    qemu = find_qemu(None, None)
    probed = probe_qemu(qemu)
    assert probed.version >= (6, 0, 0)
    assert {"max", "cortex-a57", "neoverse-n1"} <= set(probed.cpu_models)
    assert "tcg" in probed.accelerators
    assert probed.has_pauth_impdef
    assert probed.has_lpa2  # QEMU >= 7.0 (Debian 12 has 7.2)
    assert probe_qemu(qemu) == probed  # second call answers from the cache


@needs_qemu
def test_an_x86_qemu_is_not_accepted_as_aarch64(podman_home: Sandbox, tmp_path: Path) -> None:
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


@needs_qemu
def test_the_nic_rom_is_looked_for_where_that_qemu_looks(tmp_path: Path) -> None:
    # qemu derives its data dirs from where its binary is: a copy under tmp_path searches
    # tmp_path/share/qemu etc., which hold no ROM until one is put there.
    qemu = tmp_path / "bin" / "qemu-system-aarch64"
    qemu.parent.mkdir()
    shutil.copy2(find_qemu(None, None).resolve(), qemu)
    searched = missing_nic_rom(qemu)
    assert searched is not None and str(tmp_path / "share" / "qemu") in searched
    (tmp_path / "share" / "qemu").mkdir(parents=True)
    (tmp_path / "share" / "qemu" / NIC_ROM).write_bytes(b"rom")
    assert missing_nic_rom(qemu) is None
    assert missing_nic_rom(find_qemu(None, None)) is None  # the host's qemu has ipxe-qemu's
