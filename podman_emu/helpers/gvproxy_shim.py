"""What runs when podman starts `gvproxy` with podman-emu's launcher first in its helper dirs.

For a machine podman-emu converted, gvproxy's own API forward (`-forward-sock/-dest/-user/
-identity`) would start at launch with a fixed retry budget and take the whole gvproxy down when
an emulated first boot outlasts it. So the forward groups are taken out of gvproxy's arguments and
handed to a detached forwarder (api_forward) that waits for the guest's sshd as long as gvproxy
lives; then this process becomes the real gvproxy with `execv`, keeping its pid, which podman
reads from the pid file and signals at `machine stop`.

Every other machine — native ones, or any call this module does not understand — gets the real
gvproxy with its arguments untouched. This runs at every `podman machine start`, so it imports
little: the stdlib-only registry and the helper lookup (tomlkit, ~10 ms, to read the
containers.conf chain again when the registry is damaged).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podman_emu.conversion.helper_registry import (
    RegisteredMachine,
    Registry,
    forward_state_path,
    gvproxy_log_path,
)
from podman_emu.helpers import api_forward
from podman_emu.helpers.lookup import helper_context, next_helper

FORWARD_FLAGS = ("-forward-sock", "-forward-dest", "-forward-user", "-forward-identity")
LOG_LIMIT_BYTES = 4 * 1024 * 1024


@dataclass
class GvproxyCall:
    """gvproxy's arguments as podman passes them (Go's flag package: `-name value` or
    `-name=value`, one or two dashes; the forward flags may repeat)."""

    kept: list[str] = field(default_factory=list)
    forwards: dict[str, list[str]] = field(default_factory=dict)
    pid_file: str | None = None
    ssh_port: str | None = None
    listen_qemu: str | None = None


def _split_flag(argument: str) -> tuple[str, str | None]:
    name = "-" + argument.lstrip("-")
    if "=" in name:
        flag, value = name.split("=", 1)
        return flag, value
    return name, None


def parse_call(args: Sequence[str]) -> GvproxyCall:
    call = GvproxyCall()
    index = 0
    while index < len(args):
        argument = args[index]
        flag, inline = _split_flag(argument) if argument.startswith("-") else (argument, None)
        takes_value = flag in (*FORWARD_FLAGS, "-pid-file", "-ssh-port", "-listen-qemu")
        if takes_value and inline is None and index + 1 < len(args):
            value: str | None = args[index + 1]
            consumed = 2
        else:
            value, consumed = inline, 1
        if flag in FORWARD_FLAGS and value is not None:
            call.forwards.setdefault(flag, []).append(value)
        else:
            call.kept.extend(args[index : index + consumed])
            if flag == "-pid-file":
                call.pid_file = value
            elif flag == "-ssh-port":
                call.ssh_port = value
            elif flag == "-listen-qemu":
                call.listen_qemu = value
        index += consumed
    return call


def forward_requests(call: GvproxyCall) -> list[api_forward.ForwardRequest]:
    """The forward groups, if they are complete; otherwise [] and gvproxy keeps them itself."""
    groups = [call.forwards.get(flag, []) for flag in FORWARD_FLAGS]
    count = len(groups[0])
    if count == 0 or any(len(group) != count for group in groups) or call.ssh_port is None:
        return []
    return [
        api_forward.ForwardRequest(sock, dest, user, identity, int(call.ssh_port))
        for sock, dest, user, identity in zip(*groups, strict=True)
    ]


def _is_emulated(config_path: str) -> bool:
    import json

    try:
        with open(config_path, "rb") as handle:
            argv = json.load(handle).get("CmdLine") or [""]
        return os.path.basename(str(argv[0])).startswith("qemu-system-aarch64")
    except (OSError, ValueError, AttributeError, IndexError):
        return False


def _log_output(config_path: Path) -> None:
    """gvproxy's own output goes to a bounded per-machine log (podman 4.3 discards it, and it is
    the only place that says why a network went away)."""
    log = gvproxy_log_path(config_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        if log.stat().st_size > LOG_LIMIT_BYTES:
            os.replace(log, log.with_name(log.name + ".1"))
    except FileNotFoundError:
        pass
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _prepare_machine(machine: RegisteredMachine) -> None:
    # qemu refuses to start when its console log's directory is missing (a cleaned state dir):
    # recreate it now, before podman runs qemu.
    Path(machine.console_log).parent.mkdir(mode=0o700, parents=True, exist_ok=True)


def _handled_machine(registry: Registry | None, call: GvproxyCall) -> RegisteredMachine | None:
    if registry is None:
        return None
    # podman 5: gvproxy's pid file is one per user; the qemu socket names the machine, and a
    # registered qemu route is what makes it emulated (its JSON holds no command line).
    if call.listen_qemu is not None and (machine := registry.machine_for_gvproxy_socket(call.listen_qemu)):
        return machine
    # podman 4.x: the machine's PidFilePath, and its CmdLine runs qemu-system-aarch64.
    machine = registry.machine_for_pid_file(call.pid_file) if call.pid_file is not None else None
    if machine is None or not _is_emulated(machine.config_path):
        return None
    return machine


def main(registry_file: str, args: Sequence[str]) -> int:
    context = helper_context(registry_file)
    registry, next_dirs = context.registry, context.next_dirs
    real = next_helper("gvproxy", next_dirs, context.own_dir, search_path=False)
    if real is None:
        sys.stderr.write(
            f"podman-emu: no gvproxy in {next_dirs} (the helper dirs podman used before podman-emu's); "
            "install gvproxy there, or run `podman-emu doctor`\n"
        )
        return 127
    call = parse_call(args)
    machine = _handled_machine(registry, call)
    requests = forward_requests(call) if machine else []
    if machine is None or not requests:
        os.execv(real, [real, *args])
    config_path = Path(machine.config_path)
    try:
        _prepare_machine(machine)
        _log_output(config_path)
    except OSError as error:
        sys.stderr.write(f"podman-emu: {error}; gvproxy keeps its own output\n")
    api_forward.spawn_detached(requests, gvproxy_pid=os.getpid(), state_file=forward_state_path(config_path))
    os.execv(real, [real, *call.kept])
