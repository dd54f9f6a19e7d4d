"""Resolve, download and unpack Debian arm64 packages with apt's own tools.

Only the host's apt metadata is consulted, so the arm64 architecture must have been added
(`dpkg --add-architecture arm64 && apt-get update`); nothing is installed on the host.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ARCH = "arm64"
APT_TIMEOUT = 60
DOWNLOAD_TIMEOUT = 600


class GuestToolMissing(RuntimeError):
    """A host tool or apt configuration the guest build needs is absent.

    `hint` says what to install or run, so callers can turn this into a skip or a failure."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(f"{message} ({hint})")
        self.hint = hint


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    depends: str

    @property
    def spec(self) -> str:
        return f"{self.name}:{ARCH}={self.version}"

    @property
    def deb_name(self) -> str:
        # apt-get download writes the epoch colon as %3a; keep our own name free of it.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{ARCH}.deb"


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise GuestToolMissing(f"{name} not found", f"apt-get install {package}")
    return path


def _run(args: list[str], *, timeout: float, cwd: Path | None = None) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return proc.stdout


def _parse_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if stanzas[-1]:
                stanzas.append({})
            continue
        match = re.match(r"^([A-Za-z0-9-]+):\s*(.*)$", line)
        if match:
            stanzas[-1][match.group(1)] = match.group(2)
    return [s for s in stanzas if s]


def resolve_many(names: list[str]) -> dict[str, Package]:
    """Candidate versions for arm64, as apt would pick them, in one apt-cache run (each run
    loads the whole package cache, about a second here)."""
    require_tool("apt-cache", "apt")
    args = ["apt-cache", "show", "--no-all-versions", *(f"{n}:{ARCH}" for n in names)]
    try:
        out = _run(args, timeout=APT_TIMEOUT)
    except subprocess.CalledProcessError as exc:
        raise GuestToolMissing(
            f"apt does not know all of {names} for {ARCH}: {exc.stderr.strip()}",
            "dpkg --add-architecture arm64 && apt-get update",
        ) from exc
    found = {
        s["Package"]: Package(name=s["Package"], version=s["Version"], depends=s.get("Depends", ""))
        for s in _parse_stanzas(out)
        if "Package" in s and "Version" in s
    }
    missing = [n for n in names if n not in found]
    if missing:
        raise GuestToolMissing(f"no {ARCH} candidate for {missing}", "apt-get update")
    return found


def resolve(name: str) -> Package:
    return resolve_many([name])[name]


def kernel_image(meta: Package) -> Package:
    """The ABI-named image package a kernel meta package (linux-image-arm64) pins.

    Debian's meta packages depend on exactly one `linux-image-<abi>-<flavour> (= version)`, so the
    concrete package is read from that dependency without another apt-cache run."""
    for dep in meta.depends.split(","):
        match = re.match(r"^\s*(linux-image-[^\s:(]+)(?::\S+)?\s*\(=\s*([^)\s]+)\)", dep)
        if match and match.group(1) != meta.name:
            return Package(name=match.group(1), version=match.group(2), depends="")
    # Not a meta package: already the concrete image.
    return meta


def download(pkg: Package, dest_dir: Path) -> Path:
    """Fetch the .deb into dest_dir unless an earlier run already did."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / pkg.deb_name
    if target.is_file() and target.stat().st_size > 0:
        return target
    require_tool("apt-get", "apt")
    work = dest_dir / f".download-{pkg.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        _run(["apt-get", "download", "-q", pkg.spec], cwd=work, timeout=DOWNLOAD_TIMEOUT)
        debs = list(work.glob("*.deb"))
        if len(debs) != 1:
            raise RuntimeError(f"apt-get download {pkg.spec} left {debs!r}")
        debs[0].chmod(0o644)
        debs[0].replace(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def extract(deb: Path, dest: Path) -> Path:
    require_tool("dpkg-deb", "dpkg")
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)], timeout=APT_TIMEOUT)
    return dest
