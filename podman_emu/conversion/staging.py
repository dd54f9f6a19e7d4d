"""Staging: the big files a conversion creates, prepared under temp names beside their
destinations before podman's lock is taken, so podman is not blocked during a multi-GB copy.
apply.py moves them into place under the lock; on any failure they are removed again."""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path

from podman_emu.conversion.artifacts import kept_disk_hint
from podman_emu.conversion.plan import FileAction, Plan
from podman_emu.errors import ConversionStateError, StagingFailed
from podman_emu.fsutil import (
    PendingFile,
    chmod_no_follow,
    create_exclusive,
    file_kind,
    open_regular,
    remove_quietly,
    temp_name,
)
from podman_emu.host.capabilities import PFLASH_SIZE
from podman_emu.images.arch import ArchVerdict
from podman_emu.images.install import DiskInstall, install_disk


@dataclass
class StagedFile:
    action: FileAction
    staged: Path | None  # None: nothing to stage (qemu creates the console log itself)
    sha256: str | None = None
    arch: ArchVerdict | None = None  # for the disk: what the arch check saw in the finished image


def _stage_vars(action: FileAction) -> StagedFile:
    staged = temp_name(Path(action.destination))
    fd = create_exclusive(staged)
    try:
        if action.source:
            output = PendingFile(fd, staged)
            source = open_regular(action.source)
            try:
                while chunk := os.read(source, 1 << 20):
                    output.write(chunk)
            finally:
                os.close(source)
        else:
            # podman's own recipe (dd if=/dev/zero bs=1m count=64): edk2 formats a blank store.
            os.ftruncate(fd, PFLASH_SIZE)
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    return StagedFile(action, staged)


def _stage_disk(action: FileAction, disk: DiskInstall) -> StagedFile:
    staged = temp_name(Path(action.destination))
    installed = install_disk(disk, staged)
    # Readable like the native disk podman made (0644), not private like a download.
    chmod_no_follow(staged, 0o644)
    return StagedFile(action, staged, installed.source_sha256, installed.arch)


def discard_staged(staged: list[StagedFile]) -> None:
    for item in staged:
        if item.staged is not None:
            remove_quietly(item.staged)


def _reuses_its_destination(action: FileAction) -> bool:
    # `--image NAME_aarch64.qcow2`: the disk a plain revert kept is staged from itself like any
    # source (arch check, grown to DiskSize) and only then renamed over itself.
    return action.role == "disk" and action.source is not None and os.path.abspath(action.source) == action.destination


def _refuse_odd_console_log(path: str) -> None:
    """An earlier boot's log may stay (qemu appends to it); anything but a regular file may not:
    qemu follows a symlink, and blocks opening a FIFO."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode):
        return
    kind = "a symlink" if stat.S_ISLNK(info.st_mode) else file_kind(info.st_mode)
    raise ConversionStateError(
        f"the console log {path} is {kind}: qemu would write the machine's console wherever it leads",
        hint="podman-emu's console logs are regular files that qemu creates; remove it and run convert again.",
    )


def refuse_existing_destinations(plan: Plan) -> None:
    for action in plan.files:
        if action.role == "console":
            _refuse_odd_console_log(action.destination)
            continue
        if not os.path.lexists(action.destination) or _reuses_its_destination(action):
            continue
        quoted = shlex.quote(action.destination)
        if action.role == "disk":
            hint = kept_disk_hint(plan.machine, action.destination) + " Then run convert again."
        else:
            hint = (
                "An interrupted run can leave it behind. If no machine uses it: "
                f"`rm -- {quoted}`, then run convert again."
            )
        raise ConversionStateError(
            f"{action.destination} already exists; podman-emu does not overwrite files it did not create",
            hint=hint,
        )


def stage_files(plan: Plan, disk: DiskInstall) -> list[StagedFile]:
    staged: list[StagedFile] = []
    destination = ""
    try:
        for action in plan.files:
            destination = action.destination
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
            # The error's own filename may be the source of a copy (shutil names the template
            # when the destination's file system is full): name what was being created.
            raise StagingFailed.of(
                exc, "create", destination, outcome="Nothing was changed, and the partial copy was removed."
            ) from None
        raise
    return staged
