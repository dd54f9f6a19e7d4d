"""I/O failures are errors, not internal errors, and leave nothing behind.

Real failures, not mocks: podman's config, data and podman-emu's state dirs are small tmpfs mounts
(ENOSPC) or remounted read-only (EROFS). Every case must exit 1 with a message naming the path and
what failed, no traceback or "internal error", and leave the sandbox as it was (no staged copy of
the disk, no journal). A revert that fails after rewriting the config says exactly that and how to
finish, and the next revert finishes it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from robustness.harness import (
    TEMP_MARKER,
    Entry,
    Sandbox,
    assert_clean_refusal,
    assert_success,
    diff_snapshots,
    invoke,
    needs_root,
    snapshot,
)
from testing.fixtures import runs_aarch64

# A podman 4.9 config and the one the real podman 5.4.2 wrote (one line, no stored command).
FIXTURES = ("podman-4.9-linux-amd64.json", "podman-5.4.2-linux-amd64-qemu.json")
MACHINE = "iofail"
VARS_MIB = 64

pytestmark = needs_root


def _mount(target: Path, size: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(target)], check=True)


def _remount(target: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(target)], check=True)


def _fill(directory: Path) -> None:
    """Leave no free byte on the file system holding `directory`."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Mounts:
    box: Sandbox
    points: list[Path]

    def add(self, target: Path, size: str = "200m") -> Path:
        _mount(target, size)
        self.points.append(target)
        return target


@pytest.fixture
def mounts(box: Sandbox) -> Iterator[Mounts]:
    made = Mounts(box, [])
    try:
        yield made
    finally:
        for point in reversed(made.points):
            subprocess.run(["umount", "-l", str(point)], check=False)


def _state(box: Sandbox) -> dict[str, Entry]:
    return snapshot(box.root, ignore=(box.cache_dir,))


def _leftovers(box: Sandbox) -> list[Path]:
    return [
        p for p in box.root.rglob("*") if TEMP_MARKER in p.name or p.name.endswith(("_ovmf_vars.fd", "_aarch64.qcow2"))
    ]


Setup = Callable[[Mounts], None]


def _data_dir_of_size(size: str) -> Setup:
    def setup(mounts: Mounts) -> None:
        mounts.add(mounts.box.data_dir, size)

    return setup


def _read_only(which: str) -> Setup:
    def setup(mounts: Mounts) -> None:
        _remount(getattr(mounts.box, which), "ro")

    return setup


def _full(which: str) -> Setup:
    def setup(mounts: Mounts) -> None:
        _fill(getattr(mounts.box, which))

    return setup


CONVERT_CASES: dict[str, tuple[str | None, str, Setup, str, str]] = {
    # name: (dir mounted before install, its size, what breaks it, the path named, what failed)
    "vars on a full data dir": (None, "", _data_dir_of_size("1m"), "_ovmf_vars.fd", "no space left"),
    "disk on a full data dir": (
        None,
        "",
        _data_dir_of_size(f"{VARS_MIB * 1024 + 64}k"),
        "_aarch64.qcow2",
        "no space left",
    ),
    "read-only config dir": ("config_dir", "1m", _read_only("config_dir"), f"{MACHINE}.json", "read-only"),
    "full config dir": ("config_dir", "64k", _full("config_dir"), f"{MACHINE}.json", "no space left"),
    "read-only state dir": ("state_dir", "1m", _read_only("state_dir"), "state", "read-only"),
}


@pytest.fixture(params=FIXTURES, ids=("podman4", "podman5"))
def fixture(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("case", sorted(CONVERT_CASES))
def test_convert_io_failure_is_an_error_and_leaves_nothing(
    box: Sandbox, mounts: Mounts, aarch64_disk: Path, case: str, fixture: str
) -> None:
    mounted, size, breakage, named, failed = CONVERT_CASES[case]
    if mounted is not None:
        mounts.add(getattr(box, mounted), size)
    config = box.install(fixture, name=MACHINE)
    breakage(mounts)
    before = _state(box)
    result = invoke(box, "convert", MACHINE, "--image", str(aarch64_disk))
    print(f"{case}: {result.stderr}")
    assert_clean_refusal(result, named, failed)
    error_line = result.stderr.split("\n")[0].lower()
    assert "aavmf" not in error_line and str(aarch64_disk) not in error_line, result.stderr
    assert not diff_snapshots(before, _state(box), own_dirs=box.state_dir), result.output
    assert not _leftovers(box)
    assert not runs_aarch64(json.loads(config.read_bytes()))


@pytest.mark.parametrize("broken", ["config_dir", "state_dir"])
def test_a_revert_that_cannot_start_changes_nothing(
    box: Sandbox, mounts: Mounts, aarch64_disk: Path, broken: str, fixture: str
) -> None:
    mounts.add(getattr(box, broken), "200m")
    config = box.install(fixture, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    _remount(getattr(box, broken), "ro")
    before = _state(box)
    result = invoke(box, "revert", MACHINE)
    assert_clean_refusal(result, "read-only", "Nothing was changed")
    # Not strict: a journal put back with the same bytes is no change.
    assert not diff_snapshots(before, _state(box)), result.output
    _remount(getattr(box, broken), "rw")
    assert runs_aarch64(json.loads(config.read_bytes()))
    assert_success(invoke(box, "revert", MACHINE))


def test_a_revert_that_fails_part_way_says_what_was_done(
    box: Sandbox, mounts: Mounts, aarch64_disk: Path, fixture: str
) -> None:
    data = mounts.add(box.data_dir, "200m")
    config = box.install(fixture, name=MACHINE)
    original = config.read_bytes()
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    _remount(data, "ro")
    result = invoke(box, "revert", MACHINE)
    print(result.stderr)
    assert_clean_refusal(result, "read-only", f"podman-emu revert {MACHINE}", "_ovmf_vars.fd")
    assert "no machine file was changed" not in result.output.lower()
    assert "nothing was changed" not in result.output.lower()
    assert "config was reverted" in result.output.lower(), result.output
    assert config.read_bytes() == original
    _remount(data, "rw")
    assert_success(invoke(box, "revert", MACHINE))
    assert config.read_bytes() == original
    # A plain revert keeps the aarch64 disk, as it says.
    assert [p.name for p in _leftovers(box)] == [f"{MACHINE}_aarch64.qcow2"]
    assert not list((box.state_dir / "journals").glob("*.json"))
