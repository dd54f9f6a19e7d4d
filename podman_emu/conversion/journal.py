"""The conversion journal: what convert changed and created, so revert can be exact.

It lives in podman-emu's own state dir, never in podman's JSON (podman rewrites that file from
its struct and drops every key it does not know). The journal is written before anything else
changes and always says which state the files may be in; the config's checksum then tells which
of those states is real.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from podman_emu import paths
from podman_emu.conversion.artifacts import MachineKind, journal_dir, journal_path
from podman_emu.errors import ConversionStateError
from podman_emu.fsutil import read_regular, refuse_shared, remove_quietly, write_private

SCHEMA = 1
Status = Literal["converting", "converted", "reverting"]


@dataclass(frozen=True)
class CreatedFile:
    role: str
    path: str
    detail: str = ""
    sha256: str | None = None


@dataclass
class Journal:
    machine: str
    config_path: str
    status: Status
    original_b64: str
    original_sha256: str
    converted_sha256: str
    native_cmdline: list[str]
    native_image_path: str
    created: list[CreatedFile] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema: int = SCHEMA

    @property
    def original_bytes(self) -> bytes:
        return base64.b64decode(self.original_b64)

    def file(self, role: str) -> CreatedFile | None:
        return next((item for item in self.created if item.role == role), None)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n").encode()


def _decode(path: Path, raw: bytes) -> Journal:
    try:
        data = json.loads(raw)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unknown schema {data.get('schema')!r}")
        data["created"] = [CreatedFile(**item) for item in data.get("created", [])]
        return Journal(**data)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConversionStateError(
            f"the conversion journal {path} is unreadable ({exc})",
            hint="It was not written by this version of podman-emu, or was damaged. `podman-emu doctor` "
            "shows what it refers to; move it away to treat the machine as never converted.",
        ) from None


def _refuse_shared_state() -> None:
    # A journal someone else could have planted would steer revert's writes and removals.
    refuse_shared(paths.state_dir(), journal_dir())


def load_journal(config_path: Path) -> Journal | None:
    _refuse_shared_state()
    path = journal_path(config_path)
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConversionStateError(
            f"the conversion journal {path} cannot be read: {exc.strerror}",
            hint="podman-emu writes its journals as regular files; move this one away to treat the machine "
            "as never converted.",
        ) from None
    return _decode(path, raw)


def save_journal(journal: Journal) -> Path:
    path = journal_path(Path(journal.config_path))
    write_private(path, journal.to_json())
    return path


def delete_journal(config_path: Path) -> None:
    remove_quietly(journal_path(config_path))


def all_journals() -> list[tuple[Path, Journal | ConversionStateError]]:
    _refuse_shared_state()
    directory = journal_dir()
    try:
        entries = sorted(directory.glob("*.json"))
    except OSError:
        return []
    found: list[tuple[Path, Journal | ConversionStateError]] = []
    for entry in entries:
        try:
            found.append((entry, _decode(entry, read_regular(entry))))
        except ConversionStateError as error:
            found.append((entry, error))
        except OSError:
            continue
    return found


def settle_journal(journal: Journal | None, *, current_sha256: str, emulated: bool) -> Journal | None:
    """What a journal means for the config as it is now (pure). A "converting" journal left by a
    crash is settled by the config's checksum: the new file is there -> converted; the old one ->
    the conversion never happened (None)."""
    if journal is None or journal.status != "converting":
        return journal
    if current_sha256 == journal.converted_sha256:
        return replace(journal, status="converted")
    # Podman may have rewritten the file since the crash (list, set): the CmdLine tells.
    if current_sha256 != journal.original_sha256 and emulated:
        return replace(journal, status="converted")
    return None


def emulation_status(journal: Journal | None, *, current_sha256: str, kind: MachineKind) -> str:
    """native, native-arm64, emulated, emulated-unmanaged (aarch64 under TCG without a journal), or
    an interrupted state."""
    emulated = kind == "emulated"
    if journal is None:
        if kind == "native-arm64":
            return "native-arm64"
        return "emulated-unmanaged" if emulated else "native"
    if journal.status == "converting":
        if current_sha256 == journal.original_sha256:
            return "native (interrupted convert)"
        return "emulated" if emulated else "native (interrupted convert)"
    if journal.status == "reverting":
        return "emulated (interrupted revert)" if emulated else "native (interrupted revert)"
    return "emulated" if emulated else "native (podman rewrote it; stale journal)"
