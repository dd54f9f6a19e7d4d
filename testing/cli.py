"""Running podman-emu as the tests need it: in this process through the real typer app (fast), or
as a real process exactly as a user starts it, optionally as another user; and the two verdicts
every suite asserts (a clean refusal, a success)."""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testing.fixtures import REPO
from testing.podman_home import Sandbox


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    crashed: BaseException | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


_COMMAND: Any = None


def invoke(box: Sandbox, *args: str) -> CliResult:
    """podman-emu's own CLI (the click command typer builds from `podman_emu.cli.app.app`), run in
    this process with the sandbox's environment and cwd. The command is built once: typer's
    CliRunner rebuilds it on every call, which would cost more than the commands themselves."""
    global _COMMAND
    if _COMMAND is None:
        from typer.main import get_command

        from podman_emu.cli.app import app

        _COMMAND = get_command(app)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    previous = os.getcwd()
    crashed: BaseException | None = None
    os.environ.pop("PODMAN_EMU_DEBUG", None)
    os.environ.update(box.env())
    os.chdir(box.cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                _COMMAND.main(args=list(args), prog_name="podman-emu", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception as exc:  # anything escaping the CLI is a finding, reported by the caller
                crashed, code = exc, 1
    finally:
        os.chdir(previous)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, stdout.getvalue(), stderr.getvalue(), crashed)


def base_env(box: Sandbox | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PODMAN_EMU_", "XDG_"))}
    # Python's own bytecode cache would otherwise show up as writes into the source tree.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if box is not None:
        env.update(box.env())
    return env


def podman_emu_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "podman_emu", *args]


def run_cli(
    box: Sandbox,
    *args: str,
    timeout: float = 120,
    as_user: pwd.struct_passwd | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    """podman-emu as a real process, as a user runs it (optionally as another user)."""
    full_env = base_env(box)
    full_env.update(env or {})
    kwargs: dict[str, Any] = {}
    if as_user is not None:
        kwargs.update(user=as_user.pw_uid, group=as_user.pw_gid, extra_groups=[])
    completed = subprocess.run(
        podman_emu_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=box.cwd,
        check=False,
        **kwargs,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def assert_clean_refusal(result: CliResult, *tokens: str, exit_codes: Sequence[int] = (1,)) -> None:
    """A refusal the way the issue demands it: the documented exit code, a message that names
    the problem, and no traceback or "internal error" fallback."""
    assert result.crashed is None, f"exception escaped the CLI: {result.crashed!r}"
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    assert result.exit_code in exit_codes, f"exit {result.exit_code}, wanted {exit_codes}:\n{result.output}"
    assert "Error: " in result.stderr, result.output
    for token in tokens:
        assert token in result.stderr, f"{token!r} not named in:\n{result.stderr}"


def assert_success(result: CliResult) -> None:
    assert result.crashed is None, f"exception escaped the CLI: {result.crashed!r}"
    assert result.exit_code == 0, result.output


def run_module(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m podman_emu ARGS` in this process's environment (a test's podman_home sets it),
    plus `env`: what a user in that environment runs."""
    full_env = {key: value for key, value in os.environ.items() if key != "PODMAN_EMU_DEBUG"}
    full_env.update(env or {})
    return subprocess.run(
        podman_emu_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
        check=False,
    )
