"""Careful writes: atomic replacement in podman's dir, locks, private files.

A temp file never ends in `.json` (podman loads every `*.json` in its dir as a machine) and is
renamed over the target only when complete and on disk, so a crash leaves the old or the new
file, never a mix.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from podman_emu.errors import MachineBusy

TEMP_MARKER = ".podman-emu-tmp"
LOCK_WAIT_S = 10.0


def temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}{TEMP_MARKER}")


def fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(target: Path, data: bytes, *, mode: int | None = None) -> None:
    """Replace `target` with `data`. Without an explicit mode, the existing file's mode and
    owner are kept, so a rewrite never changes who can read the file."""
    uid = gid = -1
    if mode is None:
        try:
            info = target.stat()
            mode, uid, gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
        except FileNotFoundError:
            mode = 0o644  # what podman's own writer uses
    temporary = temp_name(target)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            if os.geteuid() == 0 and uid >= 0:
                os.fchown(fd, uid, gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_dir(target.parent)


def write_private(target: Path, data: bytes) -> None:
    """Atomic write of one of podman-emu's own files, readable by the user only."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(target, data, mode=0o600)


def write_cache(target: Path, data: bytes) -> None:
    """Best effort: a cache that cannot be written only costs the next run a recomputation."""
    try:
        private_dir(target.parent)
        atomic_write(target, data, mode=0o600)
    except OSError:
        pass


def _acquire(fd: int, take: Callable[[int], None], what: str, where: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            take(fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise MachineBusy(
                f"{what} is locked by another process ({where}) and stayed locked for {wait_s:.0f} s",
                hint="Another podman or podman-emu command is working on this machine; wait for it to "
                "finish and run this again.",
            )
        time.sleep(0.05)


@contextlib.contextmanager
def locked(lock_path: Path, *, create: bool, what: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An fcntl write lock on the whole file: the POSIX record lock podman 4.7+ takes on
    NAME.lock (containers/storage lockfile), so podman and podman-emu exclude each other."""
    flags = os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        raise MachineBusy(f"cannot open lock file {lock_path}: {exc.strerror}") from None
    try:
        _acquire(fd, lambda handle: fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB), what, lock_path, wait_s)
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def dir_flock(directory: Path, *, what: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An exclusive flock on a directory: no lock file to leave behind or to race on deleting."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        _acquire(fd, lambda handle: fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB), what, directory, wait_s)
        yield
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create a directory that only the user can read (journals name every file of a machine)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def stale_temp_files(directory: Path) -> list[Path]:
    """Temp files an interrupted podman-emu left in `directory` (never `*.json`, never used)."""
    try:
        # The marker may sit inside the name: the disk copy streams into `<staged name>.XXXX.partial`.
        return sorted(p for p in directory.iterdir() if TEMP_MARKER in p.name)
    except OSError:
        return []


def remove_quietly(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
