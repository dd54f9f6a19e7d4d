"""Numbers podman loads survive convert and revert as their literal text: the converted file is
JSON that Go's decoder (and a strict one) accepts, and revert gives back the very same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustness.harness import Sandbox, assert_success, invoke

MACHINE = "numbers"
LITERALS = ["1e400", "-1e400", "9e999", "9" * 5000, "-0", "2.50"]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("literal", LITERALS, ids=lambda literal: literal[:8])
def test_convert_and_revert_keep_number_literals(box: Sandbox, aarch64_disk: Path, literal: str) -> None:
    config = box.install("podman-4.9-linux-amd64.json", name=MACHINE)
    extra = b'{\n "Extra": [\n  %s\n ],\n "ConfigPath"' % literal.encode()
    config.write_bytes(config.read_bytes().replace(b'{\n "ConfigPath"', extra, 1))
    original = config.read_bytes()
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    converted = config.read_bytes()
    assert b"\n  " + literal.encode() + b"\n" in converted
    json.loads(converted, parse_constant=_refuse_constant, parse_int=str, parse_float=str)
    for command in (["list", "--json"], ["inspect", MACHINE, "--json"]):
        shown = invoke(box, *command)
        assert_success(shown)
        json.loads(shown.stdout, parse_constant=_refuse_constant, parse_int=str, parse_float=str)
    assert_success(invoke(box, "revert", MACHINE))
    assert config.read_bytes() == original
