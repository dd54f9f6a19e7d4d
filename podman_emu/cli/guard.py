"""The CLI's one error boundary, shared by every entry path: the `list` fast path, every typer
command, and whatever happens before or around them.

- a PodmanEmuError (an expected refusal) -> `Error:` and `Hint:` on stderr, its exit code;
- Ctrl-C -> one line, ExitCode.INTERRUPTED;
- a closed pipe (`podman-emu list | head -1`) -> quiet, ExitCode.OK: the reader left;
- any other OSError (a full, read-only or forbidden file system) -> an `io-failed` refusal naming
  the file, exit 1;
- anything else is a bug -> one line naming a log file that holds the traceback,
  ExitCode.INTERNAL (pre-commit's error_handler does the same with its exit code 3).

Under `--json` each error is also a JSON envelope on stdout, so a script never parses text. A
traceback never reaches the terminal. Imports stay light: the fast path goes through here.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from typing import NoReturn, TypeVar

from podman_emu import __version__, fsutil, paths
from podman_emu.cli import render
from podman_emu.errors import ExitCode, IoFailed, PodmanEmuError

T = TypeVar("T")


def guarded(action: Callable[[], T], *, as_json: bool = False) -> T:
    """Run `action` behind the boundary. Returns its result; every failure ends the process."""
    try:
        result = action()
        # Output still buffered would otherwise meet a closed pipe at exit, outside the boundary.
        sys.stdout.flush()
        return result
    except SystemExit:
        raise
    except PodmanEmuError as error:
        _refuse(error.code, error.message, error.hint, as_json=as_json, exit_code=error.exit_code)
    except KeyboardInterrupt:
        _refuse(
            "interrupted",
            "interrupted; nothing was changed unless the output said so",
            None,
            as_json=as_json,
            exit_code=ExitCode.INTERRUPTED,
        )
    except BrokenPipeError:
        _quiet_stdout()
        raise SystemExit(ExitCode.OK) from None
    except OSError as exc:
        # A full, read-only or forbidden file system that no step anticipated is still the
        # environment's doing, not a bug: say which file and what to do.
        failure = IoFailed.of(
            exc,
            "use",
            outcome="podman-emu stopped at this step. Its writes are atomic and journaled: "
            "`podman-emu list` shows where each machine stands.",
        )
        _refuse(failure.code, failure.message, failure.hint, as_json=as_json, exit_code=failure.exit_code)
    except Exception as exc:
        _internal_error(exc, as_json=as_json)


def _refuse(code: str, message: str, hint: str | None, *, as_json: bool, exit_code: int) -> NoReturn:
    try:
        if as_json:
            render.error_envelope(code, message, hint)
        render.error(message, hint)
    except BrokenPipeError:
        _quiet_stdout()
    raise SystemExit(exit_code) from None


def _quiet_stdout() -> None:
    # The interpreter flushes stdout once more at exit; into /dev/null that cannot fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _internal_error(exc: Exception, *, as_json: bool) -> NoReturn:
    summary = f"{type(exc).__name__}: {exc}"
    log = paths.internal_error_log()
    report = (
        f"podman-emu {__version__}, Python {platform.python_version()}, {platform.platform()}\n"
        f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}  argv: {sys.argv!r}\n\n"
        + "".join(traceback.format_exception(exc))
    )
    try:
        fsutil.write_private(log, report.encode("utf-8", errors="replace"))
        where = f"the traceback is in {log}"
    except OSError as write_error:
        where = f"the traceback could not be saved to {log}: {write_error.strerror}"
    message = f"internal error: {summary} (a bug in podman-emu; {where})"
    hint = "Nothing was changed unless the output said so. Please report it with that file."
    try:
        if as_json:
            render.error_envelope("internal-error", message, hint)
        render.one_line_error(message)
    except BrokenPipeError:
        _quiet_stdout()
    raise SystemExit(ExitCode.INTERNAL) from None
