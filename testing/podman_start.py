"""`python -m testing.podman_start start|stop CONFIG`: run a machine's stored qemu command the way
podman 4.x's `machine start` / `machine stop` do, for hosts without podman (the demo).

start: qemu from `CmdLine` with fd 3 as the network socket and `-display none` appended, then dial
the `ReadySocket` and block until the guest's first line ("Ready"), as podman does, but with a
deadline. stop: QMP `system_powerdown`, then wait for the pid in `VMPidFilePath` to end; past the
deadline the pid is killed. Every wait is bounded; a failed start kills the qemu it started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from testing.guest.boot import qmp_execute
from testing.qemu import launch_like_podman


def _load(config: Path) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(config.read_bytes())
    return content


def _qemu_pid(pid_file: str) -> int | None:
    """The pid qemu wrote with -pidfile while it still runs. Its parent, `start`, has exited by
    then, so init reaps it at once and a zombie never lingers here."""
    try:
        pid = int(Path(pid_file).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _read_ready(path: str, deadline: float, qemu: subprocess.Popen[bytes]) -> str:
    """podman's wait: dial until the chardev socket accepts, then read one line."""
    while True:
        remaining = deadline - time.monotonic()
        if qemu.poll() is not None:
            raise ChildProcessError(f"qemu exited with status {qemu.returncode} before the guest said anything")
        if remaining <= 0:
            raise TimeoutError("the guest sent nothing on the ready socket before the deadline (--timeout)")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(remaining)
                sock.connect(path)
                return sock.makefile("rb").readline().decode(errors="replace").strip()
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.05)


def start(config: Path, timeout: float, log: Path) -> int:
    content = _load(config)
    command = [*content["CmdLine"], "-display", "none"]
    started = time.monotonic()
    with log.open("wb") as qemu_log:
        process, host_end, guest_end = launch_like_podman(command, qemu_log)
    guest_end.close()
    print(f"started {command[0]} (pid {process.pid}), fd 3 = the network socket", flush=True)
    print("Waiting for VM ...", flush=True)
    try:
        line = _read_ready(content["ReadySocket"]["Path"], started + timeout, process)
    except OSError as error:  # TimeoutError and ChildProcessError are OSErrors too
        process.kill()
        process.wait(timeout=30)
        detail = log.read_text(errors="replace").strip()
        print(f"podman would still be waiting: {error}. qemu said: {detail or 'nothing'}", file=sys.stderr)
        return 1
    finally:
        host_end.close()
    print(f"guest said {line!r} after {time.monotonic() - started:.1f} s: podman would report the machine started")
    return 0


def stop(config: Path, timeout: float) -> int:
    content = _load(config)
    pid_file = content["VMPidFilePath"]["Path"]
    pid = _qemu_pid(pid_file)
    if pid is None:
        print("qemu is not running")
        return 0
    started = time.monotonic()
    qmp_socket = content["QMPMonitor"]["Address"]["Path"]
    with contextlib.suppress(OSError):
        qmp_execute(Path(qmp_socket), "system_powerdown", timeout=min(10.0, timeout))
        print("sent system_powerdown over QMP, as `podman machine stop` does", flush=True)
    while _qemu_pid(pid_file) == pid and time.monotonic() - started < timeout:
        time.sleep(0.1)
    if _qemu_pid(pid_file) == pid:
        os.kill(pid, signal.SIGKILL)
        print(f"qemu (pid {pid}) ignored the power button for {timeout:.0f} s: killed")
        return 1
    print(f"qemu (pid {pid}) powered off after {time.monotonic() - started:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.podman_start")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("config", type=Path, help="the machine's JSON config")
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--qemu-log", type=Path, default=Path(os.devnull), help="qemu's stdout and stderr")
    args = parser.parse_args(argv)
    if args.action == "start":
        return start(args.config, args.timeout, args.qemu_log)
    return stop(args.config, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
