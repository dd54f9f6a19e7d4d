"""Finding and reading podman's machine configs, and what list reads from them."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from podman_emu.errors import ConfigInvalid, MachineNotFound, UsageError
from podman_emu.podman.machines import (
    MAX_CONFIG_BYTES,
    ConfigSummary,
    ConfiguredQemu,
    config_path_for,
    load_machine,
    machine_names,
    read_config_bytes,
)
from podman_emu.podman.schema import validate_machine
from podman_emu.qemu.argv import first_value
from testing.fixtures import fixture_files, load_fixture
from testing.podman_home import Sandbox


@pytest.mark.parametrize("name", ["a/b", "..", ".", "x\x00y"])
def test_a_name_that_cannot_be_a_file_name_is_a_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match="is not a machine name"):
        config_path_for(name)


def test_configs_are_found_where_podman_keeps_them(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "beta")
    podman_home.install("podman-4.3-linux-amd64.json", "alpha")
    (podman_home.config_dir / "alpha.ign").write_text("{}")
    assert config_path_for("alpha") == podman_home.config("alpha")
    assert machine_names() == ["alpha", "beta"]
    loaded = load_machine("alpha")
    assert loaded.name == "alpha" and loaded.layout.value == "v2" and loaded.config.Name == "alpha"


def test_each_way_a_config_cannot_be_read_is_named(podman_home: Sandbox) -> None:
    directory = podman_home.config_dir
    with pytest.raises(MachineNotFound, match="no machine config"):
        read_config_bytes(directory / "missing.json")
    (directory / "dir.json").mkdir()
    with pytest.raises(ConfigInvalid, match="not a regular file"):
        read_config_bytes(directory / "dir.json")
    os.mkfifo(directory / "fifo.json")
    with pytest.raises(ConfigInvalid, match="not a regular file"):  # and no hang on the open
        read_config_bytes(directory / "fifo.json")
    (directory / "loop.json").symlink_to("loop.json")
    with pytest.raises(ConfigInvalid, match="loops"):
        read_config_bytes(directory / "loop.json")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(directory / "sock.json"))
    with pytest.raises(ConfigInvalid):
        read_config_bytes(directory / "sock.json")
    with (directory / "big.json").open("wb") as big:
        big.truncate(MAX_CONFIG_BYTES + 1)
    with pytest.raises(ConfigInvalid, match="larger than 16 MiB"):
        read_config_bytes(directory / "big.json")


@pytest.mark.parametrize("fixture", fixture_files())
def test_the_summary_list_reads_agrees_with_the_validated_model(fixture: str) -> None:
    """list skips pydantic for configs validated before; what it reads instead must be what the
    models would have said."""
    content = load_fixture(fixture)
    _, model = validate_machine(Path(fixture), content)
    summary = ConfigSummary.from_content(content)
    assert (summary.Name, summary.CmdLine, summary.CPUs, summary.Memory, summary.DiskSize) == (
        model.Name,
        model.CmdLine,
        model.CPUs,
        model.Memory,
        model.DiskSize,
    )
    assert summary.image_path == model.image_path
    assert summary.qmp_socket == model.qmp_socket
    assert summary.pid_files == model.pid_files
    assert summary.vm_pid_file == model.vm_pid_file
    assert summary.starting == model.starting
    assert ConfiguredQemu.of(summary) == ConfiguredQemu.of(model)


def test_the_configured_qemu_is_read_from_the_command_line() -> None:
    content = load_fixture("podman-4.3-linux-amd64-after-set.json")
    configured = ConfiguredQemu.of(ConfigSummary.from_content(content))
    assert configured.qemu == content["CmdLine"][0]
    assert configured.cpu == first_value(content["CmdLine"], "-cpu")
    assert (configured.cpus, configured.memory_mib) == (content["CPUs"], content["Memory"])
