"""Apply a plan: stage files, take podman's lock, re-check, write, journal.

Order matters for crash safety. Convert: stage the big files under temp names (no lock held, so
podman is not blocked during a multi-GB copy) -> lock -> re-read and compare -> journal
"converting" (with the checksums of the original and of the file about to be written) -> move
files into place -> atomic JSON write -> journal "converted". Whatever point a crash hits, the
config's checksum tells which journal state is true, and `reconcile` finishes or undoes it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from podman_emu import journal as journals
from podman_emu import locations
from podman_emu.document import sha256_bytes
from podman_emu.errors import ConversionStateError, MachineBusy, StagingFailed
from podman_emu.fileops import TEMP_MARKER, atomic_write, dir_flock, locked, remove_quietly, temp_name
from podman_emu.images.arch import ArchVerdict
from podman_emu.journal import CreatedFile, Journal
from podman_emu.machines import LoadedMachine, read_config_bytes
from podman_emu.plan import FileAction, Plan, is_emulated
from podman_emu.qemu.firmware import PFLASH_SIZE
from podman_emu.state import refuse_if_busy


@dataclass
class StagedFile:
    action: FileAction
    staged: Path | None  # None: nothing to stage (qemu creates the console log itself)
    sha256: str | None = None
    arch: ArchVerdict | None = None  # for the disk: what the arch check saw in the finished image


@dataclass(frozen=True)
class DiskStaging:
    """How the aarch64 disk is put in place: grown to the machine's DiskSize, as podman does."""

    size_gib: int
    qemu_img: str
    progress: bool = False
    expected_sha256: str | None = None
    expected_uncompressed_sha256: str | None = None
    force: bool = False  # use a disk the arch check calls x86_64


@contextlib.contextmanager
def machine_lock(machine: LoadedMachine) -> Iterator[None]:
    """Podman 4.7+'s own NAME.lock (fcntl) when it exists, so podman and podman-emu exclude each
    other. Older podman takes no lock; podman-emu processes then still exclude each other through
    a flock on the journal dir, which leaves no lock file behind."""
    directory = locations.ensure_private_dir(journals.journal_dir())
    with dir_flock(directory, what="podman-emu's journal"):
        podman_lock = machine.config_path.with_suffix(".lock")
        if podman_lock.exists():
            with locked(podman_lock, create=False, what=f"machine {machine.name!r}"):
                yield
        else:
            yield


def _recheck(machine: LoadedMachine, action: str) -> None:
    if read_config_bytes(machine.config_path) != machine.document.data:
        raise MachineBusy(
            f"{machine.config_path} changed while podman-emu was working on it",
            hint=f"Another program (podman?) wrote it meanwhile; nothing was changed. Run the {action} again.",
        )
    refuse_if_busy(machine.name, machine.model, action)


def _stage_vars(action: FileAction) -> StagedFile:
    staged = temp_name(Path(action.destination))
    if action.source:
        shutil.copyfile(action.source, staged)
    else:
        # podman's own recipe (dd if=/dev/zero bs=1m count=64): edk2 formats a blank store.
        with open(staged, "wb") as handle:
            handle.truncate(PFLASH_SIZE)
    os.chmod(staged, 0o644)
    return StagedFile(action, staged)


def _stage_disk(action: FileAction, disk: DiskStaging) -> StagedFile:
    from podman_emu.images import install_disk

    assert action.source is not None
    staged = temp_name(Path(action.destination))
    # Verified, arch-checked and resized before it is renamed to the staged name.
    installed = install_disk(
        Path(action.source),
        staged,
        size_gib=disk.size_gib,
        qemu_img=disk.qemu_img,
        expected_sha256=disk.expected_sha256,
        expected_uncompressed_sha256=disk.expected_uncompressed_sha256,
        force=disk.force,
        progress=disk.progress,
    )
    # Readable like the native disk podman made (0644), not private like a download.
    os.chmod(staged, 0o644)
    return StagedFile(action, staged, installed.source_sha256, installed.arch)


def discard_staged(staged: list[StagedFile]) -> None:
    for item in staged:
        if item.staged is not None:
            remove_quietly(item.staged)


def refuse_existing_destinations(plan: Plan) -> None:
    for action in plan.files:
        if action.role != "console" and os.path.lexists(action.destination):
            raise ConversionStateError(
                f"{action.destination} already exists; podman-emu does not overwrite files it did not create",
                hint="A plain `podman-emu revert` keeps the aarch64 disk, and an interrupted run can leave "
                "files too. Move it away (or delete it if you do not need it) and run convert again.",
            )


def stage_files(plan: Plan, disk: DiskStaging) -> list[StagedFile]:
    staged: list[StagedFile] = []
    try:
        for action in plan.files:
            if action.role == "vars":
                staged.append(_stage_vars(action))
            elif action.role == "disk":
                staged.append(_stage_disk(action, disk))
            else:
                Path(action.destination).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                staged.append(StagedFile(action, None))
    except BaseException as exc:
        discard_staged(staged)
        with contextlib.suppress(OSError):
            for action in plan.files:
                remove_quietly(temp_name(Path(action.destination)))
        if isinstance(exc, OSError):
            raise StagingFailed(
                f"could not create {getattr(exc, 'filename', None) or 'a file'}: {exc.strerror}",
                hint="Check free space and permissions in podman's data dir; nothing was changed.",
            ) from None
        raise
    return staged


def apply_conversion(
    machine: LoadedMachine, plan: Plan, staged: list[StagedFile], options: dict[str, object]
) -> Journal:
    new_bytes = machine.document.render(plan.after)
    try:
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
                native_cmdline=list(plan.before["CmdLine"]),
                native_image_path=_image_path_value(plan.before),
                created=[CreatedFile(s.action.role, s.action.destination, s.action.detail, s.sha256) for s in staged],
                options=dict(options),
            )
            journals.save_journal(journal)
            try:
                for item in staged:
                    if item.staged is not None:
                        os.replace(item.staged, item.action.destination)
                atomic_write(_write_target(machine), new_bytes)
            except BaseException:
                _undo_conversion(machine.config_path, journal)
                raise
            journal.status = "converted"
            journals.save_journal(journal)
            return journal
    finally:
        discard_staged(staged)


def _write_target(machine: LoadedMachine) -> Path:
    """A config that is a symlink (dotfile managers do that) is rewritten where it points, so
    the link survives."""
    return machine.config_path.resolve() if machine.config_path.is_symlink() else machine.config_path


def _image_path_value(content: dict[str, object]) -> str:
    value = content["ImagePath"]
    return str(value["Path"] if isinstance(value, dict) else value)


def _undo_conversion(config_path: Path, journal: Journal) -> None:
    """Roll back files of an unfinished conversion whose JSON was not written."""
    for item in journal.created:
        if item.role in ("vars", "disk"):
            remove_quietly(Path(item.path))
    journals.delete_journal(config_path)


def effective_journal(machine: LoadedMachine, journal: Journal | None) -> Journal | None:
    """What the journal means for the file as it is now (read-only). A "converting" journal left
    by a crash is settled by the config's checksum: the new file is there -> converted; the old
    one -> the conversion never happened (None)."""
    if journal is None or journal.status != "converting":
        return journal
    current = machine.document.sha256
    if current == journal.converted_sha256:
        return replace(journal, status="converted")
    # Podman may have rewritten the file since the crash (list, set): the CmdLine tells.
    if current != journal.original_sha256 and is_emulated(machine.document.content):
        return replace(journal, status="converted")
    return None


def repair_interrupted(machine: LoadedMachine) -> None:
    """Settle a conversion a crash interrupted: under the lock, so a conversion that is merely
    in progress in another process is never mistaken for a crashed one."""
    with machine_lock(machine):
        if read_config_bytes(machine.config_path) != machine.document.data:
            raise MachineBusy(
                f"{machine.config_path} changed while podman-emu was reading it",
                hint="Another program (podman?) wrote it meanwhile; nothing was changed. Run the command again.",
            )
        journal = journals.load_journal(machine.config_path)
        if journal is None or journal.status != "converting":
            return
        settled = effective_journal(machine, journal)
        if settled is None:
            _undo_conversion(machine.config_path, journal)
        else:
            journals.save_journal(settled)


def console_files(path: str) -> list[Path]:
    base = Path(path)
    return [base, base.with_name(base.name + ".1")]


def apply_revert(machine: LoadedMachine, plan: Plan, journal: Journal, *, delete_disk: bool) -> list[str]:
    """Write the native config back and remove what convert created. Returns removed paths."""
    if machine.document.sha256 == journal.converted_sha256:
        new_bytes = journal.original_bytes  # nothing changed since convert: the very same bytes
    else:
        new_bytes = machine.document.render(plan.after)
    removed: list[str] = []
    with machine_lock(machine):
        _recheck(machine, "revert")
        journals.save_journal(replace(journal, status="reverting"))
        if new_bytes != machine.document.data:
            atomic_write(_write_target(machine), new_bytes)
        for item in journal.created:
            if item.role == "disk" and not delete_disk:
                continue
            targets = console_files(item.path) if item.role == "console" else [Path(item.path)]
            for target in targets:
                if remove_quietly(target):
                    removed.append(str(target))
        journals.delete_journal(machine.config_path)
    return removed


def stale_temp_files(directory: Path) -> list[Path]:
    try:
        # The marker may sit inside the name: the disk copy streams into `<staged name>.XXXX.partial`.
        return sorted(p for p in directory.iterdir() if TEMP_MARKER in p.name)
    except OSError:
        return []
