"""Go's encoding/json output, byte for byte: what podman 4.x writes for a machine config.

podman serialises its machine struct with json.MarshalIndent(v, "", " "), and 4.5+ add a
newline (json.Encoder). Key order is the document's own (Python dicts keep it).
"""

from __future__ import annotations

import json
import math
from typing import Any

# Go's encoding/json escapes these even inside otherwise raw UTF-8 output: HTML-sensitive
# characters (json.HTMLEscape is on by default for Marshal and Encoder) and the two JavaScript
# line terminators.
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


# Python refuses to turn longer digit strings into an int (CVE-2020-10735); Go skips them in keys
# its struct does not name, so such a literal is carried as text.
_MAX_INT_DIGITS = 4000


class NumberLiteral(float):
    """A JSON number kept as the text it was written with. Go's decoder skips a number in a
    key its struct does not name without converting it, so podman loads 1e400 or a 5000-digit
    integer there; Python's float would turn it into inf and write `Infinity`, which no JSON
    decoder accepts. Its float value (inf for an overflow) is what validation reads."""

    literal: str

    def __new__(cls, literal: str) -> NumberLiteral:
        number = super().__new__(cls, literal)
        number.literal = literal
        return number

    def __reduce__(self) -> tuple[type[NumberLiteral], tuple[str]]:
        return NumberLiteral, (self.literal,)

    def __repr__(self) -> str:
        return self.literal


def parse_number(literal: str) -> int | NumberLiteral:
    """json.loads' parse_int/parse_float hook: an int when Python writes it back the same way,
    else the literal itself."""
    if literal.lstrip("-").isdigit() and literal != "-0" and len(literal) <= _MAX_INT_DIGITS:
        return int(literal)
    return NumberLiteral(literal)


def _go_string(value: str) -> str:
    out = ['"']
    for char in value:
        escaped = _GO_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            # Go (up to 1.21, which podman 4.x is built with) has no short \b or \f form.
            out.append(f"\\u{ord(char):04x}")
        elif "\ud800" <= char <= "\udfff":
            # A lone surrogate cannot be UTF-8; Go writes U+FFFD for invalid input.
            out.append("\ufffd")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _go_scalar(value: Any) -> str:
    if isinstance(value, str):
        return _go_string(value)
    if isinstance(value, NumberLiteral):
        return value.literal
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return json.dumps(value)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _emit(value: Any, indent: str, depth: int, out: list[str]) -> None:
    newline = "\n" + indent * (depth + 1) if indent else ""
    closing = "\n" + indent * depth if indent else ""
    separator = ": " if indent else ":"
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for position, (key, item) in enumerate(value.items()):
            if position:
                out.append(",")
            out.append(newline)
            out.append(_go_string(key))
            out.append(separator)
            _emit(item, indent, depth + 1, out)
        out.append(closing + "}")
    elif isinstance(value, list):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for position, item in enumerate(value):
            if position:
                out.append(",")
            out.append(newline)
            _emit(item, indent, depth + 1, out)
        out.append(closing + "]")
    else:
        out.append(_go_scalar(value))


def go_json(value: Any, *, indent: str = " ", trailing_newline: bool = False) -> bytes:
    """Serialise like Go's json.MarshalIndent(v, "", indent) (+ "\\n" like json.Encoder)."""
    out: list[str] = []
    _emit(value, indent, 0, out)
    if trailing_newline:
        out.append("\n")
    return "".join(out).encode("utf-8")
