"""Careful writes: one atomic-replace primitive, private directories, locks with timeouts.

Every file podman-emu writes in full (podman's config, its journal, the caches, the images it
places) goes through `replace_atomically`: a temp file beside the target whose name starts with a
dot, carries TEMP_MARKER and never ends in `.json` (podman loads every `*.json` in its dir as a
machine), written, fsynced and renamed over the target only when complete, then the directory
fsynced. A crash leaves the old or the new file, never a mix, plus at most a temp file that
`doctor` names.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from podman_emu.errors import MachineBusy, PodmanEmuError, UnsafeDirectory

TEMP_MARKER = ".podman-emu-tmp"
LOCK_WAIT_S = 10.0
# A mode podman's own atomic writer uses for a config (ioutils.NewAtomicFileWriterWithOpts, 0644).
NEW_FILE_MODE = 0o644


class NotRegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file was expected."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"it is {kind}, not a regular file", str(path))
        self.kind = kind


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words for a message."""
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular(path: Path | str, *, follow_symlinks: bool = True) -> int:
    """A read-only descriptor of the regular file at `path`, or NotRegularFile. Opening a FIFO for
    reading blocks until a writer comes (for a FIFO nobody writes: forever), so the open is
    non-blocking and the type is checked on the descriptor itself, which no later swap changes."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(path, file_kind(mode))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path | str, *, limit: int | None = None) -> bytes:
    """The bytes of the regular file at `path` (at most `limit`), never blocking (open_regular)."""
    fd = open_regular(path)
    try:
        chunks = []
        remaining = -1 if limit is None else limit
        while remaining != 0:
            chunk = os.read(fd, 1 << 20 if remaining < 0 else min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            if remaining > 0:
                remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def temp_name(target: Path) -> Path:
    """The temp name this process uses beside `target`: the same on every call, so a failed step
    can remove what it left without having been told the name."""
    return target.with_name(f".{target.name}.{os.getpid()}{TEMP_MARKER}")


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable; not every platform lets a directory be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PendingFile:
    """The temp file of a replacement in progress, open for writing."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]

    def sync(self) -> None:
        """fsync now, so other processes (qemu-img) see the file complete before the rename."""
        os.fsync(self.fd)


def create_exclusive(path: Path) -> int:
    """A new, private (0600) file at `path`, open for writing. Temp names are predictable (they
    carry the pid), so whatever already sits there is never opened: O_EXCL with O_NOFOLLOW makes
    the kernel refuse a planted symlink or FIFO, which is then removed (the entry, never what a
    link points at) before one more exclusive try."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o600)
    except FileExistsError:
        # Only a dead process with this pid can have left it (each temp name carries the pid, and
        # this process does one replacement of a target at a time): it is litter, not a writer.
        os.unlink(path)
        return os.open(path, flags, 0o600)


def chmod_no_follow(path: Path, mode: int) -> None:
    """chmod the file at `path` itself: a symlink put there in between fails the open instead of
    handing its target's mode over (Linux has no lchmod)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replace_atomically(
    target: Path, *, mode: int | None = None, before_rename: Callable[[], None] | None = None
) -> Iterator[PendingFile]:
    """Yield a temp file beside `target`; when the block completes, the file is fsynced and
    renamed over `target`, and the directory is fsynced. The file has `mode` or, by default, the
    mode and owner `target` has now, so a rewrite never changes who can read it. If the block or
    `before_rename` raises, the temp file is removed and `target` is untouched.

    `before_rename` runs after the data is on disk, right before the rename: the last moment to
    notice that someone else changed `target` (podman 4.3 writes its config in place, without a
    lock), with nothing slow left between the check and the rename."""
    uid = gid = -1
    if mode is None:
        try:
            info = target.stat()
            mode, uid, gid = info.st_mode & 0o7777, info.st_uid, info.st_gid
        except FileNotFoundError:
            mode = NEW_FILE_MODE
    temporary = temp_name(target)
    fd = create_exclusive(temporary)
    try:
        try:
            os.fchmod(fd, mode)
            if os.geteuid() == 0 and uid >= 0:
                os.fchown(fd, uid, gid)
            yield PendingFile(fd, temporary)
            # Always, even after sync(): a step before the rename (qemu-img resize) may have
            # written to the file since.
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_rename is not None:
            before_rename()
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_dir(target.parent)


def atomic_write(
    target: Path, data: bytes, *, mode: int | None = None, before_rename: Callable[[], None] | None = None
) -> None:
    """Replace `target` with `data` (see replace_atomically)."""
    with replace_atomically(target, mode=mode, before_rename=before_rename) as output:
        output.write(data)


def shared_with_others(directory: Path) -> str | None:
    """Why users other than this one could add, remove or replace entries in `directory` (so
    plant a journal, or swap a file for a link), or None when they cannot or it does not exist."""
    try:
        info = os.stat(directory)
    except OSError:
        return None
    if info.st_uid != os.geteuid():
        return f"it belongs to uid {info.st_uid}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"its mode {stat.S_IMODE(info.st_mode):04o} lets other users create and replace files in it"
    return None


_OWN_DIRS_HINT = (
    "Point PODMAN_EMU_STATE_DIR (journals, console logs) and PODMAN_EMU_CACHE_DIR (images) at directories "
    "only you can write to, or unset them for the defaults; if the directory is yours alone, `chmod go-w` it."
)


def refuse_shared(*directories: Path) -> None:
    """UnsafeDirectory for the first of `directories` that others can write into (see
    shared_with_others); directories that do not exist yet pass."""
    for directory in directories:
        reason = shared_with_others(directory)
        if reason is not None:
            raise UnsafeDirectory(
                f"podman-emu does not keep its files in {directory}: {reason}, so other users could "
                "plant or replace them",
                hint=_OWN_DIRS_HINT,
            )


def private_dir(path: Path, *, root: Path | None = None) -> Path:
    """A directory of podman-emu's own. What it has to create (`path` and missing parents) is
    made 0700: journals name every file of a machine. A directory that existed keeps its mode
    (it may be shared, like /tmp), and `path` is refused when others can write into it; so is
    `root` (the state or cache dir `path` lies in), before anything is created inside it."""
    if root is not None:
        refuse_shared(root)
    missing = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        _make_private(directory)
    _make_private(path)
    refuse_shared(path)
    return path


def _make_private(directory: Path) -> None:
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return  # not ours to change
    directory.chmod(0o700)  # mkdir's mode is masked by the umask


def write_private(target: Path, data: bytes) -> None:
    """Atomic write of one of podman-emu's own files, readable by the user only."""
    private_dir(target.parent)
    atomic_write(target, data, mode=0o600)


def write_cache(target: Path, data: bytes) -> None:
    """Best effort: a cache that cannot be written (or only into a shared directory) only costs
    the next run a recomputation."""
    with contextlib.suppress(OSError, UnsafeDirectory):
        write_private(target, data)


def read_cache(target: Path) -> bytes | None:
    """A cache file's bytes; None when absent, unreadable, or in a directory others can write
    into (its content could be anyone's)."""
    if shared_with_others(target.parent) is not None:
        return None
    try:
        return read_regular(target)
    except OSError:
        return None


def _acquire(
    fd: int,
    take: Callable[[int], None],
    *,
    what: str,
    where: Path,
    wait_s: float,
    error: type[PodmanEmuError],
    hint: str,
    on_wait: Callable[[str], None] | None,
) -> None:
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            take(fd)
            return
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK):
                raise
        if time.monotonic() >= deadline:
            raise error(
                f"{what} is locked by another process ({where}) and stayed locked for {wait_s:.0f} s", hint=hint
            )
        if on_wait is not None and not told:
            on_wait(f"{what} is locked by another process ({where}); waiting up to {wait_s:.0f} s")
            told = True
        time.sleep(0.05)


_MACHINE_LOCK_HINT = (
    "Another podman or podman-emu command is working on this machine; wait for it to finish and run this again."
)


def _open_lock(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        raise MachineBusy(f"cannot open lock file {path}: {exc.strerror}") from None


@contextlib.contextmanager
def locked(lock_path: Path, *, create: bool, what: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """An fcntl write lock on the whole file: the POSIX record lock podman 4.7+ takes on
    NAME.lock (containers/storage lockfile), so podman and podman-emu exclude each other."""
    fd = _open_lock(lock_path, os.O_RDWR | (os.O_CREAT if create else 0))
    try:
        exclusive = fcntl.LOCK_EX | fcntl.LOCK_NB
        _acquire(
            fd,
            lambda handle: fcntl.lockf(handle, exclusive),
            what=what,
            where=lock_path,
            wait_s=wait_s,
            error=MachineBusy,
            hint=_MACHINE_LOCK_HINT,
            on_wait=None,
        )
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def flocked(
    path: Path,
    *,
    what: str,
    wait_s: float = LOCK_WAIT_S,
    create: bool = False,
    error: type[PodmanEmuError] = MachineBusy,
    hint: str = _MACHINE_LOCK_HINT,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """An exclusive flock on `path`: a directory (no lock file to leave behind or to race on
    deleting) or, with `create`, a lock file. `on_wait` hears once that the wait has begun."""
    fd = _open_lock(path, os.O_RDONLY | (os.O_CREAT if create else 0))
    try:
        exclusive = fcntl.LOCK_EX | fcntl.LOCK_NB
        _acquire(
            fd,
            lambda handle: fcntl.flock(handle, exclusive),
            what=what,
            where=path,
            wait_s=wait_s,
            error=error,
            hint=hint,
            on_wait=on_wait,
        )
        yield
    finally:
        os.close(fd)


def stale_temp_files(directory: Path) -> list[Path]:
    """Temp files an interrupted podman-emu left in `directory` (never `*.json`, never used)."""
    try:
        # The marker may sit inside the name: the disk is placed through a temp file of its own
        # staged (temp) name.
        return sorted(p for p in directory.iterdir() if TEMP_MARKER in p.name)
    except OSError:
        return []


def remove_quietly(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
