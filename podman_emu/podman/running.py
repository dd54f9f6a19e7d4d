"""Is the machine running? Decided the way podman decides it, plus the pid files podman 4.7+ checks.

Podman 4.x: the QMP socket exists and accepts a connection (and `query-status` says running);
`Starting: true` means starting. The vm and proxy pid files catch a qemu whose QMP socket podman
already deleted (`podman machine stop` removes it before the guest has powered off).
"""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass
from typing import Protocol

from podman_emu.errors import MachineBusy
from podman_emu.fsutil import read_regular


class HasRunFiles(Protocol):
    """What the running check reads: the pydantic models and the list's ConfigSummary have it."""

    @property
    def qmp_socket(self) -> str: ...

    @property
    def pid_files(self) -> list[str]: ...

    @property
    def starting(self) -> bool: ...


CONNECT_TIMEOUT_S = 1.0


class RunState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"


@dataclass(frozen=True)
class RunCheck:
    """Whether a machine runs, and what showed it."""

    state: RunState
    evidence: tuple[str, ...]

    @property
    def busy(self) -> bool:
        return self.state is not RunState.STOPPED


def qmp_accepts(path: str) -> bool:
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(CONNECT_TIMEOUT_S)
        try:
            probe.connect(path)
        except OSError:
            # ECONNREFUSED: a stale socket file left by a qemu that is gone (podman agrees).
            return False
    return True


def live_pid(path: str) -> int | None:
    try:
        # A FIFO planted at a pid file path must not hang every command that asks.
        pid = int(read_regular(path, limit=32).decode("ascii", errors="replace").strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; or a number no pid can be
        return None
    except PermissionError:
        pass  # alive or a zombie, owned by someone else
    return None if _is_zombie(pid) else pid


def _is_zombie(pid: int) -> bool:
    """A killed qemu whose parent has not reaped it yet still answers kill(pid, 0), but it holds
    no files and will never run again, so it is not a running machine."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read(4096)
    except OSError:
        return False  # no procfs (macOS), or gone since: kill(pid, 0) already decided
    # The command name in parentheses may hold spaces and ')'; the state follows the last ')'.
    fields = stat.rpartition(b")")[2].split()
    return bool(fields) and fields[0] == b"Z"


def run_state(machine: HasRunFiles) -> RunCheck:
    evidence = []
    running = False
    if qmp_accepts(machine.qmp_socket):
        running = True
        evidence.append(f"QMP socket {machine.qmp_socket} accepts connections")
    for pid_file in machine.pid_files:
        pid = live_pid(pid_file)
        if pid is not None:
            running = True
            evidence.append(f"process {pid} from {pid_file} is alive")
    if machine.starting:
        evidence.append('the config says "Starting": true')
        return RunCheck(RunState.STARTING, tuple(evidence))
    return RunCheck(RunState.RUNNING if running else RunState.STOPPED, tuple(evidence))


def refuse_if_busy(name: str, machine: HasRunFiles, action: str) -> None:
    current = run_state(machine)
    if not current.busy:
        return
    reasons = "; ".join(current.evidence)
    if current.state is RunState.STARTING and len(current.evidence) == 1:
        hint = (
            f"If no `podman machine start {name}` is in progress, the flag is stale: "
            f"`podman machine stop {name}` clears it (podman 4.6+); then run this again."
        )
    else:
        hint = (
            f"Stop it first: `podman machine stop {name}` (an emulated guest that ignores the power "
            "button needs its qemu process ended by pid), then run this again."
        )
    raise MachineBusy(f"machine {name!r} is {current.state.value} ({reasons}); cannot {action} it now", hint=hint)
