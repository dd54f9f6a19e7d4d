"""Session-wide pieces for the robustness suite: one aarch64 source disk and a warm qemu probe."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustness.harness import QEMU_AARCH64, QEMU_IMG, Sandbox, assert_success, invoke, make_aarch64_disk


@pytest.fixture(scope="session")
def aarch64_disk() -> Iterator[Path]:
    if QEMU_IMG is None or QEMU_AARCH64 is None:
        pytest.skip("qemu-system-aarch64 and qemu-img are needed (apt-get install qemu-system-arm qemu-utils)")
    directory = Path(tempfile.mkdtemp(prefix="pemu-rb-disk-", dir="/tmp"))
    directory.chmod(0o755)
    try:
        disk = make_aarch64_disk(directory)
        disk.chmod(0o644)  # readable by the non-root runs too
        yield disk
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def warm(aarch64_disk: Path) -> Iterator[Sandbox]:
    """A sandbox that has converted once, so its cache holds the qemu probe for every other
    sandbox to copy (probing starts qemu several times and would dominate short runs)."""
    box = Sandbox.create(prefix="pemu-rb-warm-")
    try:
        box.install("podman-4.9-linux-amd64.json")
        assert_success(invoke(box, "convert", "podman-machine-default", "--image", str(aarch64_disk)))
        yield box
    finally:
        box.remove()


@pytest.fixture
def box(warm: Sandbox) -> Iterator[Sandbox]:
    sandbox = Sandbox.create()
    sandbox.seed_cache(warm)
    try:
        yield sandbox
    finally:
        sandbox.remove()
