"""Layout detection and podman's key names, without pydantic."""

from __future__ import annotations

from pathlib import Path

import pytest

from podman_emu.errors import ConfigInvalid, UnsupportedLayout
from podman_emu.podman.layout import (
    PODMAN_KEYS,
    Layout,
    detect_layout,
    image_path,
    refuse_case_variants,
    with_image_path,
)
from podman_emu.podman.schema import MachineV1, MachineV2
from testing.fixtures import image_path_of, load_fixture, manifest


def test_podman_keys_are_the_models_fields() -> None:
    assert set(MachineV1.model_fields) | set(MachineV2.model_fields) == PODMAN_KEYS


@pytest.mark.parametrize("entry", manifest(), ids=lambda entry: entry["file"])
def test_every_fixture_is_detected_as_its_layout(entry: dict[str, str]) -> None:
    content = load_fixture(entry["file"])
    assert detect_layout(Path(entry["file"]), content) is Layout(entry["layout"])
    assert image_path(content) == image_path_of(content)


def test_a_podman_5_config_is_refused_with_the_reason() -> None:
    with pytest.raises(UnsupportedLayout, match=r"podman 5\.x"):
        detect_layout(Path("m.json"), {"Version": 1, "Name": "m"})


def test_a_case_variant_is_refused_even_without_pydantic() -> None:
    with pytest.raises(ConfigInvalid, match="'imagepath' is spelled differently"):
        detect_layout(Path("m.json"), {"imagepath": "/x"})
    content = load_fixture("podman-4.9-linux-amd64.json")
    content["cmdline"] = content["CmdLine"]
    with pytest.raises(ConfigInvalid, match="podman reads whichever comes last"):
        refuse_case_variants(Path("m.json"), content)


@pytest.mark.parametrize("fixture", ["podman-3.4-linux-amd64.json", "podman-4.9-linux-amd64.json"])
def test_the_image_path_is_set_in_the_layouts_own_shape(fixture: str) -> None:
    content = load_fixture(fixture)
    updated = with_image_path(content, "/new/disk.qcow2")
    assert image_path(updated) == "/new/disk.qcow2"
    assert type(updated["ImagePath"]) is type(content["ImagePath"])
    assert image_path(content) != "/new/disk.qcow2", "the input is not modified"
