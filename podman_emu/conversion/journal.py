"""The conversion journal: what convert changed and created, so revert can be exact.

It lives in podman-emu's own state dir, never in podman's JSON (podman rewrites that file from
its struct and drops every key it does not know). The journal is written before anything else
changes and always says which state the files may be in; the config's checksum then tells which
of those states is real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from podman_emu import paths
from podman_emu.conversion.artifacts import MachineKind, journal_dir, journal_path
from podman_emu.errors import ConversionStateError
from podman_emu.fsutil import read_regular, refuse_shared, remove_quietly, write_private
from podman_emu.podman.gojson import parse_number
from podman_emu.podman.layout import path_value

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

    @property
    def original_content(self) -> dict[str, Any]:
        content: dict[str, Any] = _parse_config(self.original_bytes)  # an object: checked when loaded
        return content

    def file(self, role: str) -> CreatedFile | None:
        return next((item for item in self.created if item.role == role), None)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n").encode()


ROLES = ("vars", "disk", "console")
STATUSES: tuple[Status, ...] = ("converting", "converted", "reverting")
_DIGEST = re.compile(r"[0-9a-f]{64}")
# What Go writes for a zero time.Time; podman 4.1+ migrating a 3.x/4.0 config (no Created) writes it.
ZERO_CREATED = "0001-01-01T00:00:00Z"


def _parse_config(data: bytes) -> Any:
    # podman loads numbers Python's int() refuses (5000 digits): keep them as text.
    return json.loads(data, parse_int=parse_number, parse_float=parse_number)


class _Damaged(ValueError):
    """A journal field that is missing, of the wrong type or inconsistent with the others."""


def _kind(value: object) -> str:
    return "missing" if value is None else f"a JSON {type(value).__name__}"


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise _Damaged(f"{name} is {_kind(value)}, not a string")
    return value


def _absolute(value: str, name: str) -> str:
    if not os.path.isabs(value) or "\x00" in value:
        raise _Damaged(f"{name} {value!r} is not an absolute path")
    return value


def _digest(value: object, name: str) -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise _Damaged(f"{name} is not a sha256 digest")
    return value


def _created_file(item: object) -> CreatedFile:
    if not isinstance(item, dict) or set(item) - {"role", "path", "detail", "sha256"}:
        raise _Damaged("an entry of created is not a {role, path, detail, sha256} object")
    role = _text(item, "role")
    if role not in ROLES:
        raise _Damaged(f"created names a file of unknown role {role!r}")
    detail = item.get("detail", "")
    if not isinstance(detail, str):
        raise _Damaged("the detail of a created file is not a string")
    sha256 = item.get("sha256")
    path = _absolute(_text(item, "path"), "a created file")
    return CreatedFile(role, path, detail, None if sha256 is None else _digest(sha256, "sha256"))


def _original(data: dict[str, Any], cmdline: list[str], image: str) -> str:
    """The journal's copy of the original config, checked against its digest and against the
    fields revert uses: a damaged copy would be written into podman's config as it is."""
    encoded = _text(data, "original_b64")
    try:
        original = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise _Damaged("original_b64 is not base64") from None
    if hashlib.sha256(original).hexdigest() != _digest(data.get("original_sha256"), "original_sha256"):
        raise _Damaged("its copy of the original config does not match the sha256 it records")
    try:
        content = _parse_config(original)
        matches = (
            # Not Name: podman names a machine by its file, and a file's Name may differ.
            isinstance(content, dict)
            and content.get("CmdLine", []) == cmdline
            and path_value(content.get("ImagePath")) == image
        )
    except (ValueError, TypeError, KeyError):
        matches = False
    if not matches:
        raise _Damaged("its copy of the original config is not the native config it describes")
    return encoded


def _journal(data: object) -> Journal:
    if not isinstance(data, dict):
        raise _Damaged(f"it is {_kind(data)}, not a JSON object")
    if type(data.get("schema")) is not int or data["schema"] != SCHEMA:  # True == 1 in Python
        raise _Damaged(f"unknown schema {data.get('schema')!r}")
    unknown = set(data) - {item.name for item in fields(Journal)}
    if unknown:
        raise _Damaged(f"unknown fields {sorted(unknown)}")
    machine = _text(data, "machine")
    status = _text(data, "status")
    if status not in STATUSES:
        raise _Damaged(f"unknown status {status!r}")
    cmdline = data.get("native_cmdline")
    # Empty for a podman 5 machine, whose config stores no command line (checked against the
    # original below: a 4.x original always has one).
    if not isinstance(cmdline, list) or not all(isinstance(item, str) for item in cmdline):
        raise _Damaged("native_cmdline is not a list of strings")
    image = _absolute(_text(data, "native_image_path"), "native_image_path")
    created = data.get("created")
    if not isinstance(created, list):
        raise _Damaged(f"created is {_kind(created)}, not a list")
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise _Damaged(f"options is {_kind(options)}, not an object")
    return Journal(
        machine=machine,
        config_path=_absolute(_text(data, "config_path"), "config_path"),
        status=next(known for known in STATUSES if known == status),
        original_b64=_original(data, cmdline, image),
        original_sha256=data["original_sha256"],
        converted_sha256=_digest(data.get("converted_sha256"), "converted_sha256"),
        native_cmdline=cmdline,
        native_image_path=image,
        created=[_created_file(item) for item in created],
        options=options,
        timestamp=_text(data, "timestamp") if "timestamp" in data else "unknown",
    )


DAMAGED_HINT = (
    "Nothing was changed. The journal is podman-emu's only record of the machine's native config: "
    "restore it from a backup if you have one. Otherwise move it away; the machine then shows as "
    "emulated-unmanaged (or native) in `podman-emu list`, and `podman machine rm` + `podman machine "
    "init` recreates it. `podman-emu doctor` shows the files it refers to."
)


def _decode(path: Path, raw: bytes) -> Journal:
    try:
        return _journal(json.loads(raw))
    except (ValueError, RecursionError) as exc:
        reason = "not valid JSON" if isinstance(exc, json.JSONDecodeError) else str(exc) or "nested too deeply"
        raise ConversionStateError(f"the conversion journal {path} is damaged: {reason}", hint=DAMAGED_HINT) from None


def _read(path: Path) -> bytes | None:
    try:
        return read_regular(path)  # never blocks: a FIFO planted here is an error, not a hang
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConversionStateError(
            f"the conversion journal {path} cannot be read: {(exc.strerror or str(exc)).lower()}",
            hint="Nothing was changed. Make it a readable file again (it belongs to the user who owns the "
            "machine, mode 0600), or move it away to treat the machine as never converted.",
        ) from None


def _refuse_shared_state() -> None:
    # A journal someone else could have planted would steer revert's writes and removals.
    refuse_shared(paths.state_dir(), journal_dir())


def load_journal(config_path: Path) -> Journal | None:
    _refuse_shared_state()
    path = journal_path(config_path)
    raw = _read(path)
    if raw is None:
        return None
    journal = _decode(path, raw)
    if journal.config_path != str(config_path.absolute()):
        raise ConversionStateError(
            f"the conversion journal {path} is damaged: it was written for {journal.config_path}, not {config_path}",
            hint=DAMAGED_HINT,
        )
    return journal


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
            raw = _read(entry)
            if raw is not None:
                found.append((entry, _decode(entry, raw)))
        except ConversionStateError as error:
            found.append((entry, error))
    return found


def created_stamp(content: Mapping[str, Any]) -> str:
    """When podman created the machine; configs from before podman 4.1 have no Created, which
    podman's migration then writes as Go's zero time."""
    value = content.get("Created", ZERO_CREATED)
    return value if isinstance(value, str) else json.dumps(value)


def stranger_reason(journal: Journal, content: Mapping[str, Any], current_sha256: str) -> str | None:
    """Why `content` is not the machine `journal` was written for (pure), or None when it is.

    `podman machine rm` + `init` under the same name leaves the old journal beside a new config.
    podman keeps Created through every rewrite (list, set, start) and init sets a new one; configs
    without a Created are told apart by their disk, which podman never changes either: the
    converted machine has the aarch64 disk, the native one the disk the journal recorded."""
    if current_sha256 in (journal.original_sha256, journal.converted_sha256):
        return None
    was, now = created_stamp(journal.original_content), created_stamp(content)
    # A pre-4.1 original carries no creation time: podman's migration stamps the first rewrite
    # with the time of that rewrite, so a differing Created proves nothing and the disk decides.
    if was != ZERO_CREATED and was != now:
        return f"that machine was created {was}, this one {now}"
    disk = journal.file("disk")
    known = {journal.native_image_path, *([disk.path] if disk is not None else [])}
    try:
        current = path_value(content["ImagePath"])
    except (KeyError, TypeError):
        return "this config has no ImagePath"
    if current not in known:
        return f"that machine's disk was {journal.native_image_path}, this one's is {current}"
    return None


def stranger_error(journal: Journal, config_path: Path, reason: str) -> ConversionStateError:
    name = journal.machine
    return ConversionStateError(
        f"the conversion journal {journal_path(config_path)} was written for an earlier machine named {name!r} "
        f"({reason})",
        hint=f"`podman machine rm` + `podman machine init` made a new machine under the same name; the journal "
        f"and the files it names belong to the old one. Nothing was changed. `podman-emu cleanup {name}` "
        "removes what the old machine left (never a file a current machine uses); then run the command again.",
    )


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
