"""The emulated machine's serial console log: a file podman-emu owns, qemu appends to.

qemu opens it with append=on, so earlier boots stay readable. qemu cannot bound a file, so
podman-emu does whenever it runs (`list`, `status`, `logs`): past the limit, the log moves to
`NAME.log.1` (replacing the previous one) and a fresh file starts. A running qemu keeps writing
into the moved file until its next start, so readers always take `.log.1` then `.log`, in that
order, which is also the order in which they were written.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from podman_emu.conversion.artifacts import rotated_path
from podman_emu.fsutil import open_regular

CONSOLE_LIMIT_BYTES = 8 * 1024 * 1024


def rotate_if_large(log: Path, limit: int | None = None) -> bool:
    """Callers pass the log podman-emu created (artifacts.console_log_path), never a path read
    from a config: a user can name any file there, and a read command must not move it. A
    symlink or anything but a regular file is not podman-emu's log either."""
    try:
        info = log.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size <= (CONSOLE_LIMIT_BYTES if limit is None else limit):
            return False
        os.replace(log, rotated_path(log))
    except OSError:
        return False
    return True


def console_log_to_read(configured: str | None, own: Path) -> Path | None:
    """The console log a read command may open: the one the machine's CmdLine names, except
    that root reads no file a user's config names (`logs` would print a root-only file), only
    podman-emu's own log in root's state dir. None: nothing may be read."""
    if configured is None:
        return None
    path = Path(configured)
    if os.geteuid() == 0 and path != own:
        return None
    return path


def root_refuses_reading(configured: str) -> str:
    return (
        f"as root, podman-emu reads no console log but its own: {configured} is named by the machine's config, "
        "which its user can point at any file"
    )


def console_log_problem(log: Path) -> str | None:
    """Why qemu could not open this console log at its next start (it then refuses to start at
    all), or None. qemu creates the file, never its directory: a deleted consoles dir (state dir
    cleaned, moved, on a tmpfs) stops the machine while everything else looks fine."""
    directory = log.parent
    if not directory.is_dir():
        return (
            f"the console log's directory {directory} does not exist: qemu cannot open {log.name} there "
            "and refuses to start the machine"
        )
    if not os.access(directory, os.W_OK | os.X_OK) and not log.exists():
        return f"the console log's directory {directory} is not writable: qemu cannot create {log.name} there"
    if log.is_symlink() or (log.exists() and not log.is_file()):
        return f"the console log {log} is not a regular file: qemu would write wherever it leads"
    return None


def console_log_fix(log: Path, name: str) -> str:
    return (
        f"Recreate the directory: `mkdir -p -m 700 {log.parent}` (podman-emu keeps each converted machine's "
        f"console log there, so its state dir must outlive the conversion), or `podman-emu revert {name}`."
    )


def open_log(path: Path) -> BinaryIO:
    """A console log file opened for reading; OSError for anything but a regular file (a FIFO
    there would block the reader forever)."""
    return os.fdopen(open_regular(path), "rb")


def log_files(log: Path) -> list[Path]:
    """The existing files of a console log, oldest first."""
    return [path for path in (rotated_path(log), log) if path.is_file()]


def read_tail_bytes(paths: Sequence[Path], max_bytes: int) -> tuple[bytes, bool]:
    """The last `max_bytes` of the concatenation of `paths` (oldest first); True if that is all."""
    chunks: list[bytes] = []
    remaining = max_bytes
    for index, path in enumerate(reversed(paths)):
        if remaining <= 0:
            older = list(reversed(paths))[index:]
            return b"".join(reversed(chunks)), not any(p.is_file() and p.stat().st_size for p in older)
        try:
            with open_log(path) as handle:
                size = os.fstat(handle.fileno()).st_size
                start = max(0, size - remaining)
                handle.seek(start)
                data = handle.read(remaining)
        except OSError:
            continue
        chunks.append(data)
        remaining -= len(data)
        if start > 0:
            return b"".join(reversed(chunks)), False
    return b"".join(reversed(chunks)), True
