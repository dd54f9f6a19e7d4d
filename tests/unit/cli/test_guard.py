"""The one error boundary (cli/guard.py) and the declared fast path, through real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podman_emu.cli import FAST_COMMANDS
from testing.fixtures import REPO
from testing.podman_home import Sandbox

TYPER_PATH = (
    "import sys\n"
    "from podman_emu.cli import _run_typer\n"
    "from podman_emu.cli.guard import guarded\n"
    "arguments = sys.argv[1:]\n"
    "guarded(lambda: _run_typer(arguments, '--json' in arguments), as_json='--json' in arguments)\n"
)
MODULES_AT_EXIT = (
    "import atexit, os, sys\n"
    "atexit.register(lambda: open(os.environ['MODULES_OUT'], 'w').write(' '.join(sorted(sys.modules))))\n"
)


def run_python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **env},
        check=False,
    )


def fast_path(*args: str, env: dict[str, str], patch: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{patch}\nsys.argv = ['podman-emu', *sys.argv[1:]]\nfrom podman_emu.cli import main\nmain()\n"
    return run_python(code, *args, env=env)


def typer_path(*args: str, env: dict[str, str], patch: str = "") -> subprocess.CompletedProcess[str]:
    return run_python(f"{patch}\n{TYPER_PATH}", *args, env=env)


@pytest.fixture
def machines(podman_home: Sandbox) -> dict[str, str]:
    podman_home.install("podman-4.9-linux-amd64.json", "alpha")
    podman_home.install("podman-3.4-darwin-amd64.json", "b")
    (podman_home.config_dir / "junk.json").write_text("{")
    return podman_home.env()


@pytest.mark.parametrize("argv", sorted(FAST_COMMANDS), ids=" ".join)
def test_the_fast_path_gives_what_the_typer_path_gives(machines: dict[str, str], argv: tuple[str, ...]) -> None:
    fast = fast_path(*argv, env=machines)
    slow = typer_path(*argv, env=machines)
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert fast.returncode == 0 and "alpha" in fast.stdout and "not valid JSON" in fast.stdout


@pytest.mark.parametrize("argv", sorted(FAST_COMMANDS), ids=" ".join)
def test_a_warm_fast_path_imports_neither_typer_nor_pydantic_nor_rich(
    machines: dict[str, str], argv: tuple[str, ...], tmp_path: Path
) -> None:
    assert fast_path(*argv, env=machines).returncode == 0  # validates, and fills the cache
    out = tmp_path / "modules"
    result = fast_path(*argv, env=machines, patch=MODULES_AT_EXIT.replace("os.environ['MODULES_OUT']", repr(str(out))))
    assert result.returncode == 0, result.stderr
    top_level = {name.split(".")[0] for name in out.read_text().split()}
    assert not top_level & {"typer", "click", "pydantic", "rich"}, sorted(top_level)


PATCH_LIST = (
    "import podman_emu.report.inventory as inventory\ndef broken(): raise {}\ninventory.list_machines = broken\n"
)
BOOM = PATCH_LIST.format("RuntimeError('disk on fire')")
INTERRUPT = PATCH_LIST.format("KeyboardInterrupt")
FULL = PATCH_LIST.format("OSError(28, 'No space left on device', '/full/fs/file')")


@pytest.mark.parametrize("path", [fast_path, typer_path], ids=["fast", "typer"])
def test_an_io_failure_anywhere_is_an_error_naming_the_path(machines: dict[str, str], path: object) -> None:
    """A file-system failure no command anticipated is still the environment's, not a bug."""
    result = path("list", env=machines, patch=FULL)  # type: ignore[operator]
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert "could not use /full/fs/file: no space left on device" in result.stderr
    assert "df -h /full/fs" in result.stderr


@pytest.mark.parametrize("path", [fast_path, typer_path], ids=["fast", "typer"])
def test_an_unexpected_error_is_one_line_exit_3_and_a_log(machines: dict[str, str], path: object) -> None:
    result = path("list", env=machines, patch=BOOM)  # type: ignore[operator]
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "internal error: RuntimeError: disk on fire" in result.stderr
    log = Path(machines["PODMAN_EMU_STATE_DIR"]) / "podman-emu.log"
    assert str(log) in result.stderr
    assert "Traceback" in log.read_text() and "disk on fire" in log.read_text()


@pytest.mark.parametrize("path", [fast_path, typer_path], ids=["fast", "typer"])
def test_under_json_an_error_is_a_json_envelope(machines: dict[str, str], path: object) -> None:
    result = path("list", "--json", env=machines, patch=BOOM)  # type: ignore[operator]
    envelope = json.loads(result.stdout)
    assert envelope["schema"] == 1 and envelope["ok"] is False
    assert envelope["error"]["code"] == "internal-error" and "disk on fire" in envelope["error"]["message"]
    refused = typer_path("inspect", "nope", "--json", env=machines)
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["code"] == "machine-not-found"
    assert "Error: no machine config" in refused.stderr
    usage = typer_path("convert", "--json", "--bogus", env=machines)
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"]["code"] == "usage"


@pytest.mark.parametrize("path", [fast_path, typer_path], ids=["fast", "typer"])
def test_ctrl_c_is_one_line_and_exit_130(machines: dict[str, str], path: object) -> None:
    result = path("list", env=machines, patch=INTERRUPT)  # type: ignore[operator]
    assert result.returncode == 130
    assert result.stderr.startswith("Error: interrupted") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("argv", [("list",), ("list", "--json"), ("doctor", "--json")], ids=" ".join)
def test_a_reader_that_left_ends_the_command_quietly(machines: dict[str, str], argv: tuple[str, ...]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        result = subprocess.run(
            [sys.executable, "-m", "podman_emu", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, **machines},
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 0
