"""Is the machine running? The QMP socket, the pid files and podman's Starting flag."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from podman_emu.errors import MachineBusy
from podman_emu.podman.running import RunState, live_pid, qmp_accepts, refuse_if_busy, run_state


@dataclass
class Files:
    """What the running check reads (HasRunFiles), pointing at files this test makes."""

    qmp_socket: str
    pid_files: list[str] = field(default_factory=list)
    starting: bool = False


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket path must stay under 108 bytes; pytest's tmp paths may not.
    directory = Path(tempfile.mkdtemp(prefix="pemu-run-"))
    yield directory
    for entry in directory.iterdir():
        entry.unlink()
    directory.rmdir()


def test_no_socket_and_no_pid_files_is_stopped(short_dir: Path) -> None:
    check = run_state(Files(str(short_dir / "qmp.sock")))
    assert check.state is RunState.STOPPED and not check.busy and check.evidence == ()


def test_a_stale_socket_file_is_not_a_running_machine(short_dir: Path) -> None:
    path = short_dir / "qmp.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))  # closed without listening: connections are refused, as podman sees it
    assert path.exists() and not qmp_accepts(str(path))
    assert run_state(Files(str(path))).state is RunState.STOPPED


def test_a_socket_that_accepts_is_a_running_machine(short_dir: Path) -> None:
    path = short_dir / "qmp.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(4)
        check = run_state(Files(str(path)))
        with pytest.raises(MachineBusy, match="is running") as raised:
            refuse_if_busy("m", Files(str(path)), "convert")
    assert check.state is RunState.RUNNING and check.evidence == (f"QMP socket {path} accepts connections",)
    assert raised.value.hint is not None and "podman machine stop m" in raised.value.hint


def test_a_live_pid_in_a_pid_file_is_a_running_machine(short_dir: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = short_dir / "vm.pid"
        pid_file.write_text(f"{sleeper.pid}\n")
        assert live_pid(str(pid_file)) == sleeper.pid
        check = run_state(Files(str(short_dir / "qmp.sock"), [str(pid_file)]))
        assert check.state is RunState.RUNNING and f"process {sleeper.pid}" in check.evidence[0]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert live_pid(str(pid_file)) is None  # the same pid file once the process is gone


@pytest.mark.parametrize("content", ["", "garbage", "-1", "0", "99999999999"])
def test_a_pid_file_without_a_live_pid_says_nothing(short_dir: Path, content: str) -> None:
    pid_file = short_dir / "vm.pid"
    pid_file.write_text(content)
    assert live_pid(str(pid_file)) is None
    assert live_pid(str(short_dir / "absent.pid")) is None


def test_a_starting_flag_alone_is_starting_with_a_hint_for_a_stale_flag(short_dir: Path) -> None:
    files = Files(str(short_dir / "qmp.sock"), starting=True)
    check = run_state(files)
    assert check.state is RunState.STARTING and check.busy
    with pytest.raises(MachineBusy, match="is starting") as raised:
        refuse_if_busy("m", files, "revert")
    assert raised.value.hint is not None and "the flag is stale" in raised.value.hint


def test_a_pid_owned_by_another_user_counts_as_alive(short_dir: Path) -> None:
    pid_file = short_dir / "vm.pid"
    pid_file.write_text("1")  # init: alive, and not ours unless the test runs as root
    assert live_pid(str(pid_file)) == 1


def test_a_killed_but_unreaped_process_is_not_alive(short_dir: Path) -> None:
    # A qemu that was just killed stays a zombie (state Z) until its parent reaps it; it is gone.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        child.kill()
        stat = Path(f"/proc/{child.pid}/stat")
        for _ in range(500):
            if stat.read_text().rpartition(")")[2].split()[0] == "Z":
                break
            time.sleep(0.01)
        assert stat.read_text().rpartition(")")[2].split()[0] == "Z"  # killed, not reaped yet
        pid_file = short_dir / "vm.pid"
        pid_file.write_text(f"{child.pid}\n")
        assert live_pid(str(pid_file)) is None
        assert run_state(Files(str(short_dir / "qmp.sock"), [str(pid_file)])).state is RunState.STOPPED
    finally:
        child.wait()
