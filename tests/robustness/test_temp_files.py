"""Temp files are not a door: whatever sits at a temp file's name beforehand (a symlink to a
file of someone else, a dangling link, a FIFO), podman-emu creates its own new file, exclusively
and without following links, and never writes to, truncates or chmods anything else.

The temp names carry the pid, which is predictable; convert runs in this process here, so the
names planted are exactly the ones it will use.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podman_emu.fsutil import temp_name
from robustness.harness import Sandbox, assert_success, invoke
from testing.oracles import TEMP_MARKER

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"
PRECIOUS = b"someone else's file\n"
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "max_examples": 12,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}


def _temp_names(box: Sandbox) -> dict[str, Path]:
    vars_file = box.data_dir / f"{MACHINE}_ovmf_vars.fd"
    disk = box.data_dir / f"{MACHINE}_aarch64.qcow2"
    return {
        "vars": temp_name(vars_file),
        "disk": temp_name(disk),
        "disk copy": temp_name(temp_name(disk)),
        "config": temp_name(box.config(MACHINE)),
    }


def _link_to_victim(path: Path, victim: Path) -> None:
    path.symlink_to(victim)


def _dangling(path: Path, victim: Path) -> None:
    path.symlink_to(victim.with_name("created-through-a-link"))


def _fifo(path: Path, victim: Path) -> None:
    os.mkfifo(path)


PLANTS: dict[str, Callable[[Path, Path], None]] = {
    "symlink to a file": _link_to_victim,
    "dangling symlink": _dangling,
    "fifo": _fifo,
}


@given(
    planted=st.dictionaries(
        st.sampled_from(["vars", "disk", "disk copy", "config"]), st.sampled_from(sorted(PLANTS)), min_size=1
    )
)
@settings(**SETTINGS)
def test_planted_temp_names_are_never_followed(warm: Sandbox, aarch64_disk: Path, planted: dict[str, str]) -> None:
    box = Sandbox.create()
    try:
        box.seed_cache(warm)
        config = box.install(FIXTURE, name=MACHINE)
        victim = box.root / "victim.txt"
        victim.write_bytes(PRECIOUS)
        victim.chmod(0o600)
        names = _temp_names(box)
        for where, kind in planted.items():
            PLANTS[kind](names[where], victim)
        assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
        assert victim.read_bytes() == PRECIOUS, f"{planted}: the victim was written"
        assert stat.S_IMODE(victim.stat().st_mode) == 0o600, f"{planted}: the victim was chmodded"
        assert not victim.with_name("created-through-a-link").exists(), f"{planted}: a file was made through a link"
        leftovers = [p.name for p in box.data_dir.iterdir() if TEMP_MARKER in p.name]
        leftovers += [p.name for p in box.config_dir.iterdir() if TEMP_MARKER in p.name]
        assert not leftovers, f"{planted}: temp names left behind: {leftovers}"
        for name in ("_ovmf_vars.fd", "_aarch64.qcow2"):
            made = box.data_dir / f"{MACHINE}{name}"
            assert made.is_file() and not made.is_symlink(), made
        assert config.is_file() and not config.is_symlink()
    finally:
        box.remove()
