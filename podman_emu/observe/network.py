"""The network side of an emulated machine's start, as `status` and `doctor` show it: is gvproxy
alive, is podman-emu's launcher in charge of it, and where the API forward is ("waiting for the
guest's sshd", "forwarding"). A start that went wrong gets what happened and the command that
recovers, because podman 4.3 itself says nothing and waits forever.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podman_emu.conversion.helper_registry import (
    ForwardState,
    forward_state_path,
    gvproxy_log_path,
    read_forward_state,
)
from podman_emu.conversion.start_helpers import registered
from podman_emu.podman.machines import LoadedMachine
from podman_emu.podman.running import RunCheck, live_pid

PHASE_TEXT = {
    "waiting-for-sshd": "waiting for the guest's sshd to accept the machine's key",
    "forwarding": "API forward up",
    "stopped": "stopped with gvproxy",
    "failed": "forwarder ended unexpectedly",
}


@dataclass(frozen=True)
class NetworkReport:
    launcher_registered: bool
    gvproxy_pid: int | None
    forward: ForwardState | None
    gvproxy_log: str
    problem: str | None = None
    recovery: str | None = None

    @property
    def forward_text(self) -> str:
        state = self.forward
        if state is None:
            return "no forward record (not started through podman-emu's launcher yet)"
        text = PHASE_TEXT.get(state.phase, state.phase)
        if state.phase == "waiting-for-sshd":
            waited = int(time.time() - state.started_at)
            text += f" ({state.attempts} attempts, {waited}s since gvproxy started"
            text += f"; last: {state.last_error})" if state.last_error else ")"
        elif state.phase == "forwarding" and state.forward_up_at:
            after = int(state.forward_up_at - state.started_at)
            text += f" {after}s after gvproxy started, on {', '.join(state.socks)}"
        return text

    def to_json(self) -> dict[str, Any]:
        forward = self.forward
        return {
            "launcher_registered": self.launcher_registered,
            "gvproxy_pid": self.gvproxy_pid,
            "forward_phase": forward.phase if forward else None,
            "forward_attempts": forward.attempts if forward else None,
            "forward_last_error": forward.last_error if forward else None,
            "gvproxy_log": self.gvproxy_log,
            "problem": self.problem,
            "recovery": self.recovery,
        }


def _diagnose(
    name: str, run: RunCheck, gvproxy_pid: int | None, registered_now: bool, starting: bool
) -> tuple[str | None, str | None]:
    recover = f"podman machine stop {name} && podman machine start {name}"
    if run.busy and gvproxy_pid is None:
        return (
            "qemu runs but gvproxy is gone: the guest has no network and podman's API forward is down "
            "(podman 4.3 then waits with no message)",
            recover,
        )
    if starting and not run.busy:
        return (
            "podman's config says Starting, but no qemu runs: a start was interrupted",
            f"podman machine stop {name}  (then start it again)",
        )
    if not registered_now:
        return (
            "podman-emu's gvproxy launcher does not know this machine: a slow emulated first boot can outlast "
            "gvproxy's API forward and hang `podman machine start`",
            f"podman-emu revert {name} && podman-emu convert {name} --image …  (registers it)",
        )
    return None, None


def network_report(machine: LoadedMachine, run: RunCheck) -> NetworkReport:
    config_path = Path(machine.config_path)
    pid_file = getattr(machine.config, "PidFilePath", None)  # podman 3.4/4.0 files have none
    gvproxy_pid = live_pid(pid_file.Path) if pid_file is not None else None
    is_registered = registered(config_path)
    problem, recovery = _diagnose(machine.name, run, gvproxy_pid, is_registered, machine.config.starting)
    return NetworkReport(
        launcher_registered=is_registered,
        gvproxy_pid=gvproxy_pid,
        forward=read_forward_state(forward_state_path(config_path)),
        gvproxy_log=str(gvproxy_log_path(config_path)),
        problem=problem,
        recovery=recovery,
    )
