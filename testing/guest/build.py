"""Build (or reuse) the aarch64 test guest: kernel + initramfs + bootable qcow2 disk.

Results live in a cache directory keyed by the exact package versions and a hash of everything
that shapes the output (this package's sources, the /init script, the kernel command line, the
module list), so a rebuild happens only when one of those changes.
"""

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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import debian, disk, initramfs, kmod

DEFAULT_CACHE = Path("/var/cache/podman-emu-tests")
CACHE_ENV = "PODMAN_EMU_TEST_CACHE"

# The generic flavour, not cloud: under TCG both reach /init within ~0.3 s of each other, and only
# the generic one has 9p, so the guest can also check the -virtfs share podman adds.
DEFAULT_KERNEL = "linux-image-arm64"
REQUIRED_MODULES = ("virtio_pci", "virtio_console", "qemu_fw_cfg", "evdev", "efivarfs")
OPTIONAL_MODULES = ("9pnet_virtio", "9p")
DEFAULT_CMDLINE = "console=ttyAMA0 panic=-1 rdinit=/init podman_emu_guest=1"
ESP_KERNEL = "vmlinuz"
ESP_INITRD = "initrd.img"
ENTRY_NAME = "podman-emu-guest.conf"

BUILDER_SOURCES = ("__init__.py", "build.py", "debian.py", "disk.py", "initramfs.py", "kmod.py")


@dataclass(frozen=True)
class GuestSpec:
    kernel_package: str = DEFAULT_KERNEL
    init_script: str = initramfs.DEFAULT_INIT
    cmdline: str = DEFAULT_CMDLINE
    modules: tuple[str, ...] = REQUIRED_MODULES
    optional_modules: tuple[str, ...] = OPTIONAL_MODULES


@dataclass
class GuestImage:
    directory: Path
    kernel: Path
    initramfs: Path
    disk: Path
    esp_partuuid: str
    kernel_release: str
    packages: dict[str, str]
    modules: list[str]
    cached: bool
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def manifest(self) -> Path:
        return self.directory / "manifest.json"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def check_host() -> None:
    """Raise GuestToolMissing early if a build could not succeed on this host."""
    for tool, package in (
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
        ("cpio", "cpio"),
    ):
        debian.require_tool(tool, package)
    disk.check_tools()


def _builder_hash() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in BUILDER_SOURCES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    with (root / ".lock").open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _make_readable(root: Path) -> None:
    # The e2e tests hand these files to an unprivileged user; the cache is built as root.
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        p.chmod(0o755 if p.is_dir() else 0o644)


def _resolve(spec: GuestSpec) -> dict[str, debian.Package]:
    found = debian.resolve_many([spec.kernel_package, "busybox-static", "systemd-boot-efi"])
    return {
        "kernel": debian.kernel_image(found[spec.kernel_package]),
        "busybox": found["busybox-static"],
        "systemd-boot": found["systemd-boot-efi"],
    }


def build_guest_image(
    spec: GuestSpec | None = None,
    *,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> GuestImage:
    spec = spec or GuestSpec()
    say = log or (lambda _msg: None)
    root = cache_dir or cache_root()
    check_host()
    started = time.monotonic()
    timings: dict[str, float] = {}

    t = time.monotonic()
    pkgs = _resolve(spec)
    timings["resolve"] = time.monotonic() - t
    key_material = {
        "packages": {role: [p.name, p.version] for role, p in pkgs.items()},
        "spec": asdict(spec),
        "builder": _builder_hash(),
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:20]
    target = root / f"guest-{key}"

    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o755)
    except PermissionError as exc:
        raise debian.GuestToolMissing(
            f"cannot create the guest cache {root}", f"set {CACHE_ENV} to a writable directory"
        ) from exc
    with _locked(root):
        if (target / "manifest.json").is_file():
            image = _load(target, cached=True)
            image.timings = {"lookup": time.monotonic() - started}
            say(f"guest image cached at {target}")
            return image
        say(f"building guest image {target.name} ({pkgs['kernel'].name} {pkgs['kernel'].version})")
        work = root / f".build-{key}-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            _build(spec, pkgs, key, root, work, timings)
            out = work / "out"
            timings["total"] = time.monotonic() - started
            manifest = json.loads((out / "manifest.json").read_text())
            manifest["build_timings"] = timings
            (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            _make_readable(out)
            shutil.rmtree(target, ignore_errors=True)
            out.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    image = _load(target, cached=False)
    image.timings = timings
    return image


def _build(
    spec: GuestSpec,
    pkgs: dict[str, debian.Package],
    key: str,
    root: Path,
    work: Path,
    timings: dict[str, float],
) -> None:
    t = time.monotonic()
    debs = {role: debian.download(p, root / "debs") for role, p in pkgs.items()}
    timings["download"] = time.monotonic() - t

    t = time.monotonic()
    trees = {role: debian.extract(deb, work / role) for role, deb in debs.items()}
    timings["extract"] = time.monotonic() - t

    kernel_tree = trees["kernel"]
    vmlinuz = sorted((kernel_tree / "boot").glob("vmlinuz-*"))
    if len(vmlinuz) != 1:
        raise RuntimeError(f"expected one vmlinuz in {pkgs['kernel'].name}, found {vmlinuz}")
    release = vmlinuz[0].name.removeprefix("vmlinuz-")
    config = kmod.kernel_config(kernel_tree, release)
    for option in ("CONFIG_EFI_STUB", "CONFIG_BLK_DEV_INITRD", "CONFIG_RD_GZIP", "CONFIG_ACPI_BUTTON"):
        if config.get(option) != "y":
            raise RuntimeError(f"{pkgs['kernel'].name} lacks {option}=y, which the test guest needs")
    index = kmod.ModuleIndex(kernel_tree / "lib" / "modules" / release)
    modules = index.closure(list(spec.modules))
    modules += [m for m in index.closure(list(spec.optional_modules), optional=True) if m not in modules]

    out = work / "out"
    out.mkdir()
    t = time.monotonic()
    initrd = initramfs.build_initramfs(
        out / "initramfs.cpio.gz",
        busybox=trees["busybox"] / "bin" / "busybox",
        modules=[(m, index.paths[m]) for m in modules],
        init_script=spec.init_script,
        workdir=work,
    )
    timings["initramfs"] = time.monotonic() - t
    kernel = out / "vmlinuz"
    shutil.copyfile(vmlinuz[0], kernel)

    sd_boot = trees["systemd-boot"] / "usr/lib/systemd/boot/efi/systemd-bootaa64.efi"
    if not sd_boot.is_file():
        raise RuntimeError(f"{sd_boot} missing from {pkgs['systemd-boot'].name}")
    # Stable GUIDs per cache key, so a disk and its manifest always agree.
    esp_guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"podman-emu-guest/{key}/esp"))
    disk_guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"podman-emu-guest/{key}/disk"))
    t = time.monotonic()
    esp = disk.build_esp(
        work / "esp.img",
        {
            "EFI/BOOT/BOOTAA64.EFI": sd_boot,
            # timeout 0 boots the default entry at once; the other keys stop systemd-boot from
            # adding menu entries or writing a random seed onto the test disk.
            "loader/loader.conf": (
                f"default {ENTRY_NAME}\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\nrandom-seed-mode off\n"
            ),
            f"loader/entries/{ENTRY_NAME}": (
                f"title podman-emu test guest ({release})\nlinux /{ESP_KERNEL}\n"
                f"initrd /{ESP_INITRD}\noptions {spec.cmdline}\n"
            ),
            ESP_KERNEL: kernel,
            ESP_INITRD: initrd,
        },
    )
    timings["esp"] = time.monotonic() - t
    t = time.monotonic()
    raw = disk.build_gpt_disk(work / "disk.raw", esp, disk_guid=disk_guid, esp_guid=esp_guid)
    timings["gpt"] = time.monotonic() - t
    t = time.monotonic()
    disk.to_qcow2(raw, out / "disk.qcow2")
    timings["qcow2"] = time.monotonic() - t

    manifest = {
        "key": key,
        "kernel_release": release,
        "packages": {p.name: p.version for p in pkgs.values()},
        "modules": modules,
        "esp_partuuid": esp_guid,
        "disk_guid": disk_guid,
        "cmdline": spec.cmdline,
        "sha256": {
            name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("vmlinuz", "initramfs.cpio.gz")
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _load(directory: Path, *, cached: bool) -> GuestImage:
    manifest = json.loads((directory / "manifest.json").read_text())
    return GuestImage(
        directory=directory,
        kernel=directory / "vmlinuz",
        initramfs=directory / "initramfs.cpio.gz",
        disk=directory / "disk.qcow2",
        esp_partuuid=manifest["esp_partuuid"],
        kernel_release=manifest["kernel_release"],
        packages=manifest["packages"],
        modules=manifest["modules"],
        cached=cached,
    )
