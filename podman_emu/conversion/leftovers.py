"""What converted machines left behind after `podman machine rm`, and removing it.

podman's `rm` deletes the config and the ImagePath it knows (the aarch64 disk). The journal still
names the vars file, the console log and the native disk, which podman-emu then offers to remove.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import console_log_names, journal_dir
from podman_emu.errors import ConversionStateError, PodmanEmuError
from podman_emu.fsutil import flocked
from podman_emu.podman.machines import config_files, read_document


@dataclass(frozen=True)
class Leftover:
    machine: str
    journal: str
    files: list[str]

    @property
    def command(self) -> str:
        return f"podman-emu cleanup {self.machine}"


def _path_strings(value: Any) -> Iterator[str]:
    """Every absolute path a config mentions: plain values and qemu suboptions (file=/x,…)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            for part in item.split(","):
                candidate = part.split("=", 1)[-1].removeprefix("unix:")
                if os.path.isabs(candidate):
                    yield candidate


def referenced_paths() -> set[str]:
    """Every file a current machine config names, as written and resolved: cleanup never
    deletes one of them, whoever created it (two machines inited from one --image-path share it).
    A config that cannot be read protects nothing, so cleanup refuses to guess about it."""
    found: set[str] = set()
    for config in config_files():
        try:
            content = read_document(config).content
        except PodmanEmuError:
            continue
        for path in _path_strings(content):
            found.update({os.path.normpath(path), os.path.realpath(path)})
    return found


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
    for path, journal in journals.all_journals():
        if isinstance(journal, ConversionStateError) or not _is_stale(journal.config_path, journal):
            continue
        files = [item.path for item in journal.created if os.path.exists(item.path)]
        files += [
            str(p)
            for item in journal.created
            if item.role == "console"
            for p in console_log_names(Path(item.path))[1:]
            if p.exists()
        ]
        # podman's `rm` deleted the ImagePath it knew, the aarch64 disk; the native one stays.
        if os.path.exists(journal.native_image_path):
            files.append(journal.native_image_path)
        files = [file for file in files if not {os.path.normpath(file), os.path.realpath(file)} & in_use]
        leftovers.append(Leftover(journal.machine, str(path), files))
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
    if leftover is None:
        raise ConversionStateError(
            f"nothing left behind by a removed machine named {name!r}",
            hint="`podman-emu doctor` lists leftovers; a machine that still exists is reverted with "
            "`podman-emu revert`.",
        )
    return leftover
