"""Host preparation, idempotent: qemu-aarch64 under binfmt_misc (mmdebstrap runs arm64
maintainer scripts through it), the two trixie packages bookworm lacks, and gvproxy where podman
4.3.1 looks for it.

trixie is reached through a private apt configuration under the cache directory: the system's
sources.list and dpkg's architecture list stay as they are."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import packages
from .run import BuildError, run

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
GVPROXY_BIN = Path("/usr/bin/gvproxy")
# podman 4.3.1 finds gvproxy with FindHelperBinary(..., searchPATH=false): only these directories
# (containers.conf's default helper_binaries_dir), never $PATH, so /usr/bin/gvproxy alone is not
# enough.
PODMAN_HELPER_DIRS = (
    Path("/usr/local/libexec/podman"),
    Path("/usr/local/lib/podman"),
    Path("/usr/libexec/podman"),
    Path("/usr/lib/podman"),
)
HELPER_LINK = Path("/usr/libexec/podman/gvproxy")


@dataclass(frozen=True)
class HostPrep:
    """What prepare_host found or did."""

    binfmt_flags: str
    ignition_deb: Path
    gvproxy_deb: Path
    gvproxy: Path
    gvproxy_for_podman: Path
    actions: tuple[str, ...]


def register_binfmt(actions: list[str]) -> str:
    """Mount binfmt_misc and register qemu-aarch64 with the F flag (the interpreter is opened at
    registration, so it works inside mmdebstrap's chroot). Returns the registered flags."""
    if not (BINFMT_DIR / "register").exists():
        BINFMT_DIR.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)])
        actions.append(f"mounted binfmt_misc on {BINFMT_DIR}")
    entry = BINFMT_DIR / "qemu-aarch64"
    if not entry.exists():
        if not BINFMT_CONF.is_file():
            raise BuildError(f"{BINFMT_CONF} is missing: apt-get install qemu-user-static")
        (BINFMT_DIR / "register").write_text(BINFMT_CONF.read_text().strip() + "\n")
        actions.append(f"registered qemu-aarch64 from {BINFMT_CONF}")
    text = entry.read_text()
    flags = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("flags:")), "")
    if "enabled" not in text.splitlines()[0] or "F" not in flags:
        raise BuildError(
            f"qemu-aarch64 is registered in binfmt_misc without the F flag or disabled ({flags!r}): "
            f"echo -1 > {entry} and run prepare-host again"
        )
    return flags


def trixie_apt_options(apt_dir: Path) -> list[str]:
    """apt options that see only trixie (same mirror URI as the system), in private state under
    apt_dir, for amd64 and arm64 without touching dpkg's foreign architectures."""
    sources = apt_dir / "sources.list"
    (apt_dir / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt_dir / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    wanted = f"deb [signed-by={keyring}] {packages.MIRROR} {packages.TRIXIE_SUITE} main\n"
    if not sources.is_file() or sources.read_text() != wanted:
        sources.write_text(wanted)
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={apt_dir / 'lists'}",
        "-o", f"Dir::Cache={apt_dir / 'cache'}",
        "-o", "Debug::NoLocking=1",
        "-o", "APT::Architectures::=amd64",
        "-o", "APT::Architectures::=arm64",
    ]  # fmt: skip


def fetch_trixie_debs(cache_dir: Path, actions: list[str]) -> dict[str, Path]:
    """The pinned ignition and gvproxy debs, downloaded once into cache_dir/debs."""
    debs_dir = cache_dir / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    wanted = {
        name: debs_dir / f"{name}_{version.replace(':', '%3a')}_{arch}.deb"
        for name, arch, version in (packages.IGNITION, packages.GVPROXY)
    }
    missing = [spec for spec in (packages.IGNITION, packages.GVPROXY) if not wanted[spec[0]].is_file()]
    if missing:
        apt_dir = cache_dir / "apt-trixie"
        opts = trixie_apt_options(apt_dir)
        run(["apt-get", *opts, "update", "-q"], timeout=300)
        actions.append(f"apt-get update for {packages.TRIXIE_SUITE} in {apt_dir}")
        work = debs_dir / f".download-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            run(
                ["apt-get", *opts, "download", "-q", *(f"{n}:{a}={v}" for n, a, v in missing)],
                cwd=work,
                timeout=600,
            )
            for name, _arch, _version in missing:
                got = sorted(work.glob(f"{name}_*.deb"))
                if len(got) != 1:
                    raise BuildError(f"apt-get download {name} left {got!r} in {work}")
                got[0].chmod(0o644)
                got[0].replace(wanted[name])
                actions.append(f"downloaded {wanted[name].name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return wanted


def gvproxy_for_podman(actions: list[str]) -> Path:
    """The gvproxy podman 4.3.1 will run: the first one in its helper dirs, or a link made in
    /usr/libexec/podman to /usr/bin/gvproxy when none of them has one."""
    for directory in PODMAN_HELPER_DIRS:
        candidate = directory / "gvproxy"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate
    HELPER_LINK.parent.mkdir(parents=True, exist_ok=True)
    if HELPER_LINK.is_symlink():
        HELPER_LINK.unlink()
    HELPER_LINK.symlink_to(GVPROXY_BIN)
    actions.append(f"linked {HELPER_LINK} -> {GVPROXY_BIN} (podman's helper dirs had no gvproxy)")
    return HELPER_LINK


def prepare_host(cache_dir: Path) -> HostPrep:
    """Everything the build and a podman machine start with the real gvproxy need from the host.
    Runs as root; a second call changes nothing."""
    if os.geteuid() != 0:
        raise BuildError("prepare-host needs root (binfmt_misc, dpkg -i, /usr/libexec/podman)")
    actions: list[str] = []
    cache_dir.mkdir(parents=True, exist_ok=True)
    flags = register_binfmt(actions)
    debs = fetch_trixie_debs(cache_dir, actions)
    if not GVPROXY_BIN.exists():
        run(["dpkg", "-i", str(debs["gvproxy"])], timeout=300)
        actions.append(f"dpkg -i {debs['gvproxy'].name}")
    helper = gvproxy_for_podman(actions)
    return HostPrep(
        binfmt_flags=flags,
        ignition_deb=debs["ignition"],
        gvproxy_deb=debs["gvproxy"],
        gvproxy=GVPROXY_BIN,
        gvproxy_for_podman=helper,
        actions=tuple(actions),
    )
