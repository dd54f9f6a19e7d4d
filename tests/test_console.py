"""The console log: sanitizing what firmware and kernels write, rotation, reading the last boot."""

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podman_emu.conversion.artifacts import configured_console_log, rotated_path
from podman_emu.conversion.rewrite import console_arguments
from podman_emu.observe.boot_stage import EVENT_PATTERNS, KEYWORDS, STAGE_PATTERNS, STAGES, boot_progress, last_boot
from podman_emu.observe.console_log import log_files, read_tail_bytes, rotate_if_large
from podman_emu.observe.sanitize import Sanitizer, sanitize

# Bytes as AAVMF (Debian 12, edk2 2022.11) writes them on the PL011 UART, captured from a real boot
# of the test guest: CR LF line ends, screen clears and cursor homes between firmware messages.
AAVMF_START = (
    b"UEFI firmware (version  built at 13:10:49 on Nov  5 2024)\r\n"
    b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
    b'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    b'BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    b"EFI stub: Booting Linux Kernel...\r\n"
    b"EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path\r\n"
    b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r\n"
    b"[    0.000000] Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) #1 SMP Debian 6.1.192-3\r\n"
)
# What Fedora CoreOS's GRUB and systemd put on a serial console (menu drawn with cursor moves,
# coloured status words), then podman's ready unit.
FCOS_LATER = (
    b"\x1b[0m\x1b[30m\x1b[47m\x1b[2J\x1b[1;1HWelcome to GRUB!\r\n\r\n"
    b"\x1b[5;1H      GNU GRUB  version 2.06\x1b[6;1H\x1b[7;2H*Fedora CoreOS 38.20230609.3.0 (ostree:0)\x1b[m"
    b"\x1b[16;1H   The selected entry will be started automatically in 1s.\x1b[K"
    b"\x1b[2J\x1b[1;1H  Booting `Fedora CoreOS 38.20230609.3.0 (ostree:0)'\r\n"
    b"EFI stub: Booting Linux Kernel...\r\n"
    b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r\n"
    b"[    4.210000] Run /init as init process\r\n"
    b"[    5.300000] systemd[1]: Detected virtualization qemu.\r\n"
    b"\x1b]0;Fedora CoreOS\x07"
    b"Welcome to \x1b[0;38;5;75mFedora CoreOS 38.20230609.3.0\x1b[0m!\r\n"
    b"[\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39mready.service\x1b[0m.\r\n"
    b"\r\nFedora CoreOS 38.20230609.3.0\r\nKernel 6.3.7-200.fc38.aarch64 on an aarch64 (ttyAMA0)\r\n\r\n"
    b"localhost login: "
)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def test_firmware_output_becomes_plain_lines() -> None:
    text = sanitize(AAVMF_START)
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "UEFI firmware (version  built at 13:10:49 on Nov  5 2024)"
    assert lines[1] == 'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)'
    assert lines[3] == "EFI stub: Booting Linux Kernel..."
    assert "" not in lines  # screen clears at the start of a line add no blank lines


def test_cursor_moves_separate_text_drawn_in_different_places() -> None:
    text = sanitize(FCOS_LATER)
    assert "GNU GRUB  version 2.06" in text.splitlines()[2].strip() or "      GNU GRUB  version 2.06" in text
    # The menu entry and the countdown were drawn on different rows: they must not run together.
    assert not any("ostree:0)" in line and "started automatically" in line for line in text.splitlines())
    assert "Welcome to Fedora CoreOS 38.20230609.3.0!" in text
    assert "[  OK  ] Finished ready.service." in text
    assert "Fedora CoreOS\x07" not in text and "]0;" not in text  # the window title is gone
    assert text.endswith("localhost login: ")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"a\r\nb\r\n", "a\nb\n"),
        (b"a\r\r\nb", "a\nb"),
        (b"progress 10%\rprogress 20%\r\n", "progress 10%\nprogress 20%\n"),
        (b"bell\x07 back\x08space nul\x00", "bell backspace nul"),
        (b"\x1b[1;31mred\x1b[0m plain", "red plain"),
        (b"title\x1b]2;evil title\x1b\\ after", "title after"),
        (b"dcs\x1bP1$r0m\x1b\\ after", "dcs after"),
        (b"charset\x1b(0qqq\x1b(B done", "charsetqqq done"),
        (b"keypad\x1b= \x1b>x", "keypad x"),
        (b"tab\tkept", "tab\tkept"),
        (b"bad utf8 \xff\xfe end", "bad utf8 \ufffd\ufffd end"),
        ("c1 \u009b31m csi".encode(), "c1 31m csi"),
        # Longer than any real CSI: not a sequence, so the text comes back (without the ESC).
        (b"\x1b[" + b"9" * 80 + b"x text", "9" * 80 + "x text"),
        (b"no final \x1b[12\n", "no final 12\n"),
        ("ünïcödé ✓".encode(), "ünïcödé ✓"),
    ],
)
def test_sanitize(raw: bytes, expected: str) -> None:
    assert sanitize(raw) == expected


def test_a_sequence_split_across_reads_is_still_removed() -> None:
    data = AAVMF_START + FCOS_LATER
    whole = sanitize(data)
    sanitizer = Sanitizer()
    pieces = "".join(sanitizer.feed(data[i : i + 1]) for i in range(len(data))) + sanitizer.flush()
    assert pieces == whole


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_bytes_give_printable_text_however_they_are_split(data: bytes, cuts: list[int]) -> None:
    whole = sanitize(data)
    assert not CONTROLS.search(whole), repr(whole)
    sanitizer = Sanitizer()
    out = []
    previous = 0
    for cut in [*sorted({min(c, len(data)) for c in cuts}), len(data)]:
        out.append(sanitizer.feed(data[previous:cut]))
        previous = cut
    out.append(sanitizer.flush())
    assert "".join(out) == whole


def progress(data: bytes) -> object:
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


def test_rotation_moves_a_large_log_aside(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    assert rotate_if_large(log, limit=10) is False  # no log yet
    log.write_bytes(b"0123456789")
    assert rotate_if_large(log, limit=10) is False  # at the limit, not past it
    log.write_bytes(b"first boot, 24 bytes...\n")
    assert rotate_if_large(log, limit=10) is True
    assert not log.exists()
    assert rotated_path(log).read_bytes() == b"first boot, 24 bytes...\n"
    log.write_bytes(b"second boot, replaces .1\n")
    assert rotate_if_large(log, limit=10) is True
    assert rotated_path(log).read_bytes() == b"second boot, replaces .1\n"
    assert log_files(log) == [rotated_path(log)]


def test_a_writer_keeps_writing_into_the_rotated_file(tmp_path: Path) -> None:
    """qemu opens the log with O_APPEND and keeps the descriptor: after rotation its output goes
    to NAME.log.1 until the next start creates NAME.log, and readers see both in order."""
    log = tmp_path / "m.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, b"UEFI firmware (version x)\r\n" + b"x" * 100 + b"\r\n")
        assert rotate_if_large(log, limit=64)
        os.write(fd, b"EFI stub: Booting Linux Kernel...\r\n")
    finally:
        os.close(fd)
    assert not log.exists()
    assert last_boot(log).stage == "kernel"
    log.write_bytes(b"UEFI firmware (version x)\r\n")  # the next start
    assert log_files(log) == [rotated_path(log), log]
    result = last_boot(log)
    assert result.stage == "firmware" and result.boots == 2


def test_read_tail_spans_both_files(tmp_path: Path) -> None:
    old, new = tmp_path / "a.log.1", tmp_path / "a.log"
    old.write_bytes(b"0123456789")
    new.write_bytes(b"abcdef")
    assert read_tail_bytes([old, new], 8) == (b"89abcdef", False)
    assert read_tail_bytes([old, new], 100) == (b"0123456789abcdef", True)
    assert read_tail_bytes([new], 6) == (b"abcdef", True)


def test_configured_log_is_read_back_from_the_argv_plan_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "with,comma" / "m.log")
    argv = ["/usr/bin/qemu-system-aarch64", "-m", "2048", *console_arguments(path), "-display", "none"]
    assert configured_console_log(argv) == path
    assert configured_console_log(["/usr/bin/qemu-system-x86_64", "-serial", "stdio"]) is None


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
