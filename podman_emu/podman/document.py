"""The raw machine document: bytes in, bytes out, exactly as podman writes them.

Validation reads the pydantic model; every write edits this raw, order-preserving document and
serialises it the way Go's encoding/json does (gojson.py), so a file podman wrote and podman-emu
rewrote differs only where podman-emu meant it to.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.gojson import go_json, parse_number

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class ByteFormat:
    """How the file was laid out, so a rewrite keeps it: podman 3.4–4.4 write no trailing
    newline, 4.5–4.9 write one; a user-edited file keeps whatever it had."""

    trailing_newline: bool
    indent: str = " "


@dataclass(frozen=True)
class RawDocument:
    path: Path
    data: bytes
    content: JsonObject
    byte_format: ByteFormat

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)

    def render(self, content: JsonObject) -> bytes:
        return go_json(content, indent=self.byte_format.indent, trailing_newline=self.byte_format.trailing_newline)

    @property
    def is_podman_formatted(self) -> bool:
        """True when re-serialising gives back the very same bytes (podman wrote it, or an
        editor that happens to agree)."""
        return self.render(self.content) == self.data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> JsonObject:
    result: JsonObject = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# podman's configs nest 3 levels; past this, copying and diffing the document would exhaust
# Python's recursion limit (json.loads itself accepts nearly 1000 levels).
MAX_DEPTH = 100
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _refuse_unwritable_values(path: Path, content: JsonObject) -> None:
    """Refuse what podman never writes and podman-emu could not carry through: a lone UTF-16
    surrogate escape (valid JSON, but not text: it cannot be encoded, logged or journaled) and
    absurd nesting. Iterative, because deep recursion is one of the things it guards against."""
    stack: list[tuple[Any, int, str]] = [(content, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigInvalid(
                f"{path}: nested more than {MAX_DEPTH} levels deep under key {where.split('/')[1]!r}",
                hint="podman writes 3 levels at most; this is not a file podman wrote.",
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise ConfigInvalid(
                        f"{path}: key {key!r} at {where or '/'} holds a lone UTF-16 surrogate escape",
                        hint="That is not text (podman reads it as U+FFFD); this is not a file podman wrote.",
                    )
                stack.append((item, depth + 1, f"{where}/{key}"))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{where}/{index}") for index, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise ConfigInvalid(
                f"{path}: the value at {where} holds a lone UTF-16 surrogate escape",
                hint="That is not text (podman reads it as U+FFFD); this is not a file podman wrote.",
            )


def parse_document(path: Path, data: bytes) -> RawDocument:
    """Parse podman's bytes; refuse anything podman-emu could not write back faithfully."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigInvalid(
            f"{path}: not UTF-8 text (invalid byte at offset {exc.start})",
            hint="This is not a file podman wrote. Restore it from a backup or recreate the machine.",
        ) from None
    try:
        content = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_int=parse_number,
            parse_float=parse_number,
        )
    except _DuplicateKey as exc:
        raise ConfigInvalid(
            f"{path}: key {exc.key!r} appears more than once",
            hint="podman silently uses the last one; remove the duplicate so it is clear which "
            "value is meant, then run the command again.",
        ) from None
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc) or "too deeply nested"
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigInvalid(
            f"{path}: not valid JSON{where}: {detail}",
            hint="podman cannot load this machine either. Restore the file from a backup, or remove "
            "the machine with `podman machine rm` and create it again.",
        ) from None
    if not isinstance(content, dict):
        raise ConfigInvalid(
            f"{path}: expected a JSON object at the top level, found {type(content).__name__}",
            hint="This is not a podman machine config.",
        )
    _refuse_unwritable_values(path, content)
    return RawDocument(
        path=path,
        data=data,
        content=content,
        # podman 5.x writes one compact line; 4.x always indents with one space.
        byte_format=ByteFormat(
            trailing_newline=data.endswith(b"\n"), indent="" if data.lstrip().startswith(b'{"') else " "
        ),
    )
