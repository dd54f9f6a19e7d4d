"""No command ever blocks on a file that is not a file.

A FIFO opened for reading blocks until a writer comes, which for a FIFO nobody writes is forever.
Every place podman-emu reads a path that a config, a user's option or a stray entry in its own
dirs can name gets a FIFO here: the pid files, the journals dir, `--image`, `--firmware`,
`--vars-template`, the console log and the caches. Each command runs as a real process with a
timeout: it must come back, with no traceback, whatever its verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from robustness.harness import CliResult, Sandbox, assert_success, invoke, read_journal, run_cli

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"
# A command that came back takes about a second (python start-up, a warm qemu probe); one that
# waits this long is blocked.
HANG_S = 20.0


def _returns(box: Sandbox, *args: str) -> CliResult:
    try:
        result = run_cli(box, *args, timeout=HANG_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`podman-emu {' '.join(args)}` did not return within {HANG_S:.0f} s")
    assert "Traceback" not in result.output, result.output
    assert "internal error" not in result.output, result.output
    return result


def _fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        path.unlink()
    os.mkfifo(path)


def _pid_files(config: Path) -> list[Path]:
    content = json.loads(config.read_bytes())
    return [Path(content[key]["Path"]) for key in ("PidFilePath", "VMPidFilePath")]


READ_COMMANDS = (["list"], ["list", "--json"], ["inspect", MACHINE], ["status", MACHINE], ["doctor", MACHINE])


def test_fifo_pid_files(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    for pid_file in _pid_files(config):
        _fifo(pid_file)
    for command in (*READ_COMMANDS, ["convert", MACHINE, "--image", str(aarch64_disk)], ["revert", MACHINE]):
        _returns(box, *command)


def _converted(box: Sandbox, disk: Path) -> Path:
    config = box.install(FIXTURE, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(disk)))
    return config


def test_fifo_in_the_journals_dir(box: Sandbox, aarch64_disk: Path) -> None:
    _converted(box, aarch64_disk)
    journals = box.state_dir / "journals"
    (journal,) = journals.glob("*.json")
    _fifo(journals / "stray-000000000000.json")
    for command in (*READ_COMMANDS, ["cleanup", "gone"], ["revert", MACHINE], ["logs", MACHINE]):
        _returns(box, *command)
    _fifo(journal)
    for command in (*READ_COMMANDS, ["revert", MACHINE], ["logs", MACHINE]):
        _returns(box, *command)


def test_fifo_console_log(box: Sandbox, aarch64_disk: Path) -> None:
    _converted(box, aarch64_disk)
    journal = read_journal(box)
    assert journal is not None
    log = Path(next(item["path"] for item in journal["created"] if item["role"] == "console"))
    _fifo(log)
    for command in (*READ_COMMANDS, ["logs", MACHINE], ["logs", MACHINE, "-n", "5"]):
        _returns(box, *command)
    log.unlink()
    _fifo(log.with_name(log.name + ".1"))
    for command in (["logs", MACHINE], ["logs", MACHINE, "-n", "5"], ["status", MACHINE]):
        _returns(box, *command)


OPTION_FIFOS: dict[str, Callable[[Path, Path], list[str]]] = {
    "--image": lambda fifo, disk: ["--image", str(fifo)],
    "--firmware": lambda fifo, disk: ["--image", str(disk), "--firmware", str(fifo)],
    "--vars-template": lambda fifo, disk: [
        "--image",
        str(disk),
        "--firmware",
        "/usr/share/AAVMF/AAVMF_CODE.fd",
        "--vars-template",
        str(fifo),
    ],
}


@pytest.mark.parametrize("option", sorted(OPTION_FIFOS))
@pytest.mark.parametrize("dry_run", [False, True], ids=["apply", "dry-run"])
def test_fifo_as_an_option(box: Sandbox, aarch64_disk: Path, option: str, dry_run: bool) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    before = config.read_bytes()
    fifo = box.cwd / "pipe"
    _fifo(fifo)
    result = _returns(box, "convert", MACHINE, *OPTION_FIFOS[option](fifo, aarch64_disk), *(["--dry-run"] * dry_run))
    assert result.exit_code in (1, 2), result.output
    assert "FIFO" in result.stderr or "pipe" in result.stderr, result.stderr
    assert config.read_bytes() == before


def test_fifo_caches(box: Sandbox) -> None:
    box.install(FIXTURE, name=MACHINE)
    for name in ("qemu-probes.json", "validated-configs.json"):
        _fifo(box.cache_dir / name)
    for command in READ_COMMANDS:
        _returns(box, *command)
