"""Shared test scaffolding: a private podman home (XDG dirs) with real fixture configs in it.

Fixture files carry the absolute paths of the machine they came from; `PodmanHome.install`
moves them into the test's temp dir by replacing the home and runtime prefixes, so converts can
create real files beside a real (small) native disk.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "configs"
QEMU_AARCH64 = shutil.which("qemu-system-aarch64")
QEMU_IMG = shutil.which("qemu-img")


def manifest() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def fixture_files() -> list[str]:
    return [entry["file"] for entry in manifest()]


def _qmp_path(content: dict[str, Any]) -> str:
    address = content["QMPMonitor"]["Address"]
    return address if isinstance(address, str) else address["Path"]


@dataclass
class PodmanHome:
    root: Path
    # Sockets live here: a unix socket path must stay under 108 bytes, pytest's tmp paths do not.
    runtime_root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "containers" / "podman" / "machine" / "qemu"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "containers" / "podman" / "machine" / "qemu"

    @property
    def runtime_dir(self) -> Path:
        return self.runtime_root

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PODMAN_EMU_STATE_DIR": str(self.state_dir),
            "PODMAN_EMU_CACHE_DIR": str(self.root / "cache"),
        }

    def relocate(self, data: bytes) -> bytes:
        """Point a fixture's absolute paths into this home (bytes in, bytes out, format kept)."""
        content = json.loads(data)
        old_home = str(Path(content["IdentityPath"]).parent.parent)
        old_runtime = str(Path(_qmp_path(content).removeprefix("unix:")).parent)
        data = data.replace(old_runtime.encode(), str(self.runtime_dir / "podman").encode())
        return data.replace(old_home.encode(), str(self.home).encode())

    def install(self, fixture: str, name: str | None = None, *, native_disk: bool = True) -> Path:
        """Copy fixture `fixture` in as machine `name` and create its native disk."""
        data = self.relocate((FIXTURES / fixture).read_bytes())
        content = json.loads(data)
        if name is not None and name != content["Name"]:
            data = data.replace(f'"Name": "{content["Name"]}"'.encode(), f'"Name": "{name}"'.encode())
        machine = name or content["Name"]
        target = self.config_dir / f"{machine}.json"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        image = content["ImagePath"] if isinstance(content["ImagePath"], str) else content["ImagePath"]["Path"]
        if native_disk:
            Path(image).parent.mkdir(parents=True, exist_ok=True)
            Path(image).write_bytes(b"native x86_64 disk stand-in: never read by these tests\n")
        return target

    def config(self, name: str) -> Path:
        return self.config_dir / f"{name}.json"


@pytest.fixture
def podman_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PodmanHome]:
    home = PodmanHome(tmp_path / "ph", Path(tempfile.mkdtemp(prefix="pemu-")))
    for directory in (home.home, home.runtime_dir / "podman", home.config_dir, home.data_dir):
        directory.mkdir(parents=True, exist_ok=True)
    for key, value in home.env().items():
        monkeypatch.setenv(key, value)
    yield home
    shutil.rmtree(home.runtime_root, ignore_errors=True)


@pytest.fixture(scope="session")
def blank_aarch64_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small qcow2 with no partitions: enough for conversions that never boot it (the arch
    check then warns that it cannot decide)."""
    if QEMU_IMG is None:
        pytest.skip("qemu-img is not installed (apt-get install qemu-utils)")
    path = tmp_path_factory.mktemp("disks") / "blank-aarch64.qcow2"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), "1G"], check=True, timeout=60)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman-emu in a separate process, exactly as a user runs it."""
    import os

    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.pop("PODMAN_EMU_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "podman_emu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=REPO,
        check=False,
    )
