"""Fixtures for every suite; the helpers themselves live in the importable `testing` package."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.podman_home import Sandbox
from testing.tools import require_file, require_tool

AAVMF_CODE = "/usr/share/AAVMF/AAVMF_CODE.fd"


@pytest.fixture
def podman_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A private podman home whose XDG and podman-emu variables this test's process uses."""
    box = Sandbox.create()
    for key, value in box.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PODMAN_EMU_DEBUG", raising=False)
    try:
        yield box
    finally:
        box.remove()


@pytest.fixture(scope="session")
def qemu_aarch64() -> str:
    """qemu-system-aarch64's path: a test that needs it fails under CI=true and skips elsewhere."""
    return require_tool("qemu-system-aarch64", debian="qemu-system-arm")


@pytest.fixture(scope="session")
def qemu_img() -> str:
    return require_tool("qemu-img", debian="qemu-utils")


@pytest.fixture(scope="session")
def aavmf(qemu_aarch64: str) -> str:
    """The 64 MiB aarch64 firmware that converted machines boot with on Debian."""
    return require_file(AAVMF_CODE, debian="qemu-efi-aarch64")


@pytest.fixture(scope="session")
def blank_aarch64_disk(qemu_img: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small qcow2 with no partitions: enough for conversions that never boot it (the arch
    check then warns that it cannot decide)."""
    path = tmp_path_factory.mktemp("disks") / "blank-aarch64.qcow2"
    subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(path), "1G"], check=True, timeout=60)
    return path
