"""What runs when podman 5 starts `qemu-system-x86_64` with podman-emu's directory first in its
helper dirs: the run-time route for podman 5.x machines.

podman 5 stores no qemu command line; it builds one at every start (`-accel kvm -cpu host`, no
firmware) and finds the binary with FindHelperBinary, never probing it. For a machine podman-emu
converted (matched by the `-pidfile` podman passes, the machine's QEMUPidPath, against
podman-emu's own registry), the argv is rewritten by the same pure function `convert` uses for
podman 4.x, with the profile, firmware and vars file chosen at convert time, and this process
becomes qemu-system-aarch64 with `execv`: podman waits on this very pid and qemu writes it to the
pid file. Every other machine gets the real qemu-system-x86_64 with its arguments untouched.

An emulated machine is never handed to the x86 qemu: if its argv cannot be rewritten, the
wrapper exits with the reason, which podman prints ("qemu exited unexpectedly …, stderr: …").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from podman_emu.conversion.rewrite import rewrite_routed_argv
from podman_emu.errors import PodmanEmuError
from podman_emu.helpers.lookup import helper_context, next_helper
from podman_emu.podman.podman5 import NATIVE_QEMU
from podman_emu.qemu.argv import ArgvSyntaxError, canonical_name, iter_options


def _value_of(args: Sequence[str], name: str) -> str | None:
    try:
        return next(
            (option.value for option in iter_options(["qemu", *args]) if canonical_name(option.name) == name), None
        )
    except ArgvSyntaxError:
        return None


def main(registry_file: str, args: Sequence[str]) -> int:
    context = helper_context(registry_file)
    pid_file = _value_of(args, "-pidfile")
    found = context.registry.route_for_pid_file(pid_file) if context.registry and pid_file else None
    if found is None and pid_file and context.damaged_registry_names(registry_file, pid_file):
        sys.stderr.write(
            f"podman-emu: its start-helper registry {registry_file} is damaged and names this machine "
            f"({pid_file}), so it may be emulated and cannot start with the x86 qemu. Run `podman-emu doctor`.\n"
        )
        return 1
    if found is None:
        real = next_helper(NATIVE_QEMU, context.next_dirs, context.own_dir, search_path=True)
        if real is None:
            sys.stderr.write(f"podman-emu: no {NATIVE_QEMU} in podman's helper dirs or on PATH\n")
            return 127
        os.execv(real, [real, *args])
    machine, route = found
    try:
        argv = rewrite_routed_argv([NATIVE_QEMU, *args], route, machine.console_log)
        # qemu creates its console log but not the log's directory (a cleaned state dir).
        Path(machine.console_log).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.execv(route.qemu_binary, argv)
    except (PodmanEmuError, ArgvSyntaxError, OSError) as error:
        sys.stderr.write(
            f"podman-emu: cannot start machine {machine.name!r} emulated: {error}. "
            f"Run `podman-emu doctor {machine.name}`, or `podman-emu revert {machine.name}` to run it natively.\n"
        )
    return 1
