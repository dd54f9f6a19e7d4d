"""Kill podman-emu with SIGKILL right before its N-th file-system mutation.

Every call that can change a file (open for writing, write, pwrite, truncate, fsync, rename,
unlink, mkdir, chmod, chown, and starting a subprocess such as qemu-img) is a numbered step. A
dry run counts the steps; then one forked process per step runs the real CLI and SIGKILLs itself
just before that step, so every point between two writes is hit exactly once. A "torn" variant
writes half of a write's buffer before dying, which is what a crash in the middle of write(2)
leaves behind.

This lives in the tests, not in podman_emu: the hooks wrap the os module in the child process
only, so the code under test is exactly the code users run.
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_MUTATORS = (
    "ftruncate",
    "truncate",
    "fsync",
    "fdatasync",
    "replace",
    "rename",
    "unlink",
    "remove",
    "rmdir",
    "mkdir",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "link",
    "symlink",
    "utime",
)


def _label(args: Sequence[Any]) -> str:
    parts = []
    for arg in args[:2]:
        if isinstance(arg, (str, os.PathLike)):
            parts.append(os.path.basename(os.fspath(arg)))
        elif isinstance(arg, int):
            parts.append(f"fd{arg}")
    return " ".join(parts)


class CrashPoints:
    def __init__(self, kill_at: int | None, *, torn: bool, record_fd: int | None) -> None:
        self.kill_at = kill_at
        self.torn = torn
        self.record_fd = record_fd
        self.count = 0
        self._write = os.write

    def hit(self, label: str, partial: Callable[[], object] | None = None) -> None:
        self.count += 1
        if self.record_fd is not None:
            kind = "w" if partial is not None else "-"
            self._write(self.record_fd, f"{self.count}\t{kind}\t{label}\n".encode())
        if self.count == self.kill_at:
            if self.torn and partial is not None:
                partial()
            os.kill(os.getpid(), signal.SIGKILL)

    def install(self) -> None:
        real_open = os.open
        real_write = os.write
        real_pwrite = os.pwrite

        def hooked_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if flags & _WRITE_FLAGS:
                self.hit(f"open {_label([path])}")
            return real_open(path, flags, *args, **kwargs)

        def hooked_write(fd: int, data: Any) -> int:
            view = memoryview(data)
            self.hit(f"write fd{fd} {len(view)}B", partial=lambda: real_write(fd, view[: len(view) // 2]))
            return real_write(fd, data)

        def hooked_pwrite(fd: int, data: Any, offset: int) -> int:
            view = memoryview(data)
            self.hit(f"pwrite fd{fd} {len(view)}B", partial=lambda: real_pwrite(fd, view[: len(view) // 2], offset))
            return real_pwrite(fd, data, offset)

        os.open = hooked_open
        os.write = hooked_write
        os.pwrite = hooked_pwrite
        for name in _MUTATORS:
            real = getattr(os, name)

            def hooked(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                self.hit(f"{_name} {_label(args)}")
                return _real(*args, **kwargs)

            setattr(os, name, hooked)

        real_builtin_open = builtins.open

        def hooked_builtin_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if any(flag in mode for flag in "wax+"):
                self.hit(f"open({mode}) {_label([file])}")
            return real_builtin_open(file, mode, *args, **kwargs)

        builtins.open = hooked_builtin_open
        io.open = hooked_builtin_open  # pathlib calls io.open

        real_popen = subprocess.Popen
        points = self

        class HookedPopen(real_popen):  # type: ignore[misc, valid-type]
            def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
                argv = [os.path.basename(str(a)) for a in (args if isinstance(args, (list, tuple)) else [args])]
                points.hit("exec " + " ".join(argv[:2]))
                super().__init__(args, *rest, **kwargs)

        subprocess.Popen = HookedPopen  # type: ignore[misc]


@dataclass(frozen=True)
class ChildOutcome:
    killed: bool
    exit_code: int | None
    log: str


def run_child(
    args: Sequence[str],
    env: dict[str, str],
    cwd: str,
    log_path: str,
    *,
    kill_at: int | None = None,
    torn: bool = False,
    record_path: str | None = None,
    timeout: float = 120,
) -> ChildOutcome:
    """Fork; in the child run `podman-emu ARGS` through the real CLI with the crash points armed.
    The child never returns into the test process: it leaves through os._exit or SIGKILL."""
    from podman_emu.cli.app import app

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 70
        try:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdout = open(1, "w", closefd=False, encoding="utf-8")  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False, encoding="utf-8")  # noqa: SIM115
            record_fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if record_path else None
            CrashPoints(kill_at, torn=torn, record_fd=record_fd).install()
            try:
                app(args=list(args), prog_name="podman-emu")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            with open(log_path, "a") as handle:
                handle.write(traceback.format_exc())
            code = 71
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    deadline_status = _wait(pid, timeout)
    with open(log_path, encoding="utf-8", errors="replace") as handle:
        log = handle.read()
    if os.WIFSIGNALED(deadline_status):
        return ChildOutcome(os.WTERMSIG(deadline_status) == signal.SIGKILL, None, log)
    return ChildOutcome(False, os.WEXITSTATUS(deadline_status), log)


def _wait(pid: int, timeout: float) -> int:
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"podman-emu child {pid} ran longer than {timeout} s")
        time.sleep(0.002)


def count_steps(args: Sequence[str], env: dict[str, str], cwd: str, log_path: str, record_path: str) -> list[str]:
    """Run once unarmed and return the list of steps (one line each: index, kind, label)."""
    outcome = run_child(args, env, cwd, log_path, record_path=record_path)
    assert not outcome.killed and outcome.exit_code == 0, f"unarmed run failed ({outcome.exit_code}):\n{outcome.log}"
    with open(record_path) as handle:
        return handle.read().splitlines()
