"""Oracles: what podman and Go would write, and what a file tree looks like, decided here from
podman's and Go's rules, never with podman_emu's code, so these can judge it.

Nothing in this module imports podman_emu (tests/unit/test_testing.py checks).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# podman-emu's temp-file marker as the robustness suite expects it: if podman_emu's ever changes,
# these tests must be changed on purpose.
TEMP_MARKER = ".podman-emu-tmp"


def go_string_body(value: str) -> str:
    """The inside of a JSON string as Go's encoding/json writes it (HTML-safe escaping on).
    Written here from the Go rules, not taken from podman_emu, so it can judge the core."""
    body = json.dumps(value, ensure_ascii=False)[1:-1]
    # Python writes \b and \f; Go has no short forms for them.
    body = body.replace("\\b", "\\u0008").replace("\\f", "\\u000c")
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        body = body.replace(char, escaped)
    return body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def podman_bytes(content: Any, *, trailing_newline: bool, one_line: bool = False) -> bytes:
    """A document as podman serialises it: 4.x MarshalIndent(v, "", " ") (+ "\\n" for 4.5+);
    5.x json.Marshal (`one_line`: no spaces, no newline)."""
    if one_line:
        text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(content, indent=1, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + ("\n" if trailing_newline else "")).encode()


# Snapshots: "no byte changed anywhere" is checked by comparing whole trees.


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    content: str  # sha256 of a regular file, link target of a symlink, "" otherwise
    inode: int
    mtime_ns: int

    def loose(self) -> tuple[str, int, int, int, str]:
        return (self.kind, self.mode, self.uid, self.gid, self.content)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "other"


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def snapshot(*roots: Path, ignore: tuple[Path, ...] = ()) -> dict[str, Entry]:
    """Every entry under `roots` (not following symlinks): type, mode, owner, content. Trees in
    `ignore` are left out: podman-emu's cache (qemu probes, configs already validated) may be
    written by any command, read-only ones included."""
    entries: dict[str, Entry] = {}
    skipped = {str(path) for path in ignore}

    def add(path: str) -> None:
        info = os.lstat(path)
        kind = _kind(info.st_mode)
        if kind == "file":
            content = _digest(path)
        elif kind == "symlink":
            content = os.readlink(path)
        else:
            content = ""
        # A directory's mtime moves when anything is created and removed again inside it; that
        # is caught through the entries themselves, so it is not part of the comparison.
        mtime = info.st_mtime_ns if kind != "dir" else 0
        entries[path] = Entry(kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, content, info.st_ino, mtime)

    for root in roots:
        if not os.path.lexists(root):
            continue
        add(str(root))
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = [name for name in dirnames if os.path.join(directory, name) not in skipped]
            for name in dirnames + filenames:
                add(os.path.join(directory, name))
    return entries


def diff_snapshots(
    before: dict[str, Entry], after: dict[str, Entry], *, strict: bool = False, own_dirs: Path | None = None
) -> list[str]:
    """Human-readable differences; `strict` also counts a rewrite with the same bytes.
    `own_dirs`: podman-emu's state dir, where creating its own (empty, private) directories is
    not a change (taking its lock creates the journal dir)."""
    problems = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if (
            old is None
            and new is not None
            and new.kind == "dir"
            and own_dirs is not None
            and (path == str(own_dirs) or path.startswith(str(own_dirs) + os.sep))
        ):
            continue
        if old is None:
            problems.append(f"created {path}")
        elif new is None:
            problems.append(f"removed {path}")
        elif old.loose() != new.loose():
            problems.append(f"changed {path}: {old.loose()} -> {new.loose()}")
        elif strict and (old.inode, old.mtime_ns) != (new.inode, new.mtime_ns):
            problems.append(f"rewritten {path} (same bytes, new inode or mtime)")
    return problems
