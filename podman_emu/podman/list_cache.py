"""`list` without pydantic: a config whose exact bytes passed validation before is not validated
again, so a listing of unchanged machines never imports pydantic (most of the start-up time of
`podman-emu list`, see benchmarks/cli_latency.py).

The cache is keyed by the sha256 of each config's bytes and by a fingerprint of the code that
decides validity: a new podman-emu, or an edit to any module that validates, starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from podman_emu import __version__, fsutil, paths
from podman_emu.errors import PodmanEmuError
from podman_emu.podman.layout import detect_layout
from podman_emu.podman.machines import BrokenMachine, ConfigSummary, ListedMachine, config_files, read_document

# Every module whose code decides whether a config is valid. detect_layout runs on cached
# configs too; the rest is skipped for them, so a change in any of these must start a new cache.
VALIDATING_MODULES = (
    "podman/schema.py",
    "podman/layout.py",
    "podman/podman5.py",
    "podman/document.py",
    "qemu/argv.py",
    "errors.py",
    "paths.py",
)
CACHE_ENTRIES = 512


def fingerprint() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256(__version__.encode())
    for name in VALIDATING_MODULES:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())  # a few KB each: well under a millisecond
    return digest.hexdigest()[:16]


def _cache_file() -> Path:
    return paths.cache_dir() / "validated-configs.json"


def _known_digests(cache_file: Path, current: str) -> list[str]:
    try:
        cached = json.loads(fsutil.read_cache(cache_file) or b"{}")
        digests: list[str] = cached["digests"] if cached.get("fingerprint") == current else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return digests


def scan() -> list[ListedMachine | BrokenMachine]:
    """Every machine for `list`: validated now, or known to have validated with these bytes."""
    cache_file, current = _cache_file(), fingerprint()
    known = _known_digests(cache_file, current)
    fresh: list[str] = []
    machines: list[ListedMachine | BrokenMachine] = []
    for entry in config_files():
        try:
            document = read_document(entry)
            if document.sha256 in known:
                layout = detect_layout(entry, document.content)
            else:
                # Imported here for start-up speed: only a changed config needs pydantic.
                from podman_emu.podman.schema import validate_machine

                layout, _ = validate_machine(entry, document.content)
                fresh.append(document.sha256)
            summary = ConfigSummary.from_content(document.content)
            machines.append(ListedMachine(entry.stem, document, layout, summary))
        except PodmanEmuError as error:
            machines.append(BrokenMachine(entry.stem, entry, error))
    if fresh:
        digests = (known + fresh)[-CACHE_ENTRIES:]
        fsutil.write_cache(cache_file, json.dumps({"fingerprint": current, "digests": digests}).encode())
    return machines
