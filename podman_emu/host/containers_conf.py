"""Where podman looks for its helper binaries (gvproxy, and in 5.x qemu), read the way podman's
containers/common reads containers.conf, so podman-emu can put a directory of its own in front
without editing any file the user owns.

The chain (containers/common, as in podman 4.3 and 5.x): `$CONTAINERS_CONF` alone if set; else
/usr/share/containers/containers.conf, /etc/containers/containers.conf, its `.d` drop-ins, then the
user's containers.conf and its `.d` drop-ins, drop-ins in lexical order. A later file that sets
`[engine] helper_binaries_dir` replaces the list (5.x also knows an `{append=true}` form, which
4.x cannot parse, so podman-emu never writes it). `$CONTAINERS_CONF_OVERRIDE` (5.x) comes last.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

# containers/common's compiled-in defaults (config_linux.go / config_darwin.go); podman replaces
# $BINDIR with the directory of its own binary.
_LINUX_DEFAULTS = ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman", "/usr/lib/podman")
_DARWIN_DEFAULTS = (
    "$BINDIR/../libexec/podman",
    "/usr/local/opt/podman/libexec/podman",
    "/opt/homebrew/opt/podman/libexec/podman",
    "/opt/homebrew/bin",
    "/usr/local/bin",
    *_LINUX_DEFAULTS,
)
DROPIN_NAME = "99-podman-emu.conf"  # sorts last: the user's own drop-ins still come first


@dataclass(frozen=True)
class HelperDirs:
    """podman's helper-dir list as the user's files make it, and which file said so."""

    dirs: tuple[str, ...]
    source: str  # the file that set it, or "podman's defaults"
    conf_override: str | None  # $CONTAINERS_CONF: podman then reads no user drop-in at all


def user_config_dir() -> Path:
    value = os.environ.get("XDG_CONFIG_HOME")
    return (Path(value) if value else Path.home() / ".config") / "containers"


def dropin_path() -> Path:
    return user_config_dir() / "containers.conf.d" / DROPIN_NAME


def _dropins(directory: Path) -> list[Path]:
    try:
        return sorted(entry for entry in directory.iterdir() if entry.suffix == ".conf" and entry.is_file())
    except OSError:
        return []


def config_chain() -> list[Path]:
    override = os.environ.get("CONTAINERS_CONF")
    if override:
        return [Path(override)]
    chain = [Path("/usr/share/containers/containers.conf"), Path("/etc/containers/containers.conf")]
    chain += _dropins(Path("/etc/containers/containers.conf.d"))
    user = user_config_dir()
    chain.append(user / "containers.conf")
    chain += _dropins(user / "containers.conf.d")
    late = os.environ.get("CONTAINERS_CONF_OVERRIDE")
    if late:
        chain.append(Path(late))
    return chain


def _helper_dirs_in(path: Path) -> list[str] | None:
    """The list this file sets, or None if it sets none (or cannot be read: podman would refuse
    to start at all then, and says why better than we could)."""
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, TOMLKitError):
        return None
    engine = document.get("engine")
    if not isinstance(engine, dict) or "helper_binaries_dir" not in engine:
        return None
    value = engine["helper_binaries_dir"]
    if not isinstance(value, list):
        return None
    return [str(item) for item in value if isinstance(item, str)]


def effective_helper_dirs(*, exclude: Iterable[Path] = ()) -> HelperDirs:
    """The helper dirs podman would use if the files in `exclude` (podman-emu's own drop-in) did
    not exist."""
    skipped = {path.absolute() for path in exclude}
    dirs: Sequence[str] = _DARWIN_DEFAULTS if sys.platform == "darwin" else _LINUX_DEFAULTS
    source = "podman's defaults"
    for path in config_chain():
        if path.absolute() in skipped:
            continue
        found = _helper_dirs_in(path)
        if found is not None:
            dirs, source = found, str(path)
    return HelperDirs(tuple(dirs), source, os.environ.get("CONTAINERS_CONF") or None)


def expand_bindir(directory: str, podman_binary: str | None) -> str | None:
    """podman's `$BINDIR` placeholder: the directory of the podman binary that reads the list."""
    if "$BINDIR" not in directory:
        return directory
    if podman_binary is None:
        return None
    return directory.replace("$BINDIR", str(Path(podman_binary).resolve().parent))


def render_dropin(helper_dirs: Sequence[str], machines: Sequence[str]) -> bytes:
    document = tomlkit.document()
    document.add(tomlkit.comment("Written by podman-emu; `podman-emu revert` removes it with the last emulated"))
    document.add(tomlkit.comment("machine."))
    document.add(tomlkit.comment(f"Emulated machines: {', '.join(machines)}. podman starts gvproxy through"))
    document.add(tomlkit.comment("podman-emu's launcher (the first directory), which hands every other machine"))
    document.add(tomlkit.comment("to the real gvproxy unchanged; the rest is the list podman used before."))
    engine = tomlkit.table()
    values = tomlkit.array()
    values.extend(helper_dirs)
    values.multiline(True)
    engine.add("helper_binaries_dir", values)
    document.add("engine", engine)
    return tomlkit.dumps(document).encode()
