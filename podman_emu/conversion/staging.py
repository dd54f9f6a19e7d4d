"""Staging: the big files a conversion creates, prepared under temp names beside their
destinations before podman's lock is taken, so podman is not blocked during a multi-GB copy.
apply.py moves them into place under the lock; on any failure they are removed again."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from podman_emu.conversion.plan import FileAction, Plan
from podman_emu.errors import ConversionStateError, StagingFailed
from podman_emu.fsutil import remove_quietly, temp_name
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
    if action.source:
        shutil.copyfile(action.source, staged)
    else:
        # podman's own recipe (dd if=/dev/zero bs=1m count=64): edk2 formats a blank store.
        with open(staged, "wb") as handle:
            handle.truncate(PFLASH_SIZE)
    os.chmod(staged, 0o644)
    return StagedFile(action, staged)


def _stage_disk(action: FileAction, disk: DiskInstall) -> StagedFile:
    staged = temp_name(Path(action.destination))
    installed = install_disk(disk, staged)
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
