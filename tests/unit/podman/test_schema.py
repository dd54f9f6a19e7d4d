import json
from pathlib import Path
from typing import Any

import pytest

from podman_emu.errors import ConfigInvalid, UnsupportedLayout
from podman_emu.podman.layout import Layout, guess_podman_version
from podman_emu.podman.schema import MachineV1, MachineV2, validate_machine
from testing.fixtures import FIXTURES, manifest


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("entry", manifest(), ids=lambda entry: entry["file"])
def test_every_fixture_validates_with_its_layout(entry: dict[str, Any]) -> None:
    layout, machine = validate_machine(Path(entry["file"]), load(entry["file"]))
    assert layout.value == entry["layout"]
    assert machine.Name == entry["name"]
    assert machine.CmdLine[0].endswith("qemu-system-x86_64")


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("podman-3.3.1-linux-amd64.json", "3.3"),
        ("podman-3.4.0-darwin-amd64.json", "3.4.0-3.4.4"),
        ("podman-3.4.4-linux-amd64.json", "3.4.0-3.4.4"),
        ("podman-3.4-linux-amd64.json", "3.4"),
        ("podman-4.0-linux-amd64.json", "4.0"),
        ("podman-4.1-linux-amd64.json", "4.1"),
        ("podman-4.3-linux-amd64.json", "4.2+"),
        ("podman-4.8-linux-amd64.json", "4.8+"),
    ],
)
def test_podman_version_is_inferred_from_the_keys(fixture: str, expected: str) -> None:
    content = load(fixture)
    layout = Layout.V1 if isinstance(content["ImagePath"], str) else Layout.V2
    assert guess_podman_version(content, layout) == expected


def test_keys_podman_3_3_and_3_4_0_did_not_write_are_not_required() -> None:
    """Go gives a missing key its zero value and podman 4.x loads (and migrates) these files."""
    _, machine = validate_machine(Path("m.json"), load("podman-3.3.1-darwin-amd64.json"))
    assert isinstance(machine, MachineV1)
    assert machine.DiskSize is None and machine.ImageStream is None
    _, machine = validate_machine(Path("m.json"), load("podman-3.4.0-linux-amd64.json"))
    assert isinstance(machine, MachineV1)
    assert machine.DiskSize == 10 and machine.ImageStream is None


def test_a_podman5_file_without_its_provider_section_is_refused_as_damaged() -> None:
    with pytest.raises(UnsupportedLayout) as raised:
        validate_machine(Path("m.json"), {"Version": 1, "Name": "m"})
    assert "podman 5.x" in raised.value.message and "QEMUHypervisor" in raised.value.message
    assert raised.value.hint is not None and "cannot start it either" in raised.value.hint


def test_missing_uid_names_the_key_and_explains_the_consequence() -> None:
    content = load("podman-4.3-linux-amd64.json")
    del content["UID"]
    with pytest.raises(ConfigInvalid) as raised:
        validate_machine(Path("m.json"), content)
    assert "key 'UID' is missing" in raised.value.message
    assert raised.value.hint is not None and "incompatible" in raised.value.hint


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("Memory", 2048.0, "key 'Memory': input should be a valid integer, found 2048.0"),
        ("CmdLine", [], "key 'CmdLine'"),
        ("CmdLine", None, "key 'CmdLine'"),
        ("CPUs", -1, "key 'CPUs'"),
        ("ImagePath", "/x", "key 'ImagePath'"),
        ("Starting", "no", "key 'Starting'"),
    ],
)
def test_wrong_types_name_file_key_expectation_and_value(key: str, value: Any, fragment: str) -> None:
    content = load("podman-4.3-linux-amd64.json")
    content[key] = value
    if key == "ImagePath":
        content["ConfigPath"] = {"Path": "/x.json"}
    with pytest.raises(ConfigInvalid) as raised:
        validate_machine(Path("m.json"), content)
    assert raised.value.message.startswith("m.json: ")
    assert fragment in raised.value.message


def test_unknown_keys_are_tolerated() -> None:
    content = load("podman-4.9-linux-amd64.json")
    content["FutureKey"] = {"x": 1}
    _, machine = validate_machine(Path("m.json"), content)
    assert isinstance(machine, MachineV2)


def test_case_variant_key_is_refused_not_guessed() -> None:
    content = load("podman-4.9-linux-amd64.json")
    content["cmdline"] = content.pop("CmdLine")
    with pytest.raises(ConfigInvalid) as raised:
        validate_machine(Path("m.json"), content)
    assert "'cmdline'" in raised.value.message and "'CmdLine'" in raised.value.message


def test_not_a_machine_config() -> None:
    with pytest.raises(ConfigInvalid) as raised:
        validate_machine(Path("m.json"), {"hello": "world"})
    assert "not a podman machine config" in raised.value.message


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("2026-04-20T10:12:05.918274571+02:00", True),  # what podman writes
        ("0001-01-01T00:00:00Z", True),  # Go's zero time: LastUp before the first start
        ("2024-02-29T23:59:59Z", True),
        ("2026-12-03T16:43:46.4919656821234Z", True),  # Go reads more than 9 digits, keeps 9
        ("2023-02-29T00:00:00Z", False),
        ("2026-01-01T24:00:00Z", False),
        ("2026-01-01 00:00:00Z", False),
        ("2026-01-01T00:00:00", False),  # no zone
        ("2026-01-01T00:00:00,5Z", False),  # strict RFC 3339: a period only
        ("yesterday", False),
    ],
)
@pytest.mark.parametrize("fixture", ["podman-4.9-linux-amd64.json", "podman-5.8-linux-amd64-qemu.json"])
def test_created_and_last_up_are_go_times(fixture: str, value: str, accepted: bool) -> None:
    content = load(fixture)
    content["LastUp"] = value
    if accepted:
        validate_machine(Path("m.json"), content)
        return
    with pytest.raises(ConfigInvalid) as raised:
        validate_machine(Path("m.json"), content)
    message = raised.value.message
    assert "key 'LastUp'" in message and any(why in message for why in ("RFC 3339", "out of range", "does not exist"))
