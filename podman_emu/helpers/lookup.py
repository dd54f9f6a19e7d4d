"""Which real helper binary podman would have run had podman-emu's directory not come first.

podman's FindHelperBinary tries each `helper_binaries_dir` entry in order and takes the first
executable file of that name (podman v5.4.2 vendor/github.com/containers/common/pkg/config/
config.go:1096-1142); for qemu it then tries `$PATH`, for gvproxy it does not. podman-emu's own
directory is skipped wherever it appears, or a wrapper would exec itself.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from podman_emu.conversion.helper_registry import Registry, RegistryDamaged, read_registry
from podman_emu.host.containers_conf import dropin_path, effective_helper_dirs


def next_helper(name: str, directories: Sequence[str], own_dir: str | None, *, search_path: bool) -> str | None:
    candidates = list(directories)
    if search_path:
        candidates += os.environ.get("PATH", os.defpath).split(os.pathsep)
    own = os.path.abspath(own_dir) if own_dir else None
    for directory in candidates:
        if not directory or (own and os.path.abspath(directory) == own):
            continue
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass(frozen=True)
class HelperContext:
    """What every helper podman runs reads first: podman-emu's registry (None when there is none
    or it cannot be trusted: native machines must keep starting), and the helper dirs to search."""

    registry: Registry | None
    own_dir: str
    next_dirs: list[str]
    damaged: bool = False

    def damaged_registry_names(self, registry_file: str, value: str) -> bool:
        """A registry that cannot be parsed may still name this machine: then it is refused,
        never handed to the native binary (its disk is aarch64)."""
        if not self.damaged:
            return False
        try:
            with open(registry_file, "rb") as handle:
                return json.dumps(value).encode() in handle.read(1 << 20)
        except OSError:
            return False


def helper_context(registry_file: str) -> HelperContext:
    try:
        registry = read_registry(Path(registry_file))
    except RegistryDamaged as error:
        sys.stderr.write(f"podman-emu: ignoring its start-helper registry ({error})\n")
        registry = None
    own_dir = registry.helper_dir if registry else os.path.dirname(os.path.abspath(sys.argv[0]))
    if registry is not None:
        return HelperContext(registry, own_dir, list(registry.next_helper_dirs))
    # No record of the list podman used before podman-emu's drop-in: read it again from the
    # containers.conf chain, without that drop-in.
    previous = effective_helper_dirs(exclude=[dropin_path()])
    return HelperContext(None, own_dir, list(previous.dirs), damaged=Path(registry_file).exists())
