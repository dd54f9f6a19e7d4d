"""Sanitizing what firmware, boot loaders and kernels write to the serial console."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podman_emu.observe.sanitize import Sanitizer, sanitize

from .console_samples import AAVMF_START, FCOS_LATER

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
