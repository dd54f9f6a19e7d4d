"""What converted machines left behind after `podman machine rm`, and removing it.

podman's `rm` deletes the config and the ImagePath it knows (the aarch64 disk). The journal still
names the vars file, the console log and the native disk, which podman-emu then offers to remove.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from podman_emu import paths
from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import (
    console_log_names,
    journal_dir,
    kept_disk_hint,
    kept_disk_name,
    removable,
    within,
)
from podman_emu.conversion.start_helpers import without_machine
from podman_emu.errors import ConversionStateError, PodmanEmuError
from podman_emu.fsutil import flocked
from podman_emu.podman.machines import read_document, referenced_paths


@dataclass(frozen=True)
class Leftover:
    machine: str
    journal: str
    files: list[str]
    config_path: str = ""

    @property
    def command(self) -> str:
        return f"podman-emu cleanup {self.machine}"


def _is_stale(path: str, journal: journals.Journal) -> bool:
    """The journal's machine is gone: its config was removed, or replaced by a new machine of
    the same name (podman machine rm + init)."""
    config = Path(path)
    if not os.path.lexists(config):
        return True
    try:
        document = read_document(config)
    except PodmanEmuError:
        return False
    return journals.stranger_reason(journal, document.content, document.sha256) is not None


def find_leftovers() -> list[Leftover]:
    leftovers = []
    in_use = referenced_paths()
    data_dir = paths.podman_data_dir()
    for path, journal in journals.all_journals():
        if isinstance(journal, ConversionStateError) or not _is_stale(journal.config_path, journal):
            continue
        files = [item.path for item in journal.created if os.path.lexists(item.path)]
        files += [
            str(p)
            for item in journal.created
            if item.role == "console"
            for p in console_log_names(Path(item.path))[1:]
            if p.exists()
        ]
        # podman's `rm` deleted the ImagePath it knew, the aarch64 disk; the native one stays. It
        # is offered only where podman made it for this machine: an --image-path disk elsewhere
        # is the user's, and may be another machine's too.
        if os.path.exists(journal.native_image_path) and within(journal.native_image_path, [data_dir]):
            files.append(journal.native_image_path)
        files = [file for file in files if removable(file, in_use)]
        leftovers.append(Leftover(journal.machine, str(path), files, journal.config_path))
    return leftovers


def _leftover_named(name: str) -> Leftover | None:
    return next((leftover for leftover in find_leftovers() if leftover.machine == name), None)


def cleanup_leftovers(name: str, *, dry_run: bool) -> Leftover:
    """Remove what machine `name` left, under the journal-dir lock every other podman-emu writer
    takes, so a convert of a new machine of that name cannot interleave with the removal."""
    leftover = _leftover_named(name)
    if leftover is not None and not dry_run:
        with flocked(journal_dir(), what="podman-emu's journal"):
            leftover = _leftover_named(name)  # as it is now that nothing else can change it
            if leftover is not None:
                for file in leftover.files:
                    Path(file).unlink(missing_ok=True)
                Path(leftover.journal).unlink(missing_ok=True)
                # The gvproxy launcher no longer handles it; with the last emulated machine gone,
                # the drop-in, the launcher and the registry go too.
                without_machine(Path(leftover.config_path), dry_run=False)
    if leftover is None:
        hint = "`podman-emu doctor` lists leftovers; a machine that still exists is reverted with `podman-emu revert`."
        # A plain revert ended the journal but kept the aarch64 disk: the one file left to name.
        kept = [
            path
            for container in ("qcow2", "raw")
            if (path := paths.podman_data_dir() / kept_disk_name(name, container)).exists()
        ]
        if kept:
            hint = " ".join(kept_disk_hint(name, str(path)) for path in kept)
        raise ConversionStateError(f"nothing left behind by a removed machine named {name!r}", hint=hint)
    return leftover
