"""Directories that existed keep their modes; a state dir others can write into is refused.

PODMAN_EMU_CACHE_DIR and PODMAN_EMU_STATE_DIR may point at a directory that exists already: a
shared one (/tmp-like, mode 1777) or one the user made with ordinary bits. podman-emu makes the
directories it creates private (0700) and leaves every other directory's mode alone. It keeps
journals only where no one else can add or replace files, and says why when it refuses; a cache
in a shared directory is simply not used.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from robustness.harness import Sandbox, assert_clean_refusal, assert_success, invoke, run_cli

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"
READ_COMMANDS = (["list"], ["list", "--json"], ["inspect", MACHINE], ["status", MACHINE], ["doctor", MACHINE])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _shared(path: Path, mode: int = 0o1777) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    return path


def test_a_shared_cache_dir_keeps_its_mode_and_is_not_used(box: Sandbox, aarch64_disk: Path) -> None:
    box.install(FIXTURE, name=MACHINE)
    cache = _shared(box.root / "shared-cache")
    env = {"PODMAN_EMU_CACHE_DIR": str(cache)}
    for command in (*READ_COMMANDS, ["convert", MACHINE, "--image", str(aarch64_disk), "--dry-run"]):
        result = run_cli(box, *command, env=env, timeout=60)
        assert "Traceback" not in result.output, result.output
        assert _mode(cache) == 0o1777, f"`{' '.join(command)}` changed the mode of {cache} to {oct(_mode(cache))}"
    assert_success(run_cli(box, "convert", MACHINE, "--image", str(aarch64_disk), env=env, timeout=60))
    assert _mode(cache) == 0o1777
    # Nothing of podman-emu's sits where other users could read or replace it.
    assert sorted(p.name for p in cache.iterdir()) == []


@pytest.mark.parametrize("mode", [0o1777, 0o777, 0o775], ids=["1777", "0777", "0775"])
def test_a_state_dir_others_can_write_into_is_refused(box: Sandbox, aarch64_disk: Path, mode: int) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    before = config.read_bytes()
    state = _shared(box.state_dir, mode)
    for command in (["convert", MACHINE, "--image", str(aarch64_disk)], ["list"], ["inspect", MACHINE]):
        result = invoke(box, *command)
        assert_clean_refusal(result, str(state), "other users")
        assert "PODMAN_EMU_STATE_DIR" in result.stderr, result.stderr
        assert _mode(state) == mode and config.read_bytes() == before
        assert sorted(p.name for p in state.iterdir()) == []


def test_a_state_dir_with_ordinary_bits_is_used_as_it_is(box: Sandbox, aarch64_disk: Path) -> None:
    box.install(FIXTURE, name=MACHINE)
    state = _shared(box.state_dir, 0o755)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    assert _mode(state) == 0o755
    # What podman-emu created inside it is private.
    assert _mode(state / "journals") == 0o700
    (journal,) = (state / "journals").glob("*.json")
    assert _mode(journal) == 0o600
    for command in READ_COMMANDS:
        run_cli(box, *command, timeout=60)
        assert _mode(state) == 0o755
