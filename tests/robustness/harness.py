"""Shared pieces of the robustness suite: switches and markers, journal readers, and the shared
helpers from `testing` under the names these tests use.

The oracles these tests judge the core with (Go-style escaping, podman's byte format, tree
snapshots, the temp-file marker) come from testing.oracles, which is written from podman's and
Go's rules and never imports podman_emu.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from testing.cli import (
    CliResult,
    assert_clean_refusal,
    assert_success,
    base_env,
    invoke,
    podman_emu_argv,
    run_cli,
)
from testing.fixtures import FIXTURES, REPO, fixture_files, image_path_of, manifest
from testing.oracles import TEMP_MARKER, Entry, diff_snapshots, go_string_body, podman_bytes, snapshot
from testing.podman_home import Sandbox, sandbox
from testing.qemu import make_aarch64_disk, qmp_accepts, running_qemu, wait_for
from testing.users import PODMAN, nobody, own_by, run_podman

__all__ = [
    "FIXTURES",
    "PODMAN",
    "REPO",
    "TEMP_MARKER",
    "CliResult",
    "Entry",
    "Sandbox",
    "assert_clean_refusal",
    "assert_success",
    "base_env",
    "diff_snapshots",
    "fixture_files",
    "go_string_body",
    "image_path_of",
    "invoke",
    "make_aarch64_disk",
    "manifest",
    "nobody",
    "own_by",
    "podman_bytes",
    "podman_emu_argv",
    "qmp_accepts",
    "run_cli",
    "run_podman",
    "running_qemu",
    "sandbox",
    "snapshot",
    "wait_for",
]

QEMU_AARCH64 = shutil.which("qemu-system-aarch64")
QEMU_IMG = shutil.which("qemu-img")

LONG = os.environ.get("PODMAN_EMU_LONG") == "1"
# Long runs are opt-in: the default run must stay under a minute on a 2-core machine.
long_run = pytest.mark.skipif(not LONG, reason="long robustness run: set PODMAN_EMU_LONG=1")

needs_qemu = pytest.mark.skipif(
    QEMU_AARCH64 is None or QEMU_IMG is None,
    reason="qemu-system-aarch64 and qemu-img are needed (apt-get install qemu-system-arm qemu-utils)",
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")

# Runs that kill or restore hundreds of times use a tmpfs: same rename/unlink/fsync semantics
# (a SIGKILL does not lose the page cache either), without waiting on a disk shared with other
# jobs. The rest of the suite runs on /tmp's real file system.
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"


def json_names(directory: Path) -> list[str]:
    """What podman 4.x would load as machines: every top-level *.json."""
    return sorted(entry.name for entry in directory.iterdir() if entry.name.endswith(".json"))


def journal_files(box: Sandbox) -> list[Path]:
    directory = box.state_dir / "journals"
    return sorted(directory.glob("*.json")) if directory.exists() else []


def read_journal(box: Sandbox) -> dict[str, Any] | None:
    files = journal_files(box)
    assert len(files) <= 1, f"more than one journal: {files}"
    return json.loads(files[0].read_bytes()) if files else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
