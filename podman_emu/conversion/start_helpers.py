"""The host side of a conversion: the gvproxy launcher and its registration with podman.

Why it exists: gvproxy starts the ssh forward of podman's API socket the moment podman launches
it, before qemu runs, with a fixed budget of about 60 attempts; an emulated first boot brings
sshd up later than that, gvproxy exits, the VM loses its network and podman 4.x waits forever.
podman-emu's launcher takes gvproxy's place for emulated machines only: it starts the real
gvproxy without the forward (same pid, so podman's pid file and kill still work) and brings the
forward up itself once the guest's sshd accepts the machine's key (podman_emu.helpers).

podman finds it because a drop-in, ~/.config/containers/containers.conf.d/99-podman-emu.conf,
puts podman-emu's directory first in `helper_binaries_dir`, followed by the list podman used
before. No file of the user's is edited; the drop-in, the launcher and the registry are created
with the first emulated machine and removed with the last, with any directory made for them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import podman_emu
from podman_emu.conversion.helper_registry import (
    RegisteredMachine,
    Registry,
    RegistryDamaged,
    forward_state_path,
    gvproxy_log_path,
    helpers_root,
    launcher_dir,
    read_registry,
    registry_path,
)
from podman_emu.errors import ConversionStateError
from podman_emu.fsutil import atomic_write, flocked, private_dir, remove_quietly, write_private
from podman_emu.host.containers_conf import dropin_path, effective_helper_dirs, render_dropin

Action = Literal["create", "update", "remove"]
LAUNCHER_NAME = "gvproxy"
QEMU_WRAPPER_NAME = "qemu-system-x86_64"


@dataclass(frozen=True)
class HostEdit:
    """One change outside the machine JSON, as `--dry-run` shows it and the registry records it."""

    role: str  # "gvproxy launcher", "containers.conf drop-in", "start-helper registry", "directory"
    path: str
    action: Action
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"role": self.role, "path": self.path, "action": self.action, "detail": self.detail}


@dataclass
class HostPlan:
    edits: list[HostEdit] = field(default_factory=list)
    registry: Registry | None = None  # what the registry becomes; None: everything is removed
    files: dict[str, bytes] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _damaged(error: RegistryDamaged) -> ConversionStateError:
    return ConversionStateError(
        f"podman-emu's start-helper registry {registry_path()} is damaged ({error})",
        hint="It lists the emulated machines whose gvproxy podman-emu's launcher handles. Move it away "
        f"and remove {dropin_path()} if it is podman-emu's, then convert the emulated machines again "
        "(`podman-emu list` shows them).",
    )


def current_registry() -> Registry | None:
    try:
        return read_registry()
    except RegistryDamaged as error:
        raise _damaged(error) from None


def package_root() -> str:
    """The directory podman-emu is imported from, so the launcher finds the same code even when
    it is not installed in `python`'s site-packages (run from a checkout, PYTHONPATH)."""
    return str(Path(podman_emu.__file__).resolve().parent.parent)


_HELPER_TEMPLATE = """#!{python} -I
# podman-emu's {helper} {kind}: podman finds it through {dropin}.
# {purpose}
import json
import os
import sys

REGISTRY = {registry!r}
FALLBACK_DIRS = {fallback_dirs!r}
PACKAGE_ROOT = {root!r}
if PACKAGE_ROOT:
    sys.path.insert(0, PACKAGE_ROOT)
try:
    from podman_emu.helpers.{module} import main
except Exception as error:
{fallback}
sys.exit(main(REGISTRY, sys.argv[1:]))
"""

# If podman-emu cannot be imported (uninstalled, a broken venv), a native machine must not go
# down with it: the real helper from the list podman used before takes over unchanged.
_HAND_OVER = """    for directory in FALLBACK_DIRS + {path_dirs}:
        candidate = os.path.join(directory, {helper!r})
        own = directory == os.path.dirname(os.path.abspath(sys.argv[0]))
        if not own and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            os.execv(candidate, [candidate, *sys.argv[1:]])
    sys.stderr.write(f"podman-emu's {helper} {kind}: {{error}}; no {helper} in {{FALLBACK_DIRS}}\\n")
    sys.exit(127)"""

# ... but an emulated podman 5 machine is never handed to the x86 qemu (its disk is aarch64):
# that is the silent fallback this tool exists to prevent. The registry is plain JSON, so the
# check needs nothing of podman-emu's.
_REFUSE_EMULATED = """    try:
        with open(REGISTRY, "rb") as handle:
            routes = [m for m in json.load(handle).get("machines", []) if m.get("qemu_route")]
        args = sys.argv[1:]
        pid_file = args[args.index("-pidfile") + 1] if "-pidfile" in args[:-1] else None
        emulated = [m["name"] for m in routes if m["qemu_route"].get("pid_file") == pid_file]
    except (OSError, ValueError, AttributeError, TypeError, KeyError):
        emulated = []
    if emulated:
        sys.stderr.write(
            f"podman-emu cannot be imported ({error}), and machine {emulated[0]!r} is emulated: it "
            f"needs podman-emu to start. Reinstall podman-emu, or `podman-emu revert {emulated[0]}`.\\n"
        )
        sys.exit(1)
"""


def _helper_source(
    helper: str, kind: str, purpose: str, module: str, registry_file: Path, fallback_dirs: Sequence[str],
    python: str, root: str | None, *, search_path: bool, refuse_emulated: bool,
) -> bytes:  # fmt: skip
    """`-I`: podman's environment (PYTHONPATH, the working directory) must not decide which code runs."""
    path_dirs = 'os.environ.get("PATH", os.defpath).split(os.pathsep)' if search_path else "[]"
    fallback = (_REFUSE_EMULATED if refuse_emulated else "") + _HAND_OVER.format(
        path_dirs=path_dirs, helper=helper, kind=kind
    )
    return _HELPER_TEMPLATE.format(
        python=python, helper=helper, kind=kind, dropin=dropin_path(), purpose=purpose, registry=str(registry_file),
        fallback_dirs=list(fallback_dirs), root=root, module=module, fallback=fallback,
    ).encode()  # fmt: skip


def launcher_source(registry_file: Path, fallback_dirs: Sequence[str], python: str, root: str | None = None) -> bytes:
    """The launcher podman runs as `gvproxy`."""
    return _helper_source(
        LAUNCHER_NAME,
        "launcher",
        "Machines podman-emu converted get gvproxy without its early API forward (podman-emu brings the\n"
        "# forward up once the guest's sshd is ready); every other machine gets the real gvproxy unchanged.",
        "gvproxy_shim",
        registry_file,
        fallback_dirs,
        python,
        root,
        search_path=False,  # podman looks for gvproxy in its helper dirs only
        refuse_emulated=False,
    )


def qemu_wrapper_source(
    registry_file: Path, fallback_dirs: Sequence[str], python: str, root: str | None = None
) -> bytes:
    """The wrapper podman 5 runs as `qemu-system-x86_64`."""
    return _helper_source(
        QEMU_WRAPPER_NAME,
        "wrapper",
        "podman 5 machines podman-emu converted run as qemu-system-aarch64 under TCG; every other\n"
        "# machine gets the real qemu-system-x86_64 with its arguments unchanged.",
        "qemu_wrapper",
        registry_file,
        fallback_dirs,
        python,
        root,
        search_path=True,  # FindHelperBinary(qemu, true): $PATH after the helper dirs
        refuse_emulated=True,
    )


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and its missing parents, outermost first: the directories a write would create."""
    missing: list[Path] = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return list(reversed(missing))


def _refuse_foreign_dropin(registry: Registry | None) -> None:
    dropin = dropin_path()
    ours = registry is not None and registry.dropin == str(dropin)
    if dropin.exists() and not ours:
        raise ConversionStateError(
            f"{dropin} exists and podman-emu did not write it",
            hint="podman-emu registers its gvproxy launcher in that file. Rename or remove your file "
            "(its settings can live in another drop-in or in containers.conf), then convert again.",
        )


def plan_host(machines: Sequence[RegisteredMachine]) -> HostPlan:
    """What the start helpers must become for exactly these emulated machines (pure of writes)."""
    before = current_registry()
    _refuse_foreign_dropin(before)
    plan = HostPlan()
    kept = [machine for machine in machines if Path(machine.config_path).exists()]
    if not kept:
        if before is not None:
            plan.edits += [
                HostEdit("containers.conf drop-in", before.dropin, "remove"),
                HostEdit("gvproxy launcher", str(Path(before.helper_dir) / LAUNCHER_NAME), "remove"),
            ]
            wrapper = Path(before.helper_dir) / QEMU_WRAPPER_NAME
            if wrapper.exists():
                plan.edits.append(HostEdit("qemu wrapper", str(wrapper), "remove"))
            plan.edits.append(HostEdit("start-helper registry", str(registry_path()), "remove"))
            plan.edits += [HostEdit("directory", d, "remove", "if empty") for d in reversed(before.created_dirs)]
        return plan
    dropin = dropin_path()
    previous = effective_helper_dirs(exclude=[dropin])
    if previous.conf_override:
        plan.warnings.append(
            f"CONTAINERS_CONF={previous.conf_override} is set: podman then reads no drop-in, so it will not find "
            "podman-emu's gvproxy launcher and a slow emulated boot can hang `podman machine start`. Unset it, "
            f"or add {launcher_dir()} first to helper_binaries_dir in that file."
        )
    bin_dir = launcher_dir()
    next_dirs = [d for d in previous.dirs if Path(d) != bin_dir]
    if not any(os.access(Path(d) / "gvproxy", os.X_OK) for d in next_dirs):
        plan.warnings.append(
            f"no gvproxy in podman's helper dirs ({', '.join(next_dirs)}): `podman machine start` needs it. "
            "Install gvproxy (gvisor-tap-vsock) into one of them, e.g. a symlink /usr/libexec/podman/gvproxy."
        )
    created = list(before.created_dirs) if before else []
    for directory in [*_missing_dirs(dropin.parent), *_missing_dirs(bin_dir)]:
        plan.edits.append(HostEdit("directory", str(directory), "create"))
        if str(directory) not in created:
            created.append(str(directory))
    registry = Registry(
        helper_dir=str(bin_dir),
        next_helper_dirs=next_dirs,
        dropin=str(dropin),
        created_dirs=created,
        machines=list(kept),
    )
    names = [machine.name for machine in kept]
    files = {
        str(registry_path()): ("start-helper registry", registry.to_json(), f"machines: {', '.join(names)}"),
        str(bin_dir / LAUNCHER_NAME): (
            "gvproxy launcher",
            launcher_source(registry_path(), next_dirs, sys.executable, package_root()),
            f"real gvproxy from {', '.join(next_dirs)}",
        ),
        str(dropin): (
            "containers.conf drop-in",
            render_dropin([str(bin_dir), *next_dirs], names),
            f"helper_binaries_dir = [{bin_dir}, …{previous.source}]",
        ),
    }
    wrapper = bin_dir / QEMU_WRAPPER_NAME
    if any(machine.qemu_route for machine in kept):
        files[str(wrapper)] = (
            "qemu wrapper",
            qemu_wrapper_source(registry_path(), next_dirs, sys.executable, package_root()),
            "podman 5 machines: emulated ones run qemu-system-aarch64, the others the real qemu-system-x86_64",
        )
    elif wrapper.exists():
        # The last podman 5 machine was reverted: podman finds its qemu where it did before.
        plan.edits.append(HostEdit("qemu wrapper", str(wrapper), "remove"))
    for path, (role, content, detail) in files.items():
        try:
            current: bytes | None = Path(path).read_bytes()
        except FileNotFoundError:
            current = None
        except OSError as exc:
            raise ConversionStateError(f"cannot read {path}: {exc.strerror}") from None
        if current != content:
            plan.edits.append(HostEdit(role, path, "create" if current is None else "update", detail))
        plan.files[path] = content
    plan.registry = registry
    return plan


def _lock() -> contextlib.AbstractContextManager[None]:
    # A flock on the directory itself: no lock file to leave behind when a later step fails.
    return flocked(private_dir(helpers_root()), what="podman-emu's start helpers")


def _write(plan: HostPlan) -> None:
    assert plan.registry is not None
    # Every file's directory, not only those this plan creates: a revert killed part-way may
    # have removed a directory the registry still records as made.
    for path in plan.files:
        os.makedirs(Path(path).parent, mode=0o700, exist_ok=True)
    # The registry first: whatever is on disk after a crash is recorded in it.
    write_private(registry_path(), plan.files[str(registry_path())])
    for path, content in plan.files.items():
        if path == str(registry_path()):
            continue
        mode = 0o700 if Path(path).name in (LAUNCHER_NAME, QEMU_WRAPPER_NAME) else 0o600
        atomic_write(Path(path), content, mode=mode)
    for edit in plan.edits:
        if edit.action == "remove":
            remove_quietly(Path(edit.path))


def _remove(plan: HostPlan) -> None:
    # The registry last: until everything else is gone it is the record of what to remove.
    ordered = sorted(plan.edits, key=lambda edit: (edit.role == "start-helper registry", edit.role == "directory"))
    for edit in ordered:
        if edit.role == "directory":
            with contextlib.suppress(OSError):  # not empty: the user put something there
                os.rmdir(edit.path)
        else:
            remove_quietly(Path(edit.path))


def _apply(plan: HostPlan) -> None:
    try:
        if plan.registry is None:
            _remove(plan)
        else:
            _write(plan)
    except OSError as exc:
        raise ConversionStateError(
            f"could not update podman-emu's start helpers: {exc.strerror} ({exc.filename})",
            hint="Fix the cause (space, permissions) and run the command again; the machine JSON was not "
            "changed by this step.",
        ) from None


def _registered() -> list[RegisteredMachine]:
    registry = current_registry()
    return list(registry.machines) if registry else []


def with_machine(machine: RegisteredMachine, *, dry_run: bool) -> HostPlan:
    """Register an emulated machine (convert). Idempotent."""
    with contextlib.nullcontext() if dry_run else _lock():
        machines = [m for m in _registered() if m.config_path != machine.config_path] + [machine]
        plan = plan_host(machines)
        if not dry_run:
            _apply(plan)
        return plan


def without_machine(config_path: Path, *, dry_run: bool) -> HostPlan:
    """Unregister a machine (revert; cleanup after `podman machine rm`); with the last one, remove
    everything the registry records."""
    with contextlib.nullcontext() if dry_run else _lock():
        machines = [m for m in _registered() if m.config_path != str(config_path)]
        plan = plan_host(machines)
        records = [path for path in machine_records(config_path) if path.exists()]
        plan.edits += [HostEdit("start record", str(path), "remove") for path in records]
        if not dry_run:
            if plan.edits or plan.registry is None:
                _apply(plan)
            for path in records:
                remove_quietly(path)
        return plan


def machine_records(config_path: Path) -> list[Path]:
    """What the launcher and forwarder write for one machine at its starts."""
    state = forward_state_path(config_path)
    log = gvproxy_log_path(config_path)
    return [state, state.with_suffix(".log"), log, log.with_name(log.name + ".1")]


def registered(config_path: Path) -> bool:
    with contextlib.suppress(ConversionStateError):
        return any(m.config_path == str(config_path) for m in _registered())
    return False
