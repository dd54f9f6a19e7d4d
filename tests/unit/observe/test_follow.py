"""`podman-emu logs`: which log, tail -n, and following across rotation, truncation and restarts.

The writer in the follow tests does what qemu does with `-chardev file,append=on`: it opens the
log once with O_APPEND and keeps writing to that descriptor, whatever happens to the name.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.conversion.artifacts import rotated_path
from podman_emu.errors import NoConsoleLog
from podman_emu.observe.console_log import rotate_if_large
from podman_emu.observe.follow import machine_console, show_console
from testing.cli import run_module
from testing.fixtures import REPO
from testing.podman_home import Sandbox

needs_qemu = pytest.mark.usefixtures("qemu_aarch64")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


class Qemu:
    """Writes like qemu's file chardev: one O_APPEND descriptor for the whole run."""

    def __init__(self, log: Path) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def stop(self) -> None:
        os.close(self.fd)


class Following:
    def __init__(self, log: Path, lines: int | None) -> None:
        self.chunks: list[str] = []
        self.notices: list[str] = []
        self.done = threading.Event()
        self.thread = threading.Thread(
            target=show_console,
            args=(log, self.chunks.append),
            kwargs={
                "lines": lines,
                "follow": True,
                "notice": self.notices.append,
                "stop": self.done.is_set,
                "interval": 0.01,
            },
            daemon=True,
        )
        self.thread.start()

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def sees(self, fragment: str) -> None:
        wait_for(lambda: fragment in self.text)

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def following(tmp_path: Path) -> Iterator[Callable[..., Following]]:
    started: list[Following] = []

    def start(log: Path, lines: int | None = 0) -> Following:
        follower = Following(log, lines)
        started.append(follower)
        return follower

    yield start
    for follower in started:
        follower.close()


def shown(log: Path, lines: int | None, own_log: Path | None = None) -> str:
    out: list[str] = []
    show_console(log, out.append, lines=lines, follow=False, own_log=own_log)
    return "".join(out)


def test_tail_reads_the_rotated_file_then_the_current_one(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    rotated_path(log).write_bytes(b"boot 1 line 1\r\nboot 1 line 2\r\n")
    log.write_bytes(b"\x1b[2J\x1b[01;01Hboot 2 line 1\r\nboot 2 line 2\r\nboot 2 partial")
    assert shown(log, None) == "boot 1 line 1\nboot 1 line 2\nboot 2 line 1\nboot 2 line 2\nboot 2 partial"
    assert shown(log, 2) == "boot 2 line 2\nboot 2 partial"
    assert shown(log, 4) == "boot 1 line 2\nboot 2 line 1\nboot 2 line 2\nboot 2 partial"
    assert shown(log, 0) == ""
    assert shown(log, 100).startswith("boot 1 line 1\n")


def test_tail_of_a_large_log_reads_only_its_end(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_bytes(b"".join(b"line %06d\r\n" % i for i in range(200_000)))  # 2.4 MB
    started = time.perf_counter()
    assert shown(log, 3) == "line 199997\nline 199998\nline 199999\n"
    assert time.perf_counter() - started < 0.5


def test_showing_a_log_rotates_it_when_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("podman_emu.observe.console_log.CONSOLE_LIMIT_BYTES", 100)
    log = tmp_path / "m.log"
    log.write_bytes(b"x" * 99 + b"\n" + b"more\n")
    assert shown(log, 1, own_log=log) == "more\n"
    assert not log.exists() and rotated_path(log).exists()


def test_showing_a_log_podman_emu_did_not_create_leaves_it_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config can name any file as its console log; only the own log is ever rotated."""
    monkeypatch.setattr("podman_emu.observe.console_log.CONSOLE_LIMIT_BYTES", 100)
    log = tmp_path / "theirs.log"
    log.write_bytes(b"x" * 99 + b"\n" + b"more\n")
    assert shown(log, 1, own_log=tmp_path / "mine.log") == "more\n"
    assert log.stat().st_size == 105 and not rotated_path(log).exists()


def test_a_log_that_does_not_exist_yet_prints_nothing(tmp_path: Path) -> None:
    notices: list[str] = []
    out: list[str] = []
    show_console(tmp_path / "never.log", out.append, lines=None, follow=False, notice=notices.append)
    assert out == []
    assert "has not started since it was converted" in notices[0]


def test_follow_prints_new_output_as_it_arrives(tmp_path: Path, following: Callable[..., Following]) -> None:
    log = tmp_path / "m.log"
    qemu = Qemu(log)
    qemu.write(b"old line\r\n")
    follower = following(log, lines=1)
    follower.sees("old line\n")
    qemu.write(b"EFI stub: Booting Linux Kernel...\r\n")
    follower.sees("EFI stub: Booting Linux Kernel...\n")
    qemu.write(b"\x1b[0;32m  OK  \x1b")  # a sequence split across two writes
    time.sleep(0.05)
    qemu.write(b"[0m] done\r\n")
    follower.sees("  OK  ] done\n")
    qemu.stop()
    assert "\x1b" not in follower.text and "[0m" not in follower.text
    assert follower.text.count("old line") == 1


def test_follow_keeps_reading_a_log_rotated_under_a_running_qemu(
    tmp_path: Path, following: Callable[..., Following]
) -> None:
    log = tmp_path / "m.log"
    qemu = Qemu(log)
    qemu.write(b"a" * 200 + b"\r\n")
    follower = following(log, lines=1)
    follower.sees("a" * 200)  # the follower has the file open
    assert rotate_if_large(log, limit=100)  # another podman-emu command rotates it
    qemu.write(b"after rotation\r\n")  # qemu still writes to the moved file
    follower.sees("after rotation\n")
    qemu.stop()
    restarted = Qemu(log)  # the next start creates a fresh NAME.log
    restarted.write(b"UEFI firmware (version x)\r\n")
    follower.sees("UEFI firmware (version x)\n")
    restarted.stop()
    assert follower.text.count("after rotation") == 1
    assert any("started anew" in notice for notice in follower.notices)


def test_follow_reads_a_truncated_log_from_its_start(tmp_path: Path, following: Callable[..., Following]) -> None:
    log = tmp_path / "m.log"
    qemu = Qemu(log)
    qemu.write(b"long first content\r\n" * 5)
    follower = following(log, lines=1)
    follower.sees("long first content\n")  # the follower has the file open
    os.truncate(log, 0)
    qemu.write(b"new\r\n")
    follower.sees("new\n")
    qemu.stop()
    assert any("truncated" in notice for notice in follower.notices)


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path, following: Callable[..., Following]) -> None:
    log = tmp_path / "consoles" / "m.log"
    follower = following(log, lines=None)
    wait_for(lambda: any("waiting for" in notice for notice in follower.notices))
    qemu = Qemu(log)
    qemu.write(b"first words\r\n")
    follower.sees("first words\n")
    qemu.stop()


def test_follow_picks_up_after_the_rotated_file_when_no_current_log_exists(
    tmp_path: Path, following: Callable[..., Following]
) -> None:
    log = tmp_path / "m.log"
    qemu = Qemu(log)
    qemu.write(b"x" * 200 + b"\r\nlast old line\r\n")
    assert rotate_if_large(log, limit=100)
    follower = following(log, lines=1)  # only NAME.log.1 exists: qemu writes there now
    follower.sees("last old line\n")
    qemu.write(b"still running\r\n")
    follower.sees("still running\n")
    qemu.stop()


def test_native_and_unknown_machines_have_no_console(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "native")
    with pytest.raises(NoConsoleLog) as raised:
        machine_console("native")
    assert "is native" in raised.value.message and "podman-emu convert native" in (raised.value.hint or "")
    result = run_module("logs", "native")
    assert result.returncode == 1
    assert "Error: machine 'native' is native" in result.stderr and "Hint:" in result.stderr
    assert "Traceback" not in result.stderr
    missing = run_module("logs", "nosuch")
    assert missing.returncode == 1 and "no machine config" in missing.stderr


@needs_qemu
def test_a_converted_machine_logs_where_its_command_line_says(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "emu")
    result = CliRunner().invoke(app, ["convert", "emu", "--image", str(blank_aarch64_disk)])
    assert result.exit_code == 0, result.stderr
    console = machine_console("emu")
    assert console.emulated
    assert console.log.parent == podman_home.state_dir / "consoles"
    assert console.log.parent.is_dir()  # qemu cannot create the directory; convert does
    console.log.write_bytes(b"\x1b]0;title\x07UEFI firmware (version x)\r\n\x1b[2Jkernel\r\n")
    out = run_module("logs", "emu", "-n", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "kernel\n"
    assert run_module("logs", "emu").stdout == "UEFI firmware (version x)\nkernel\n"
    # A terminal that cannot show the text gets replacement characters, not a crash.
    console.log.write_bytes("Ünïcode ✓ line\r\n".encode())
    ascii_only = run_module("logs", "emu", env={"PYTHONIOENCODING": "ascii"})
    assert ascii_only.returncode == 0, ascii_only.stderr
    assert ascii_only.stdout == "?n?code ? line\n"


@needs_qemu
def test_logs_follow_ends_cleanly_on_ctrl_c_and_on_a_closed_pipe(
    podman_home: Sandbox, blank_aarch64_disk: Path
) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "emu")
    assert CliRunner().invoke(app, ["convert", "emu", "--image", str(blank_aarch64_disk)]).exit_code == 0
    log = machine_console("emu").log
    qemu = Qemu(log)
    qemu.write(b"".join(b"line %d\r\n" % i for i in range(20_000)))
    env = {**os.environ, **podman_home.env()}
    process = subprocess.Popen(
        [sys.executable, "-m", "podman_emu", "logs", "-f", "-n", "2", "emu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=REPO,
        # As a terminal's Ctrl-C finds it: a suite started in the background by a shell without job
        # control inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"line 19998\n"
        assert process.stdout.readline() == b"line 19999\n"
        qemu.write(b"kernel: fresh output\r\n")
        assert process.stdout.readline() == b"kernel: fresh output\n"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        qemu.stop()
    assert process.returncode == 0, stderr
    assert b"Traceback" not in stderr and b"Error" not in stderr
    # `logs emu | head -1`: the reader goes away after one line.
    piped = subprocess.run(
        f"{sys.executable} -m podman_emu logs emu | head -1",
        shell=True,
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert piped.stdout == b"line 0\n"
    assert b"Traceback" not in piped.stderr and b"BrokenPipe" not in piped.stderr, piped.stderr


def test_a_native_arm64_machine_is_not_told_to_convert_for_a_console(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.9-darwin-arm64.json", "m1")
    with pytest.raises(NoConsoleLog) as raised:
        machine_console("m1")
    assert "native arm64 machine" in raised.value.message
    assert "convert" not in (raised.value.hint or "")
