"""The console log's two files: rotation, and reading the end of both."""

import os
from pathlib import Path

from podman_emu.conversion.artifacts import rotated_path
from podman_emu.observe.boot_stage import last_boot
from podman_emu.observe.console_log import log_files, read_tail_bytes, rotate_if_large


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


def test_rotation_never_moves_a_symlink_or_what_it_points_at(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"x" * 100)
    log = tmp_path / "m.log"
    log.symlink_to(target)
    assert rotate_if_large(log, limit=10) is False
    assert log.is_symlink() and target.stat().st_size == 100 and not rotated_path(log).exists()
