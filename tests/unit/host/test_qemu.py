"""Finding and probing the real qemu-system-aarch64 on this host."""

import shutil
from pathlib import Path

import pytest

from podman_emu.errors import HostNotReady, UsageError
from podman_emu.host.qemu import find_qemu, probe_qemu
from testing.podman_home import Sandbox

needs_qemu = pytest.mark.usefixtures("qemu_aarch64")


@needs_qemu
def test_probe_reads_version_cpus_and_pauth_impdef(podman_home: Sandbox) -> None:
    qemu = find_qemu(None, None)
    probed = probe_qemu(qemu)
    assert probed.version >= (6, 0, 0)
    assert {"max", "cortex-a57", "neoverse-n1"} <= set(probed.cpu_models)
    assert "tcg" in probed.accelerators
    assert probed.has_pauth_impdef
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
