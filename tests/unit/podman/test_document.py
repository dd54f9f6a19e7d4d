import json
from pathlib import Path

import pytest

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.document import parse_document
from podman_emu.podman.gojson import go_json
from testing.fixtures import FIXTURES, fixture_files


@pytest.mark.parametrize("fixture", fixture_files())
def test_every_fixture_reserialises_to_the_same_bytes(fixture: str) -> None:
    data = (FIXTURES / fixture).read_bytes()
    document = parse_document(Path(fixture), data)
    assert document.render(document.content) == data


def test_go_escapes_html_characters_and_line_separators() -> None:
    assert go_json({"a": "<&>\u2028\u2029"}) == b'{\n "a": "\\u003c\\u0026\\u003e\\u2028\\u2029"\n}'


def test_go_writes_non_ascii_raw_and_control_characters_as_u_escapes() -> None:
    assert go_json(["é", "\b\f\n\t\x01"]) == '[\n "é",\n "\\u0008\\u000c\\n\\t\\u0001"\n]'.encode()


def test_empty_containers_and_scalars_match_marshal_indent() -> None:
    assert go_json({"a": [], "b": {}, "c": None, "d": True, "e": 0}) == (
        b'{\n "a": [],\n "b": {},\n "c": null,\n "d": true,\n "e": 0\n}'
    )


def test_trailing_newline_is_kept_exactly() -> None:
    with_newline = parse_document(Path("x.json"), b'{\n "a": 1\n}\n')
    without = parse_document(Path("x.json"), b'{\n "a": 1\n}')
    assert with_newline.render({"a": 2}) == b'{\n "a": 2\n}\n'
    assert without.render({"a": 2}) == b'{\n "a": 2\n}'


def test_compact_podman5_layout_is_recognised_as_compact() -> None:
    document = parse_document(Path("x.json"), b'{"Version":1,"Name":"m"}')
    assert document.is_podman_formatted


def test_hand_edited_file_is_detected() -> None:
    document = parse_document(Path("x.json"), b'{"a":  1}')
    assert not document.is_podman_formatted


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"CmdLine": [], "CmdLine": ["x"]}', "'CmdLine' appears more than once"),
        (b"not json", "not valid JSON (line 1, column 1)"),
        (b"[1, 2]", "expected a JSON object at the top level, found list"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b'\xff{"a": 1}', "not UTF-8"),
        (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ],
)
def test_unreadable_documents_are_refused_with_the_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(ConfigInvalid) as raised:
        parse_document(Path("m.json"), data)
    assert fragment in raised.value.message
    assert raised.value.message.startswith("m.json")


def test_python_json_agrees_with_go_json_where_go_needs_no_escaping() -> None:
    value = {"CmdLine": ["/usr/bin/qemu", "-m", "2048"], "UID": 1000, "Ok": False}
    assert go_json(value) == json.dumps(value, indent=1, ensure_ascii=False).encode()
