"""Apply a plan: take podman's lock, re-check, journal, move the staged files in, write.

Order matters for crash safety. Convert: stage the big files under temp names (staging.py; no
lock held, so podman is not blocked during a multi-GB copy) -> lock -> re-read and compare ->
journal "converting" (with the checksums of the original and of the file about to be written) ->
move files into place -> atomic JSON write -> journal "converted". Whatever point a crash hits,
the config's checksum tells which journal state is true (journal.settle_journal), and
`repair_interrupted` finishes or undoes it.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

from podman_emu import paths
from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import console_log_names, is_emulated, journal_dir, removable
from podman_emu.conversion.journal import CreatedFile, Journal, settle_journal, stranger_error, stranger_reason
from podman_emu.conversion.plan import Plan
from podman_emu.conversion.staging import StagedFile, discard_staged, refuse_existing_destinations
from podman_emu.errors import IoFailed, MachineBusy
from podman_emu.fsutil import atomic_write, flocked, locked, private_dir, remove_quietly
from podman_emu.podman.document import sha256_bytes
from podman_emu.podman.layout import image_path
from podman_emu.podman.machines import LoadedMachine, read_config_bytes, referenced_paths
from podman_emu.podman.running import refuse_if_busy


@contextlib.contextmanager
def machine_lock(machine: LoadedMachine) -> Iterator[None]:
    """Podman 4.7+'s own NAME.lock (fcntl) when it exists, so podman and podman-emu exclude each
    other. Older podman takes no lock; podman-emu processes then still exclude each other through
    a flock on the journal dir, which leaves no lock file behind."""
    try:
        directory = private_dir(journal_dir(), root=paths.state_dir())
    except OSError as exc:
        raise IoFailed.of(exc, "create podman-emu's journal dir") from None
    with flocked(directory, what="podman-emu's journal"):
        podman_lock = machine.config_path.with_suffix(".lock")
        if podman_lock.exists():
            with locked(podman_lock, create=False, what=f"machine {machine.name!r}"):
                yield
        else:
            yield


def _refuse_if_changed(machine: LoadedMachine, action: str) -> None:
    if read_config_bytes(machine.config_path) != machine.document.data:
        raise MachineBusy(
            f"{machine.config_path} changed while podman-emu was working on it",
            hint=f"Another program (podman?) wrote it meanwhile; nothing was changed. Run the {action} again.",
        )


def _recheck(machine: LoadedMachine, action: str) -> None:
    _refuse_if_changed(machine, action)
    refuse_if_busy(machine.name, machine.config, action)


def _write_config(machine: LoadedMachine, new_bytes: bytes, action: str) -> None:
    # Compared again right before the rename: podman 4.3 takes no lock and writes in place, so a
    # `podman machine set` landing after _recheck would otherwise be replaced without a trace.
    target = _write_target(machine)
    try:
        atomic_write(target, new_bytes, before_rename=lambda: _refuse_if_changed(machine, action))
    except OSError as exc:
        # Name the config, not the temp file beside it (or nothing, for a failed write()).
        raise OSError(exc.errno, exc.strerror, str(target)) from exc


def apply_conversion(
    machine: LoadedMachine, plan: Plan, staged: list[StagedFile], options: Mapping[str, str]
) -> Journal:
    new_bytes = machine.document.render(plan.after)
    try:
        return _apply_conversion_locked(machine, plan, staged, options, new_bytes)
    except OSError as exc:
        # _apply_conversion_locked rolled back whatever it had moved into place.
        raise IoFailed.of(exc, "write", outcome="Nothing was changed: the machine is still native.") from None
    finally:
        discard_staged(staged)


def _apply_conversion_locked(
    machine: LoadedMachine, plan: Plan, staged: list[StagedFile], options: Mapping[str, str], new_bytes: bytes
) -> Journal:
    with machine_lock(machine):
        _recheck(machine, "convert")
        refuse_existing_destinations(plan)
        journal = Journal(
            machine=machine.name,
            config_path=str(machine.config_path.absolute()),
            status="converting",
            original_b64=base64.b64encode(machine.document.data).decode("ascii"),
            original_sha256=machine.document.sha256,
            converted_sha256=sha256_bytes(new_bytes),
            native_cmdline=list(plan.before.get("CmdLine", [])),
            native_image_path=image_path(plan.before),
            created=[CreatedFile(s.action.role, s.action.destination, s.action.detail, s.sha256) for s in staged],
            options=dict(options),
        )
        journals.save_journal(journal)
        try:
            for item in staged:
                if item.staged is not None:
                    os.replace(item.staged, item.action.destination)
            _write_config(machine, new_bytes, "convert")
        except BaseException:
            _undo_conversion(machine.config_path, journal)
            raise
        journal.status = "converted"
        with contextlib.suppress(OSError):
            # The config is converted; a journal still saying "converting" is settled as
            # converted by the config's checksum (settle_journal), as after a crash here.
            journals.save_journal(journal)
        return journal


def _write_target(machine: LoadedMachine) -> Path:
    """A config that is a symlink (dotfile managers do that) is rewritten where it points, so
    the link survives."""
    return machine.config_path.resolve() if machine.config_path.is_symlink() else machine.config_path


def _undo_conversion(config_path: Path, journal: Journal) -> None:
    """Roll back files of an unfinished conversion whose JSON was not written."""
    for item in journal.created:
        if item.role in ("vars", "disk"):
            remove_quietly(Path(item.path))
    journals.delete_journal(config_path)


def machine_journal(machine: LoadedMachine) -> Journal | None:
    """The machine's journal, refused when it is damaged or was written for an earlier machine
    of the same name: nothing may act on another machine's record."""
    journal = journals.load_journal(machine.config_path)
    if journal is not None:
        reason = stranger_reason(journal, machine.document.content, machine.document.sha256)
        if reason is not None:
            raise stranger_error(journal, machine.config_path, reason)
    return journal


def effective_journal(machine: LoadedMachine, journal: Journal | None) -> Journal | None:
    """What the journal means for the machine's config as it was loaded (read-only)."""
    return settle_journal(
        journal, current_sha256=machine.document.sha256, emulated=is_emulated(machine.document.content)
    )


def repair_interrupted(machine: LoadedMachine) -> None:
    """Settle a conversion a crash interrupted: under the lock, so a conversion that is merely
    in progress in another process is never mistaken for a crashed one."""
    with machine_lock(machine):
        if read_config_bytes(machine.config_path) != machine.document.data:
            raise MachineBusy(
                f"{machine.config_path} changed while podman-emu was reading it",
                hint="Another program (podman?) wrote it meanwhile; nothing was changed. Run the command again.",
            )
        journal = machine_journal(machine)
        if journal is None or journal.status != "converting":
            return
        settled = effective_journal(machine, journal)
        if settled is None:
            _undo_conversion(machine.config_path, journal)
        else:
            journals.save_journal(settled)


def apply_revert(
    machine: LoadedMachine, plan: Plan, journal: Journal, *, delete_disk: bool
) -> tuple[list[str], list[str]]:
    """Write the native config back and remove what convert created. Returns the removed paths
    and those kept because a current machine config names them or they lie outside podman's
    and podman-emu's dirs."""
    if machine.document.sha256 in (journal.converted_sha256, journal.original_sha256):
        # Nothing changed since convert (or an interrupted revert already wrote them back): the
        # very same bytes.
        new_bytes = journal.original_bytes
    else:
        new_bytes = machine.document.render(plan.after)
    removed: list[str] = []
    kept: list[str] = []
    with machine_lock(machine):
        _recheck(machine, "revert")
        try:
            journals.save_journal(replace(journal, status="reverting"))
        except OSError as exc:
            raise IoFailed.of(exc, "write", outcome="Nothing was changed: the machine is still emulated.") from None
        if new_bytes != machine.document.data:
            try:
                _write_config(machine, new_bytes, "revert")
            except (MachineBusy, OSError) as exc:
                # Nothing was changed, and the journal says so again (a journal left saying
                # "reverting" is harmless too: the config's checksum tells what is true).
                with contextlib.suppress(OSError):
                    journals.save_journal(journal)
                if isinstance(exc, OSError):
                    raise IoFailed.of(
                        exc, "write", outcome="Nothing was changed: the machine is still emulated."
                    ) from None
                raise
        try:
            # After the write: the reverted config no longer names the aarch64 disk, but another
            # config may (a copied NAME.json), and a journal may name a path outside.
            in_use = referenced_paths()
            for item in journal.created:
                if item.role == "disk" and not delete_disk:
                    continue
                targets = console_log_names(Path(item.path)) if item.role == "console" else [Path(item.path)]
                for target in targets:
                    if not removable(str(target), in_use):
                        if os.path.lexists(target):
                            kept.append(str(target))
                    elif remove_quietly(target):
                        removed.append(str(target))
            journals.delete_journal(machine.config_path)
        except OSError as exc:
            done = f" and removed {', '.join(removed)}" if removed else ""
            raise IoFailed.of(
                exc,
                "remove",
                outcome=f"The config was reverted{done}: podman starts the native machine again. The journal "
                f"still lists what is left; once the cause is fixed, `podman-emu revert {machine.name}` "
                "removes the rest.",
            ) from None
    return removed, kept
