"""The test guest on its own, without podman: AAVMF boots the disk, the guest answers the ready
protocol and powers off on the ACPI power button. If this fails, the podman scenario cannot
pass, and the failure says whether the guest or podman-emu is at fault."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from testing.guest import boot_disk

from .support import record_phase

pytestmark = pytest.mark.e2e

ORDER = ["firmware", "bds-boot", "kernel", "init", "ignition", "ready-sent", "guest-up", "power-button"]


def test_guest_disk_boots_through_firmware_and_powers_off(guest_image: Any, tmp_path: Path) -> None:
    ignition = tmp_path / "config.ign"
    ignition.write_text('{"ignition": {"version": "3.2.0"}, "passwd": {}}')
    result = boot_disk(guest_image.disk, tmp_path / "boot", ignition=ignition, smp=2, timeout=180)
    serial = result.serial
    for name, seconds in sorted(result.events.items(), key=lambda item: item[1]):
        record_phase(f"  direct boot: {name}", seconds)
    if "ready" in result.events:
        record_phase("direct boot (no podman): launch -> ready", result.events["ready"])

    missing = [name for name in ORDER if name not in result.events]
    assert not missing, f"never reached {missing}; qemu stderr: {result.stderr}\n{serial[-4000:]}"
    times = [result.events[name] for name in ORDER]
    assert times == sorted(times), f"milestones out of order: {result.events}"
    assert result.ready_line == "Ready\n"
    assert result.marker("UNAME-M") == "aarch64"
    assert result.marker("LOADER-PARTUUID") == guest_image.esp_partuuid
    assert result.marker("IGNITION-SHA256") == hashlib.sha256(ignition.read_bytes()).hexdigest()
    assert result.marker("READY-PORT") == "/dev/vport1p1"
    assert result.returncode == 0, f"qemu did not exit cleanly after the power button: {result.stderr}"
