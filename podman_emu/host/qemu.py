"""What this host's qemu-system-aarch64 can do, probed once per binary and cached.

Never trust a binary by its name: podman silently falls back to the host-arch qemu when
CmdLine[0] does not exist, so a wrong path here turns into x86 qemu running aarch64 arguments.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from dataclasses import asdict
from pathlib import Path

from podman_emu import fsutil, paths, proc
from podman_emu.errors import HostNotReady, UsageError
from podman_emu.host.capabilities import QemuCapabilities

QEMU_AARCH64 = "qemu-system-aarch64"

# Where Homebrew (Intel, Apple Silicon), MacPorts and podman's macOS installer put qemu. Symlink
# prefixes are preferred to Cellar paths, which break on `brew upgrade` (podman-desktop#4610).
WELL_KNOWN_BIN_DIRS = (
    "/usr/local/bin",
    "/opt/homebrew/bin",
    "/opt/local/bin",
    "/opt/podman/qemu/bin",
    "/usr/bin",
    "/usr/libexec",
)

PROBE_TIMEOUT_S = 20
_CACHE_SCHEMA = 3


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def only_root_can_change(path: Path) -> bool:
    """Is `path`, and every directory above it, owned by root and writable by nobody else? What
    root may execute: anything else lets another user choose the code root runs."""
    current = Path(os.path.abspath(path))
    for entry in (current, *current.parents):
        try:
            info = entry.lstat()
        except OSError:
            return False
        if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    # A link's target must pass too; its own bits mean nothing.
    return current.resolve() == current or only_root_can_change(current.resolve())


def _may_run(path: Path) -> bool:
    return os.geteuid() != 0 or only_root_can_change(path)


def candidate_binaries(native_binary: str | None) -> list[Path]:
    """Where to look for qemu-system-aarch64, most specific first. As root, a binary some other
    user could have put or changed is no candidate: the machine's CmdLine[0] is the user's text,
    and the directory it names may be theirs."""
    candidates: list[Path] = []
    if native_binary and os.path.isabs(native_binary):
        # Beside the machine's own qemu: the same installation, so the same firmware dir.
        candidates.append(Path(native_binary).parent / QEMU_AARCH64)
    found = shutil.which(QEMU_AARCH64)
    if found:
        candidates.append(Path(found))
    candidates.extend(Path(directory) / QEMU_AARCH64 for directory in WELL_KNOWN_BIN_DIRS)
    unique: list[Path] = []
    for candidate in candidates:
        absolute = Path(os.path.abspath(candidate))
        if absolute not in unique and _may_run(absolute):
            unique.append(absolute)
    return unique


def find_qemu(explicit: str | None, native_binary: str | None) -> Path:
    if explicit:
        path = Path(os.path.abspath(os.path.expanduser(explicit)))
        if not _is_executable_file(path):
            raise UsageError(
                f"--qemu {explicit}: no executable file there",
                hint="Give the absolute path of qemu-system-aarch64 (e.g. /usr/local/bin/qemu-system-aarch64).",
            )
        return path
    for candidate in candidate_binaries(native_binary):
        if _is_executable_file(candidate):
            return candidate
    as_root = "; as root, only binaries that no other user can change" if os.geteuid() == 0 else ""
    raise HostNotReady(
        f"{QEMU_AARCH64} was not found (looked beside the machine's qemu, on PATH and in "
        f"{', '.join(WELL_KNOWN_BIN_DIRS)}{as_root})",
        hint="Install it: Debian/Ubuntu `apt-get install qemu-system-arm qemu-efi-aarch64`, Fedora "
        "`dnf install qemu-system-aarch64 edk2-aarch64`, macOS `brew install qemu`. Or pass --qemu PATH.",
    )


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return proc.run(
        argv,
        timeout=PROBE_TIMEOUT_S,
        what=f"probing {argv[0]}",
        missing_hint="Check that the binary works: run it with --version.",
        stdin=stdin,
    )


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _parse_cpu_models(text: str) -> tuple[str, ...]:
    models = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or line.startswith("Available") or line.endswith(":"):
            continue
        models.append(parts[0])
    return tuple(models)


def _parse_accelerators(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines()[1:] if line.strip())


def _try_cpu(path: Path, cpu: str) -> subprocess.CompletedProcess[str]:
    """Start `path` with `-cpu cpu` and make it quit at once: the only sure test of a model's
    properties (QEMU 7.2 has no `-cpu NAME,help`). -S keeps the guest from running; the QMP quit
    makes qemu leave as soon as the CPU is built."""
    return _run(
        [
            str(path),
            "-M",
            "virt",
            "-accel",
            "tcg",
            "-cpu",
            cpu,
            "-display",
            "none",
            "-nodefaults",
            "-no-user-config",
            "-S",
            "-qmp",
            "stdio",
        ],
        stdin='{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n',
    )


def _probe_pauth_impdef(path: Path) -> bool:
    # The property only exists on QEMU >= 6.0 builds with TCG.
    return _try_cpu(path, "max,pauth-impdef=on").returncode == 0


def _probe_lpa2(path: Path, cpu_models: tuple[str, ...]) -> bool:
    # A qemu without the property has no FEAT_LPA2 to switch off (QEMU < 7.0).
    return "max" in cpu_models and _try_cpu(path, "max,lpa2=off").returncode == 0


def refuse_cpu_qemu_rejects(path: Path, cpu: str) -> None:
    """A --cpu whose model is in the list can still carry a property qemu rejects (a typo, a
    property of another model): found now, not when `podman machine start` runs qemu."""
    result = _try_cpu(path, cpu)
    if result.returncode == 0:
        return
    said = next((line for line in result.stderr.splitlines() if line.strip()), "no reason given")
    model = cpu.split(",", 1)[0]
    raise UsageError(
        f"--cpu {cpu}: {path} refuses it ({said.removeprefix(f'{path.name}: ').strip()})",
        hint=f"The model's properties: `{path} -M virt -device {model}-arm-cpu,help`.",
    )


def _probe(path: Path) -> QemuCapabilities:
    version_run = _run([str(path), "--version"])
    version = _parse_version(version_run.stdout)
    if version_run.returncode != 0 or version is None:
        raise HostNotReady(
            f"{path} does not answer like qemu (--version said: "
            f"{(version_run.stdout + version_run.stderr).strip()[:200]!r})",
            hint="Point --qemu at a working qemu-system-aarch64.",
        )
    cpu_run = _run([str(path), "-machine", "virt", "-cpu", "help"])
    cpu_models = _parse_cpu_models(cpu_run.stdout)
    if "cortex-a57" not in cpu_models and "max" not in cpu_models:
        raise HostNotReady(
            f"{path} is not an aarch64 system emulator (its CPU list has neither 'max' nor 'cortex-a57')",
            hint="podman-emu needs qemu-system-aarch64, not the qemu for another architecture.",
        )
    accel_run = _run([str(path), "-accel", "help"])
    return QemuCapabilities(
        path=str(path),
        version=version,
        version_text=version_run.stdout.splitlines()[0].strip(),
        cpu_models=cpu_models,
        accelerators=_parse_accelerators(accel_run.stdout),
        has_pauth_impdef=_probe_pauth_impdef(path),
        has_lpa2=_probe_lpa2(path, cpu_models),
    )


def _cache_key(path: Path) -> str:
    # A new qemu install changes size or mtime of the resolved file; that invalidates the probe.
    stat = path.resolve().stat()
    return f"{path}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def probe_qemu(path: Path) -> QemuCapabilities:
    """Probe `path` (about a second of qemu start-ups), or return the cached result."""
    cache_file = paths.cache_dir() / "qemu-probes.json"
    key = _cache_key(path)
    cache: dict[str, dict[str, object]] = {}
    try:
        loaded = json.loads(fsutil.read_cache(cache_file) or b"{}")
        if isinstance(loaded, dict) and loaded.get("schema") == _CACHE_SCHEMA:
            cache = loaded.get("probes", {})
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if isinstance(entry, dict):
        try:
            return QemuCapabilities(
                path=str(entry["path"]),
                version=tuple(entry["version"]),  # type: ignore[arg-type]
                version_text=str(entry["version_text"]),
                cpu_models=tuple(entry["cpu_models"]),  # type: ignore[arg-type]
                accelerators=tuple(entry["accelerators"]),  # type: ignore[arg-type]
                has_pauth_impdef=bool(entry["has_pauth_impdef"]),
                has_lpa2=bool(entry["has_lpa2"]),
            )
        except (KeyError, TypeError):
            pass
    capabilities = _probe(path)
    cache[key] = asdict(capabilities)
    fsutil.write_cache(cache_file, json.dumps({"schema": _CACHE_SCHEMA, "probes": cache}, indent=1).encode())
    return capabilities


def find_qemu_img(qemu_binary: Path | None) -> Path:
    candidates = []
    if qemu_binary is not None:
        candidates.append(qemu_binary.parent / "qemu-img")
    found = shutil.which("qemu-img")
    if found:
        candidates.append(Path(found))
    candidates.extend(Path(directory) / "qemu-img" for directory in WELL_KNOWN_BIN_DIRS)
    for candidate in candidates:
        if _is_executable_file(candidate) and _may_run(candidate):
            return candidate
    raise HostNotReady(
        "qemu-img was not found (needed to resize the aarch64 disk to the machine's disk size)",
        hint="Install it: Debian/Ubuntu `apt-get install qemu-utils`, Fedora `dnf install qemu-img`, "
        "macOS `brew install qemu`.",
    )


# The option ROM qemu loads for every `-device virtio-net-pci` (the NIC podman 4.x and 5.x give
# each machine). Debian ships it in ipxe-qemu, only a Recommends of qemu-system-arm; without it
# qemu exits at start with `failed to find romfile "efi-virtio.rom"`.
NIC_ROM = "efi-virtio.rom"


def missing_nic_rom(path: Path) -> list[str] | None:
    """The data dirs `path` searched, when none of them has the NIC's option ROM; else None."""
    listed = _run([str(path), "-L", "help"])
    data_dirs = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
    if listed.returncode != 0 or not data_dirs:
        return None  # a qemu that cannot list them: the start says what is missing, if anything
    if any(os.path.isfile(os.path.join(directory, NIC_ROM)) for directory in data_dirs):
        return None
    return [os.path.normpath(directory) for directory in data_dirs]
