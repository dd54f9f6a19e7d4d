"""Hostile configs: mutations of real fixture documents, each with what podman-emu must do.

The oracle here is written from podman's side (reference §1.3 and §5), not from podman_emu's
models: which keys podman-emu cannot work without, which values Go's decoder itself rejects,
and what a refusal must name.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import strategies as st

Expect = Literal["refuse", "accept", "either"]

# Keys podman-emu reads, edits or needs to judge "is it running": without them (or with a
# value of the wrong type) it cannot convert safely and must say which key is the problem.
# DiskSize is critical in the 4.1+ layout only: podman 3.3 wrote V1 files without it.
CRITICAL_COMMON = ("CmdLine", "ImagePath", "Name", "QMPMonitor")
CRITICAL_V2 = (*CRITICAL_COMMON, "DiskSize", "ConfigPath", "UID", "PidFilePath", "Starting")
# podman 5 stores no command line: podman-emu builds podman's argv from these, and the qemu
# wrapper finds the machine by its QEMUPidPath.
CRITICAL_V5 = ("Version", "Name", "Resources", "SSH", "ImagePath", "QEMUHypervisor", "Starting")
# Go integer types of podman's struct fields (reference §1.3): uint64 and int (64-bit).
UINT64_KEYS = ("CPUs", "Memory", "DiskSize")
INT64_KEYS = ("Port", "UID")
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1

# Characters that trip naive handling: Go's HTML escapes, JS line terminators, controls, DEL,
# bidi override, BOM, combining marks, non-BMP, quotes and backslashes, non-ASCII letters.
ODD_CHARS = (
    "<",
    ">",
    "&",
    "\u2028",
    "\u2029",
    "\x01",
    "\x1b",
    "\x7f",
    "\u202e",
    "\ufeff",
    "e\u0301",
    "\U0001f600",
    "\U00010348",
    '"',
    "\\",
    "Données",
    "日本語",
    " ",
    ",",
    "=",
    "\t",
    "\n",
)


@dataclass(frozen=True)
class Case:
    """A document to put in podman's dir (bytes), what must happen, and what a refusal names."""

    label: str
    data: bytes
    expect: Expect
    # A refusal must name at least one of these (empty: the file path is enough).
    names: tuple[str, ...] = ()


class Pairs:
    """A JSON object that may repeat keys (Python dicts cannot)."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items


def _scalar(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot be UTF-8: write it as the \u escape a hostile file would hold.
        text = json.dumps(value)
    return text


def dump(value: Any, trailing_newline: bool, depth: int = 0) -> str:
    """Podman's layout (1-space indent), with Pairs support; scalars via json.dumps."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, (dict, Pairs)):
        items = value.items if isinstance(value, Pairs) else list(value.items())
        if not items:
            return "{}"
        body = ",\n".join(f"{inner}{_scalar(k)}: {dump(v, False, depth + 1)}" for k, v in items)
        text = "{\n" + body + "\n" + pad + "}"
    elif isinstance(value, list):
        if not value:
            return "[]"
        text = "[\n" + ",\n".join(inner + dump(v, False, depth + 1) for v in value) + "\n" + pad + "]"
    else:
        text = _scalar(value)
    return text + ("\n" if trailing_newline and depth == 0 else "")


def encode(content: Any, trailing_newline: bool) -> bytes:
    return dump(content, trailing_newline).encode("utf-8")


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside objects and arrays (not the root)."""
    found: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found += paths_in(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found += paths_in(item, (*prefix, index))
    return found


def get(content: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        content = content[part]
    return content


def put(content: Any, path: tuple[Any, ...], value: Any) -> None:
    get(content, path[:-1])[path[-1]] = value


def other_type_values(value: Any) -> list[Any]:
    """Values of a different JSON type than `value` (never null: Go accepts null anywhere)."""
    candidates: list[Any] = ["x", "", 7, -1, 2048.0, 1.5, True, False, [], ["x"], {}, {"Path": "/x"}]

    def kind(item: Any) -> str:
        if isinstance(item, bool):
            return "bool"
        if isinstance(item, int):
            return "int"
        return type(item).__name__

    return [item for item in candidates if kind(item) != kind(value)]


@dataclass
class Base:
    fixture: str
    data: bytes
    content: dict[str, Any]
    layout: str  # "v1" | "v2" | "v5"
    trailing_newline: bool

    @property
    def critical(self) -> tuple[str, ...]:
        return {"v2": CRITICAL_V2, "v5": CRITICAL_V5}.get(self.layout, CRITICAL_COMMON)

    @property
    def stores_cmdline(self) -> bool:
        return "CmdLine" in self.content


def _refusal_or_either(base: Base, key: str) -> Expect:
    return "refuse" if key in base.critical else "either"


@st.composite
def invalid_case(draw: st.DrawFn, bases: list[Base]) -> Case:
    """One mutation that podman-emu must refuse (or, for non-critical keys, may accept)."""
    base = draw(st.sampled_from(bases))
    content = copy.deepcopy(base.content)
    kinds = [
        "delete",
        "wrong_type",
        "null",
        "cmdline",
        "duplicate",
        "case_variant",
        "case_duplicate",
        "out_of_range",
        "name",
        "image_path",
        "lone_surrogate",
        "multi",
        "time",
    ]
    kind = draw(st.sampled_from(kinds if base.stores_cmdline else [k for k in kinds if k != "cmdline"]))
    newline = base.trailing_newline

    def finish(label: str, expect: Expect, names: tuple[str, ...], doc: Any = None) -> Case:
        return Case(f"{base.fixture}: {label}", encode(content if doc is None else doc, newline), expect, names)

    if kind == "delete":
        path = draw(st.sampled_from([p for p in paths_in(content) if not isinstance(p[-1], int)]))
        del get(content, path[:-1])[path[-1]]
        expect: Expect = _refusal_or_either(base, path[0]) if len(path) == 1 else "either"
        return finish(f"delete {'/'.join(map(str, path))}", expect, (str(path[0]),))
    if kind == "wrong_type":
        # A null says nothing about the field's type (Mounts is null in migrated files), so only
        # paths holding a value get a value of another type.
        path = draw(st.sampled_from([p for p in paths_in(content) if get(content, p) is not None]))
        value = draw(st.sampled_from(other_type_values(get(content, path))))
        put(content, path, value)
        # ImagePath's type is what tells the layouts apart: a swapped type makes the document
        # read as the other layout, whose errors then name other keys.
        names = () if path == ("ImagePath",) else (str(path[0]),)
        return finish(f"{'/'.join(map(str, path))} = {value!r}", "refuse", names)
    if kind == "null":
        path = draw(st.sampled_from(paths_in(content)))
        put(content, path, None)
        expect = _refusal_or_either(base, path[0]) if len(path) == 1 else "either"
        if path == ("CmdLine",) or (path[0] == "CmdLine" and len(path) == 2):
            expect = "refuse"
        return finish(f"{'/'.join(map(str, path))} = null", expect, (str(path[0]),))
    if kind == "cmdline":
        argv = content["CmdLine"]
        variant = draw(
            st.sampled_from(
                ["empty", "blank", "binary-only", "lone-m", "lone-smp", "lone-drive", "stray", "no-disk", "no-binary"]
            )
        )
        expect = "refuse"
        if variant == "empty":
            content["CmdLine"] = []
        elif variant == "blank":
            content["CmdLine"] = [""]
        elif variant == "binary-only":
            content["CmdLine"] = argv[:1]
        elif variant in ("lone-m", "lone-smp", "lone-drive"):
            argv.append("-" + variant.split("-", 1)[1])
        elif variant == "stray":
            argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(["foo", "", "m", "2048"])))
        elif variant == "no-disk":
            index = next(i for i, e in enumerate(argv) if e == "-drive" and "if=virtio" in argv[i + 1])
            del argv[index : index + 2]
        else:
            argv[0] = ""  # podman would look the host qemu up again; converting replaces it anyway
            expect = "either"
        return finish(f"CmdLine {variant}", expect, ("CmdLine",))
    if kind == "duplicate":
        objects = [()] + [p for p in paths_in(content) if isinstance(get(content, p), dict) and get(content, p)]
        where = draw(st.sampled_from(objects))
        target = get(content, where)
        key = draw(st.sampled_from(sorted(target)))
        again = draw(st.sampled_from([target[key], "other", 1, None]))
        items = list(target.items())
        items.insert(draw(st.integers(0, len(items))), (key, again))
        doc: Any = Pairs(items)
        if where:
            put(content, where, doc)
            doc = content
        return finish(f"duplicate {'/'.join(map(str, (*where, key)))}", "refuse", (key,), doc)
    if kind == "case_variant":
        key = draw(st.sampled_from(sorted(content)))
        variant = draw(st.sampled_from([key.lower(), key.upper(), key.swapcase()]).filter(lambda v: v != key))
        doc = {(variant if k == key else k): v for k, v in content.items()}
        return finish(f"key {key} spelled {variant}", "refuse", (variant,), doc)
    if kind == "case_duplicate":
        # Go matches keys case-insensitively and the last one wins: podman would read the
        # variant, podman-emu would edit the other one.
        key = draw(st.sampled_from([k for k in ("CmdLine", "ImagePath", "Name") if k in content]))
        variant = draw(st.sampled_from([key.lower(), key.upper()]))
        doc = dict(content)
        doc[variant] = content[key]
        return finish(f"{key} and {variant}", "refuse", (variant, key), doc)
    if kind == "out_of_range":
        # Top level in 4.x; in 5.x under Resources, SSH and HostUser.
        path = draw(
            st.sampled_from([p for p in paths_in(content) if p[-1] in (*UINT64_KEYS, *INT64_KEYS) and len(p) <= 2])
        )
        if path[-1] in UINT64_KEYS:
            value = draw(st.sampled_from([-1, -(2**63), UINT64_MAX + 1, 10**30]))
        else:
            value = draw(st.sampled_from([INT64_MAX + 1, -(2**63) - 1, 10**30]))
        put(content, path, value)
        return finish(f"{'/'.join(map(str, path))} = {value}", "refuse", (str(path[0]), str(path[-1])))
    if kind == "name":
        value = draw(st.sampled_from(["../escape", "a/b", "/etc/x", "x\x00y", "", "../../../../../../../../tmp/x"]))
        content["Name"] = value
        return finish(f"Name = {value!r}", "refuse", ("Name",))
    if kind == "image_path":
        value = draw(st.sampled_from(["disk.qcow2", "./d/disk.qcow2", "", "/x\x00y/disk.qcow2", "../disk.qcow2"]))
        if base.layout == "v1":
            content["ImagePath"] = value
        else:
            content["ImagePath"]["Path"] = value
        return finish(f"ImagePath = {value!r}", "refuse", ("ImagePath",))
    if kind == "time" and any(key in content for key in ("Created", "LastUp")):
        # time.Time: Go's decoder takes RFC 3339 only, with every field in range.
        key = draw(st.sampled_from([k for k in ("Created", "LastUp") if k in content]))
        value = draw(
            st.sampled_from(
                ["", "yesterday", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01 00:00:00Z",
                 "2026-01-01T00:00:00", "2026-01-01T00:00:00,5Z", "1700000000"]
            )
        )  # fmt: skip
        content[key] = value
        return finish(f"{key} = {value!r}", "refuse", (key,))
    if kind == "lone_surrogate":
        strings = [p for p in paths_in(content) if isinstance(get(content, p), str)]
        path = draw(st.sampled_from(strings))
        put(content, path, get(content, path) + draw(st.sampled_from(["\ud800", "\udfff", "x\udc00y"])))
        # json.dumps writes the lone surrogate as its \u escape: valid JSON, invalid Unicode.
        return finish(f"lone surrogate in {'/'.join(map(str, path))}", "refuse", (str(path[0]),))
    # multi: several wrong types at once; a refusal must name one of them.
    top = [p for p in paths_in(content) if len(p) == 1 and get(content, p) is not None]
    paths = draw(st.lists(st.sampled_from(top), min_size=2, max_size=4, unique=True))
    wrong: list[str] = []
    for path in paths:
        if path == ("ImagePath",):
            continue
        put(content, path, draw(st.sampled_from(other_type_values(get(content, path)))))
        wrong.append(str(path[0]))
    return finish(f"wrong types in {wrong}", "refuse" if wrong else "either", tuple(wrong))


odd_text = st.lists(
    st.one_of(st.sampled_from(ODD_CHARS), st.text(st.characters(exclude_categories=["Cs"]), max_size=4)),
    min_size=1,
    max_size=6,
).map("".join)


@st.composite
def valid_odd_case(draw: st.DrawFn, bases: list[Base]) -> Case:
    """Documents podman accepts and podman-emu must convert and revert exactly: odd unicode in
    free strings, unknown keys of every type, extreme but valid numbers, extra qemu options,
    big arrays, other formatting."""
    base = draw(st.sampled_from(bases))
    content = copy.deepcopy(base.content)
    edits = draw(
        st.lists(
            st.sampled_from(
                ["free_string", "mount_path", "unknown_key", "numbers", "extra_option", "big_array", "nulls"]
            ),
            min_size=1,
            max_size=4,
        )
    )
    for edit in edits:
        if edit == "free_string":
            # Created and LastUp are Go times, not free strings: see the "time" mutation.
            free = [("RemoteUsername",), ("ImageStream",), ("SSH", "RemoteUsername")]
            path = draw(
                st.sampled_from([p for p in free if p[0] in content and (len(p) == 1 or p[1] in content[p[0]])])
            )
            put(content, path, draw(odd_text))
        elif edit == "mount_path" and content.get("Mounts"):
            mount = draw(st.sampled_from(content["Mounts"]))
            mount[draw(st.sampled_from(["Source", "Target", "Tag"]))] = draw(odd_text)
        elif edit == "unknown_key":
            name = draw(odd_text.filter(lambda n: n.lower() not in {k.lower() for k in content}))
            content[name] = draw(
                st.recursive(
                    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), odd_text),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
                    max_leaves=12,
                )
            )
        elif edit == "numbers":
            numbers = content.get("Resources", content)
            ports = content.get("SSH", content)
            numbers["CPUs"] = draw(st.sampled_from([0, 1, 255, UINT64_MAX]))
            ports["Port"] = draw(st.sampled_from([0, -1, 65535, INT64_MAX, -(2**63)]))
        elif edit == "extra_option" and base.stores_cmdline:
            content["CmdLine"] += ["-name", draw(odd_text.filter(lambda t: not t.startswith("-")))]
        elif edit == "big_array" and base.stores_cmdline:
            content["CmdLine"] += ["-device", "virtio-rng-pci"] * draw(st.integers(100, 3000))

        elif edit == "nulls" and base.layout in ("v2", "v5"):
            content["Mounts"] = None
    data = encode(content, draw(st.booleans()))
    return Case(f"{base.fixture}: {edits}", data, "accept")


@st.composite
def not_json_case(draw: st.DrawFn, bases: list[Base]) -> Case:
    """Bytes that are no podman config at all."""
    base = draw(st.sampled_from(bases))
    data = base.data
    kind = draw(
        st.sampled_from(
            [
                "random",
                "truncated",
                "bom",
                "utf16",
                "top_level",
                "empty_object",
                "constant",
                "trailing_comma",
                "comment",
                "garbage_after",
                "invalid_utf8",
                "whitespace",
                "deep",
            ]
        )
    )
    expect: Expect = "refuse"
    if kind == "random":
        data = draw(st.binary(max_size=400))
    elif kind == "truncated":
        data = data[: draw(st.integers(0, data.rindex(b"}") - 1))]
    elif kind == "bom":
        data = b"\xef\xbb\xbf" + data
    elif kind == "utf16":
        data = data.decode().encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    elif kind == "top_level":
        data = draw(st.sampled_from([b"[]", b'"x"', b"1", b"null", b"true", b"[" + data + b"]"]))
    elif kind == "empty_object":
        data = b"{}"
    elif kind == "constant":
        # Memory, which every layout has (podman 3.3 wrote no DiskSize); 5.x writes it "Memory":N.
        key = b'"Memory": ' if b'"Memory": ' in data else b'"Memory":'
        constant = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        data = data.replace(key, key + constant + b', "x": ', 1)
        assert b"Infinity" in data or b"NaN" in data
    elif kind == "trailing_comma":
        data = data.rstrip().removesuffix(b"}").rstrip() + b",\n}"
    elif kind == "comment":
        data = b"// podman machine\n" + data
    elif kind == "garbage_after":
        data = data + draw(st.sampled_from([b"}", b"x", b"{}", b"\x00"]))
    elif kind == "invalid_utf8":
        key = b'"Name": "' if b'"Name": "' in data else b'"Name":"'
        at = data.index(key) + len(key)
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])) + data[at:]
    elif kind == "whitespace":
        data = draw(st.sampled_from([b"", b" ", b"\n", b"\t\r\n "]))
    else:
        # Deeper than any parser should be asked to go; valid JSON nonetheless.
        depth = draw(st.integers(900, 20000))
        data = data.rstrip().removesuffix(b"}").rstrip() + b',\n "x": ' + b"[" * depth + b"]" * depth + b"\n}"
        expect = "either"
    return Case(f"{base.fixture}: {kind}", data, expect)
