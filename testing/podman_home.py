"""A private podman home: podman's XDG dirs, a runtime dir, podman-emu's state and cache and a
working directory, all under one short root, with real fixture configs relocated into it.

Fixture files carry the absolute paths of the machine they came from; `install` moves them into
the sandbox by replacing the home and runtime prefixes, escaped the way Go writes them, so the
result is exactly what podman would have written there and converts can create real files beside
a real (small) native disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testing.fixtures import FIXTURES, home_of, image_path_of, qmp_path
from testing.oracles import go_string_body

PODMAN_MACHINE_SUBDIR = Path("containers", "podman", "machine", "qemu")
NATIVE_DISK_STAND_IN = b"native x86_64 disk stand-in: never read by these tests\n"


@dataclass(frozen=True)
class PodmanLayout:
    """Where podman 4.x keeps a user's machines, for a given home."""

    home: Path

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / PODMAN_MACHINE_SUBDIR

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / PODMAN_MACHINE_SUBDIR

    def config(self, name: str) -> Path:
        return self.config_dir / f"{name}.json"


@dataclass
class Sandbox:
    """Everything podman-emu may touch lives under `root` (under /tmp by default: a unix socket
    path must stay under 108 bytes): podman's config and data dirs (XDG), the runtime dir,
    podman-emu's state and cache, and the working directory commands run in, so any stray
    relative write lands inside what the tests hash."""

    root: Path
    home_name: str = "home"

    @classmethod
    def create(cls, home_name: str = "home", prefix: str = "pemu-", base: str = "/tmp") -> Sandbox:
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        os.chmod(root, 0o755)  # other users (nobody) must be able to reach their home inside
        sandbox = cls(root, home_name)
        for directory in (sandbox.config_dir, sandbox.data_dir, sandbox.runtime_dir / "podman", sandbox.cwd):
            directory.mkdir(parents=True, exist_ok=True)
        return sandbox

    @property
    def home(self) -> Path:
        return self.root / self.home_name

    @property
    def layout(self) -> PodmanLayout:
        return PodmanLayout(self.home)

    @property
    def config_dir(self) -> Path:
        return self.layout.config_dir

    @property
    def data_dir(self) -> Path:
        return self.layout.data_dir

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PODMAN_EMU_STATE_DIR": str(self.state_dir),
            "PODMAN_EMU_CACHE_DIR": str(self.cache_dir),
        }

    def config(self, name: str) -> Path:
        return self.layout.config(name)

    def relocate(self, data: bytes) -> bytes:
        """Move a fixture's absolute paths into this sandbox, escaping the new prefix the way Go
        does, so the result is still exactly what podman would have written there."""
        content = json.loads(data)
        old_home = home_of(content)
        old_runtime = str(Path(qmp_path(content).removeprefix("unix:")).parent)
        data = data.replace(
            go_string_body(old_runtime).encode(), go_string_body(str(self.runtime_dir / "podman")).encode()
        )
        return data.replace(go_string_body(old_home).encode(), go_string_body(str(self.home)).encode())

    def install(
        self, fixture: str, name: str | None = None, *, data: bytes | None = None, native_disk: bool = True
    ) -> Path:
        """Put fixture `fixture` (or the given bytes) in place as machine `name`, with a small
        stand-in for its native disk."""
        if data is None:
            data = self.relocate((FIXTURES / fixture).read_bytes())
        content = json.loads(data)
        if name is not None and name != content["Name"]:
            # Both of podman's byte formats: indented (4.x) and one line (5.x).
            for separator in (": ", ":"):
                data = data.replace(
                    f'"Name"{separator}"{content["Name"]}"'.encode(), f'"Name"{separator}"{name}"'.encode(), 1
                )
        target = self.config(name or content["Name"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if native_disk:
            image = Path(image_path_of(content))
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(NATIVE_DISK_STAND_IN)
        return target

    def seed_cache(self, other: Sandbox) -> None:
        """Reuse another sandbox's qemu probe results (the probe costs about a second)."""
        if other.cache_dir.exists():
            shutil.copytree(other.cache_dir, self.cache_dir, dirs_exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def sandbox(home_name: str = "home", prefix: str = "pemu-") -> Iterator[Sandbox]:
    box = Sandbox.create(home_name, prefix=prefix)
    try:
        yield box
    finally:
        box.remove()
