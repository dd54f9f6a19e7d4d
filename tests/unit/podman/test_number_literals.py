"""Numbers are kept as Go keeps them: the literal's text, never a float's repr.

podman 4.3.1 (checked with `podman machine list` as an unprivileged user) loads a config holding
1e400, -1e400, 9e999 or a 5000-digit integer in an unknown key, an array or a mount entry: Go's
decoder checks the literal's syntax and skips what its struct does not name. podman-emu must load
such a file and write those literals back as they were, never `Infinity` (which no JSON decoder
accepts), and refuse 1e400 where podman needs a number (CPUs is a uint64 there).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podman_emu.errors import ConfigInvalid
from podman_emu.podman.document import parse_document
from podman_emu.podman.machines import load_machine_file
from testing.fixtures import FIXTURES

FIXTURE = "podman-4.3-linux-amd64.json"
EDGES = ["1e400", "-1e400", "9e999", "9" * 5000, "-" + "9" * 5000, "-0", "1E+2", "0.0", "1e-400", "2.50", "1e2"]
LITERALS = st.sampled_from(EDGES) | st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?\Z", fullmatch=True
)
PLACES = ["unknown key", "array", "mount entry"]
COUNTS: dict[str, int] = {}


def _strict(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse, parse_int=str, parse_float=str)


def _with_literal(place: str, literal: str) -> bytes:
    text = (FIXTURES / FIXTURE).read_text()
    if place == "unknown key":
        text = text.replace('{\n "ConfigPath"', f'{{\n "Extra": {literal},\n "ConfigPath"', 1)
    elif place == "array":
        text = text.replace('{\n "ConfigPath"', f'{{\n "Extra": [\n  1,\n  {literal}\n ],\n "ConfigPath"', 1)
    else:
        text = text.replace('"Mounts": [\n  {\n', f'"Mounts": [\n  {{\n   "Extra": {literal},\n', 1)
    assert literal in text
    return text.encode()


@settings(max_examples=400, deadline=None, database=None)
@given(place=st.sampled_from(PLACES), literal=LITERALS)
def test_a_number_literal_is_written_back_as_it_was(place: str, literal: str) -> None:
    COUNTS[place] = COUNTS.get(place, 0) + 1
    data = _with_literal(place, literal)
    document = parse_document(Path("/m.json"), data)
    rendered = document.render(document.content)
    assert rendered == data
    _strict(rendered)


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("literal", ["1e400", "-1e400", "9e999", "9" * 5000])
def test_podman_loadable_numbers_load(tmp_path: Path, place: str, literal: str) -> None:
    config = tmp_path / "m.json"
    config.write_bytes(_with_literal(place, literal))
    machine = load_machine_file(config)
    assert machine.document.render(machine.document.content) == config.read_bytes()


def test_an_overflowing_number_where_podman_needs_one_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "m.json"
    config.write_bytes((FIXTURES / FIXTURE).read_bytes().replace(b'"CPUs": 1,', b'"CPUs": 1e400,'))
    assert b"1e400" in config.read_bytes()
    with pytest.raises(ConfigInvalid, match="CPUs"):
        load_machine_file(config)
