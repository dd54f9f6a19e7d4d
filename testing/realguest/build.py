"""The cached build: one root, two disks, the busybox tarball, a manifest."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from . import busybox, disk, guestfiles, packages, rootfs
from .host import HostPrep, prepare_host

DEFAULT_CACHE = Path("/var/cache/podman-emu-tests")
HERE = Path(__file__).parent
DISK_NAME = "guest.qcow2"
SLOW_DISK_NAME = "guest-slow-sshd.qcow2"
BUSYBOX_NAME = "busybox-arm64.tar"
HOSTNAME = "localhost"


@dataclass
class RealGuest:
    """A finished build, as build() returns it and manifest.json records it."""

    directory: Path
    disk: Path
    slow_sshd_disk: Path
    busybox_tar: Path
    manifest: Path
    key: str
    kernel_release: str
    podman_version: str
    ignition_version: str
    gvproxy: Path
    cached: bool
    build_seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "directory": str(self.directory),
            "disk": str(self.disk),
            "slow_sshd_disk": str(self.slow_sshd_disk),
            "busybox_tar": str(self.busybox_tar),
            "manifest": str(self.manifest),
            "key": self.key,
            "kernel_release": self.kernel_release,
            "podman_version": self.podman_version,
            "ignition_version": self.ignition_version,
            "gvproxy": str(self.gvproxy),
            "cached": self.cached,
            "build_seconds": round(self.build_seconds, 1),
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
        }


def cache_key(sources: Path = HERE) -> str:
    """sha256 over every builder source (by name and bytes) and the package list."""
    digest = hashlib.sha256()
    for path in sorted(sources.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(json.dumps(packages.key_material(), sort_keys=True).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(cache_dir: Path) -> Iterator[None]:
    # Parallel test sessions share the cache: one builds, the others wait and reuse it.
    with (cache_dir / ".realguest.lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make_readable(directory: Path) -> None:
    # podman-emu convert runs as the test user and reads the disks from here.
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


def _load(directory: Path, *, cached: bool) -> RealGuest:
    data = json.loads((directory / "manifest.json").read_text())
    return RealGuest(
        directory=directory,
        disk=directory / DISK_NAME,
        slow_sshd_disk=directory / SLOW_DISK_NAME,
        busybox_tar=directory / BUSYBOX_NAME,
        manifest=directory / "manifest.json",
        key=data["key"],
        kernel_release=data["kernel_release"],
        podman_version=data["podman_version"],
        ignition_version=data["ignition_version"],
        gvproxy=Path(data["gvproxy"]),
        cached=cached,
        build_seconds=float(data["build_seconds"]),
        phases={k: float(v) for k, v in data["phases"].items()},
    )


def build(cache_dir: Path = DEFAULT_CACHE, *, log: Callable[[str], None] | None = None) -> RealGuest:
    """The guest for this builder's sources and package list: from the cache, or built (root only)."""
    say = log or (lambda _msg: None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    target = cache_dir / f"realguest-{key[:16]}"
    with _locked(cache_dir):
        if (target / "manifest.json").is_file():
            say(f"real guest cached at {target}")
            return _load(target, cached=True)
        host = prepare_host(cache_dir)
        work = cache_dir / f".realguest-build-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            out = _build(key, host, work, say)
            shutil.rmtree(target, ignore_errors=True)
            out.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return _load(target, cached=False)


def _build(key: str, host: HostPrep, work: Path, say: Callable[[str], None]) -> Path:
    started = time.monotonic()
    phases: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        t = time.monotonic()
        say(f"[{time.monotonic() - started:6.1f}s] {name} ...")
        yield
        phases[name] = time.monotonic() - t
        say(f"[{time.monotonic() - started:6.1f}s] {name} done in {phases[name]:.1f} s")

    def stable_uuid(role: str) -> str:
        # Stable per cache key, so the disks and the manifest always agree.
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"podman-emu-realguest/{key}/{role}"))

    tree = work / "root"
    out = work / "out"
    out.mkdir()
    with phase("mmdebstrap"):
        rootfs.mmdebstrap(tree, work)
    with phase("customize"):
        info = rootfs.customize(
            tree, host.ignition_deb, work, hostname=HOSTNAME, machine_id=uuid.UUID(stable_uuid("machine-id")).hex
        )
    root_guid = stable_uuid("root-partition")
    with phase("esp"):
        esp = disk.make_esp(
            work / "esp.img",
            sd_boot=info.systemd_boot_efi,
            vmlinuz=info.vmlinuz,
            initrd=info.initrd,
            cmdline=disk.kernel_cmdline(root_guid),
            release=info.kernel_release,
        )
    with phase("busybox tar"):
        busybox.write_busybox_tar(tree / "bin" / "busybox", out / BUSYBOX_NAME)
    guids = {"disk_guid": stable_uuid("disk"), "esp_guid": stable_uuid("esp-partition"), "root_guid": root_guid}
    for name, extra in ((DISK_NAME, None), (SLOW_DISK_NAME, guestfiles.SLOW_SSHD)):
        if extra is not None:
            rootfs.write_file(tree, extra)
        with phase(f"ext4 + gpt + qcow2 {name}"):
            root_fs = disk.make_root_fs(work / "root.ext4", tree, stable_uuid("root-fs"))
            disk.make_disk(out / name, esp=esp, root_fs=root_fs, **guids)
            root_fs.unlink()
    total = time.monotonic() - started
    manifest = {
        "key": key,
        "paths": {"disk": DISK_NAME, "slow_sshd_disk": SLOW_DISK_NAME, "busybox_tar": BUSYBOX_NAME},
        "sizes": {p.name: p.stat().st_size for p in sorted(out.iterdir())},
        "build_seconds": round(total, 1),
        "phases": {k: round(v, 1) for k, v in phases.items()},
        "kernel_release": info.kernel_release,
        "podman_version": info.podman_version,
        "ignition_version": info.ignition_version,
        "gvproxy": str(host.gvproxy_for_podman),
        "packages": list(packages.GUEST_PACKAGES),
        "kernel_cmdline": disk.kernel_cmdline(root_guid),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    _make_readable(out)
    say(f"built in {total:.0f} s")
    return out
