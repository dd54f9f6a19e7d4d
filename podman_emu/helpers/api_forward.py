"""The API forward of an emulated machine, brought up when the guest is ready for it.

gvproxy's own forward gives up after ~60 ssh attempts from its launch; under TCG a first boot
(host-key generation, ignition) can take longer. This forwarder probes the guest's sshd through
gvproxy's ssh port for as long as that gvproxy lives, then holds `ssh -N -L SOCK:DEST` open,
re-making it if it drops, and removes the socket when gvproxy is gone. Its progress goes to a
small JSON state file that `podman-emu status` reads ("waiting for the guest's sshd",
"forwarding", "stopped").
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from podman_emu.conversion.helper_registry import ForwardState
from podman_emu.fsutil import atomic_write

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ForwardRequest:
    sock: str
    dest: str
    user: str
    identity: str
    ssh_port: int


def _save(path: Path, state: ForwardState, *, create: bool = False) -> None:
    """Only the first save creates the record. A revert (or cleanup) right after `machine stop`
    removes it while a probe may still be under way, and no later update may bring it back: an
    update rewrites the existing file through its own descriptor (opened without O_CREAT), so a
    removal at any moment wins — a temp-and-rename would recreate the name. Readers that catch
    the few bytes in between see an unparsable record, which they treat as none."""
    data = json.dumps(asdict(state)).encode()
    if create:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, data, mode=0o600)
        return
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return  # removed: the machine was reverted or cleaned up
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except OSError:
        pass  # a record is a courtesy to `status`; the forward itself goes on
    finally:
        os.close(fd)


def _start_ticks(pid: int) -> str | None:
    """The process's start time, to tell it from a later process given the same pid; None if it
    is gone or a zombie (podman 4.3 reaps gvproxy late, and a zombie answers kill(pid, 0))."""
    if not os.path.isdir("/proc/self"):  # macOS: no /proc; kill(pid, 0) is the best there is
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19] if len(fields) > 19 else None


def _ssh_base(request: ForwardRequest) -> list[str]:
    # Host keys are not checked, as gvproxy does not check them: the guest is reached through
    # gvproxy's port on the loopback, and its host key is new at every first boot.
    return [
        "ssh",
        "-i",
        request.identity,
        "-p",
        str(request.ssh_port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        f"{request.user}@127.0.0.1",
    ]


def _guest_accepts_key(request: ForwardRequest, still_wanted: Callable[[], bool]) -> str | None:
    """None when the guest's sshd accepted the key; else why not. Gives up at once when
    `still_wanted` turns false (gvproxy gone: podman stopped the machine)."""
    try:
        probe = subprocess.Popen(
            [*_ssh_base(request), "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    except OSError as error:
        return f"cannot run ssh: {error.strerror}"
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while probe.poll() is None:
        if not still_wanted() or time.monotonic() > deadline:
            probe.kill()
            probe.wait()
            return "gvproxy is gone" if not still_wanted() else "ssh did not answer within 20 s"
        time.sleep(0.2)
    assert probe.stderr is not None
    lines = probe.stderr.read().decode(errors="replace").strip().splitlines()
    probe.stderr.close()
    if probe.returncode == 0:
        return None
    return lines[-1] if lines else "refused"


def _tunnel(requests: Sequence[ForwardRequest]) -> subprocess.Popen[bytes]:
    first = requests[0]
    forwards: list[str] = []
    for request in requests:
        forwards += ["-L", f"{request.sock}:{request.dest}"]
    return subprocess.Popen(
        [
            *_ssh_base(first)[:-1],
            "-N",
            "-o",
            "StreamLocalBindUnlink=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
            *forwards,
            _ssh_base(first)[-1],
        ],
        stdin=subprocess.DEVNULL,
    )


def _sleep_while(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while condition() and time.monotonic() < deadline:
        time.sleep(0.2)


def run(requests: Sequence[ForwardRequest], gvproxy_pid: int, state_file: Path) -> int:
    ticks = _start_ticks(gvproxy_pid)

    def gvproxy_alive() -> bool:
        return ticks is not None and _start_ticks(gvproxy_pid) == ticks

    state = ForwardState("waiting-for-sshd", gvproxy_pid, [request.sock for request in requests])
    state.note("waiting for the guest's sshd to accept the machine's key")
    _save(state_file, state, create=True)
    tunnel: subprocess.Popen[bytes] | None = None
    try:
        while gvproxy_alive():
            if tunnel is None:
                refusal = _guest_accepts_key(requests[0], gvproxy_alive)
                if refusal is not None:
                    state.attempts += 1
                    state.last_error = refusal
                    _save(state_file, state)
                    _sleep_while(gvproxy_alive, PROBE_INTERVAL_S)
                    continue
                tunnel = _tunnel(requests)
                state.phase, state.forward_up_at = "forwarding", time.time()
                state.note(f"guest sshd ready after {state.attempts} attempts; API forward up")
                _save(state_file, state)
            elif tunnel.poll() is not None:
                state.phase = "waiting-for-sshd"
                state.note(f"API forward ended (ssh exit {tunnel.returncode}); making it again")
                _save(state_file, state)
                tunnel = None
            time.sleep(1.0)
        state.phase = "stopped"
        state.note("gvproxy exited; forward closed")
    finally:
        if tunnel is not None and tunnel.poll() is None:
            tunnel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                tunnel.wait(timeout=5)
            if tunnel.poll() is None:
                tunnel.kill()
        for request in requests:
            with contextlib.suppress(OSError):
                os.unlink(request.sock)
        if state.phase != "stopped":
            state.phase = "failed"
        _save(state_file, state)
    return 0


def spawn_detached(requests: Sequence[ForwardRequest], *, gvproxy_pid: int, state_file: Path) -> None:
    """Start the forwarder in its own session, detached from podman (which waits for gvproxy,
    not for it), and return once it runs; the caller then becomes gvproxy."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        log = state_file.with_suffix(".log")
        log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.closerange(3, 1024)
        # gvproxy's pid is ours until the parent execs: wait until it has (its start time is the
        # same either way; /proc/PID/exe changing tells).
        deadline = time.monotonic() + 10
        own_exe = os.readlink(f"/proc/{gvproxy_pid}/exe") if os.path.exists(f"/proc/{gvproxy_pid}/exe") else ""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{gvproxy_pid}/exe") != own_exe:
                    break
            time.sleep(0.05)
        os._exit(run(requests, gvproxy_pid, state_file))
    except BaseException:
        os._exit(1)
