"""podman-emu's record of the start helpers it installed for a user: which machines are emulated,
where the launcher and the containers.conf drop-in are, and which directories it created for
them. It is the journal of everything outside the machine JSON that a conversion changes, and
the gvproxy launcher reads it at every `podman machine start`, so it is stdlib-only and cheap.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from podman_emu import paths

SCHEMA = 1
EVENTS_KEPT = 20


@dataclass(frozen=True)
class QemuRoute:
    """How the `qemu-system-x86_64` wrapper runs a podman 5 machine emulated. Podman 5 stores no
    command line and builds it at every start, so everything the aarch64 argv needs beyond
    podman's own is decided at convert time and kept here: the wrapper must exec within podman's
    ~15 s wait for the ready socket, and never probes or searches."""

    pid_file: str  # the machine's QEMUPidPath: podman 5 passes it as -pidfile at every start
    qemu_binary: str  # an absolute qemu-system-aarch64, probed at convert
    accel: str
    cpu: str
    machine: str
    firmware_arguments: list[str]  # pflash code + the machine's vars file
    disk_container: str  # qcow2 | raw: the aarch64 disk at ImagePath

    def gvproxy_socket(self, name: str) -> str:
        """Where podman 5 has gvproxy listen for this machine's qemu (`-listen-qemu`): beside the
        pid file, `<rt>/podman/NAME-gvproxy.sock` (v5.4.2 vmconfigs/sockets.go:11-17). gvproxy's
        own -pid-file is one per user in 5.x, so this is what tells its machine."""
        return os.path.join(os.path.dirname(self.pid_file), f"{name}-gvproxy.sock")


@dataclass(frozen=True)
class RegisteredMachine:
    name: str
    config_path: str
    console_log: str
    qemu_route: QemuRoute | None = None  # podman 5.x machines only


@dataclass
class Registry:
    helper_dir: str  # podman-emu's directory, first in podman's helper_binaries_dir
    next_helper_dirs: list[str]  # the list podman used before: where the real gvproxy is found
    dropin: str
    created_dirs: list[str] = field(default_factory=list)  # removed (if empty) with the last machine
    machines: list[RegisteredMachine] = field(default_factory=list)
    schema: int = SCHEMA

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=1) + "\n").encode()

    def machine_for_pid_file(self, pid_file: str) -> RegisteredMachine | None:
        """The emulated machine whose gvproxy podman 4.x is starting: podman passes the
        machine's `PidFilePath` as gvproxy's -pid-file."""
        for machine in self.machines:
            if _config_value(machine.config_path, "PidFilePath") == pid_file:
                return machine
        return None

    def machine_for_gvproxy_socket(self, listen: str) -> RegisteredMachine | None:
        """The emulated podman 5 machine whose gvproxy podman is starting (`-listen-qemu unix://…`)."""
        path = listen.removeprefix("unix://")
        for machine in self.machines:
            if machine.qemu_route is not None and machine.qemu_route.gvproxy_socket(machine.name) == path:
                return machine
        return None

    def route_for_pid_file(self, pid_file: str) -> tuple[RegisteredMachine, QemuRoute] | None:
        """The emulated podman 5 machine whose qemu podman is starting (its -pidfile)."""
        for machine in self.machines:
            if machine.qemu_route is not None and machine.qemu_route.pid_file == pid_file:
                return machine, machine.qemu_route
        return None


class RegistryDamaged(ValueError):
    pass


def _config_value(config_path: str, key: str) -> str | None:
    try:
        with open(config_path, "rb") as handle:
            content = json.load(handle)
        value = content.get(key)
        return value.get("Path") if isinstance(value, dict) else value
    except (OSError, ValueError, AttributeError):
        return None


def helpers_root() -> Path:
    return paths.state_dir() / "start-helpers"


def registry_path() -> Path:
    return helpers_root() / "registry.json"


def launcher_dir() -> Path:
    return helpers_root() / "bin"


def forward_state_path(config_path: Path) -> Path:
    return helpers_root() / "forward" / f"{paths.machine_key(config_path)}.json"


def gvproxy_log_path(config_path: Path) -> Path:
    return helpers_root() / "logs" / f"{paths.machine_key(config_path)}-gvproxy.log"


def _registered_machine(item: dict[str, Any]) -> RegisteredMachine:
    route = item.get("qemu_route")
    if route is not None:
        route = QemuRoute(**route)
        if not all(isinstance(value, str) for value in route.firmware_arguments):
            raise RegistryDamaged("a qemu route's firmware arguments are not strings")
    return RegisteredMachine(**{**item, "qemu_route": route})


def parse_registry(raw: bytes) -> Registry:
    try:
        data: dict[str, Any] = json.loads(raw)
        if data.get("schema") != SCHEMA:
            raise RegistryDamaged(f"unknown schema {data.get('schema')!r}")
        data["machines"] = [_registered_machine(item) for item in data.get("machines", [])]
        return Registry(**data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RegistryDamaged(str(exc)) from None


def read_registry(path: Path | None = None) -> Registry | None:
    """None when there is none; RegistryDamaged when there is one that cannot be trusted."""
    target = path or registry_path()
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryDamaged(f"cannot open {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb") as handle:
            return parse_registry(handle.read(1 << 20))
    except OSError as exc:
        raise RegistryDamaged(f"cannot read {target}: {exc.strerror}") from None


@dataclass
class ForwardState:
    phase: str  # waiting-for-sshd | forwarding | stopped | failed
    gvproxy_pid: int
    socks: list[str]
    started_at: float = field(default_factory=time.time)
    attempts: int = 0
    last_error: str = ""
    forward_up_at: float | None = None
    events: list[str] = field(default_factory=list)

    def note(self, event: str) -> None:
        self.events = [*self.events, f"{time.strftime('%H:%M:%S')} {event}"][-EVENTS_KEPT:]


def read_forward_state(path: Path) -> ForwardState | None:
    try:
        # Non-blocking and no-follow: whatever is planted at this path, a read command returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            return ForwardState(**json.loads(handle.read(1 << 20)))
    except (OSError, ValueError, TypeError):
        return None
