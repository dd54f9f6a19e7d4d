"""Reading how far the last boot got from a console log."""

import re

import pytest

from podman_emu.observe.boot_stage import EVENT_PATTERNS, KEYWORDS, STAGE_PATTERNS, STAGES, BootProgress, boot_progress
from podman_emu.observe.sanitize import sanitize

from .console_samples import AAVMF_START, FCOS_LATER


def progress(data: bytes) -> BootProgress:
    return boot_progress(sanitize(data).splitlines())


def test_stages_of_a_firmware_boot() -> None:
    result = progress(AAVMF_START)
    assert [hit.stage for hit in result.reached] == ["firmware", "bootloader", "kernel"]
    assert result.stage == "kernel"
    assert result.line == "EFI stub: Booting Linux Kernel..."
    assert result.reached[0].line.startswith("UEFI firmware (version")
    assert result.start_seen and result.boots == 1


def test_stages_of_a_full_fedora_coreos_boot_and_its_end() -> None:
    result = progress(AAVMF_START[:200] + FCOS_LATER + b"\r\n[  120.1] reboot: Power down\r\n")
    assert [hit.stage for hit in result.reached] == list(STAGES)
    assert result.stage == "ready"
    assert result.line == "[  OK  ] Finished ready.service."
    assert [event.stage for event in result.events] == ["powered off"]
    # "Welcome to GRUB!" is the boot loader, not systemd's "Welcome to …!".
    assert next(hit for hit in result.reached if hit.stage == "init").line.endswith("Run /init as init process")


def test_only_the_last_boot_counts() -> None:
    first = AAVMF_START[:200] + FCOS_LATER + b"\r\n[  99.0] Kernel panic - not syncing: VFS\r\n"
    second = AAVMF_START[:60]
    result = progress(first + second)
    assert result.boots == 2
    assert result.stage == "firmware"
    assert result.events == []  # the panic belonged to the previous boot


def test_a_boot_without_firmware_starts_at_the_kernel_banner() -> None:
    direct = b"[    0.000000] Booting Linux on physical CPU 0x0\r\n[    2.0] Run /init as init process\r\n"
    result = progress(direct + direct[:45])
    assert result.boots == 2
    assert result.stage == "kernel"


def test_a_log_that_starts_mid_boot_still_tells_the_stage() -> None:
    result = progress(b"[    5.300000] systemd[1]: Detected virtualization qemu.\r\n[  6.0] random line\r\n")
    assert result.stage == "init"
    assert not result.start_seen
    assert result.last_line == "[  6.0] random line"


def test_emergency_and_firmware_crash_events() -> None:
    result = progress(
        AAVMF_START[:60] + b"\r\nSynchronous Exception at 0x000000007F1B2C3C\r\n"
        b"[  30.0] Entering emergency mode. Exit the shell to continue.\r\n"
    )
    assert [event.stage for event in result.events] == ["firmware exception", "emergency mode"]


@pytest.mark.parametrize("pattern", [p for _, p in (*STAGE_PATTERNS, *EVENT_PATTERNS)])
def test_every_pattern_passes_the_keyword_prefilter(pattern: str) -> None:
    alternatives, depth, current = [], 0, ""
    for char in pattern:  # split at the top-level "|" only
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and depth == 0:
            alternatives.append(current)
            current = ""
        else:
            current += char
    for alternative in [*alternatives, current]:
        assert re.search(KEYWORDS, alternative.replace("\\", "")), alternative
