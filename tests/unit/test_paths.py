"""Where things live: podman's XDG rules for its files, podman-emu's own state and cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from podman_emu import paths


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("PODMAN_EMU_STATE_DIR", raising=False)
    monkeypatch.delenv("PODMAN_EMU_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_podman_dirs_default_to_the_home_relative_xdg_dirs(home: Path) -> None:
    assert paths.podman_config_dir() == home / ".config/containers/podman/machine/qemu"
    assert paths.podman_data_dir() == home / ".local/share/containers/podman/machine/qemu"


def test_podman_dirs_follow_the_xdg_variables(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    assert paths.podman_config_dir() == home / "cfg/containers/podman/machine/qemu"
    assert paths.podman_data_dir() == home / "data/containers/podman/machine/qemu"


def test_an_empty_xdg_variable_is_ignored_as_podman_ignores_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert paths.podman_config_dir() == home / ".config/containers/podman/machine/qemu"


def test_podman_emu_state_and_cache_use_the_platform_dirs_unless_overridden(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert paths.state_dir() == home / ".local/state/podman-emu"
    assert paths.cache_dir() == home / ".cache/podman-emu"
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "st"))
    assert paths.state_dir() == home / "st/podman-emu"
    monkeypatch.setenv("PODMAN_EMU_STATE_DIR", str(home / "mine"))
    monkeypatch.setenv("PODMAN_EMU_CACHE_DIR", str(home / "cached"))
    assert (paths.state_dir(), paths.cache_dir()) == (home / "mine", home / "cached")
    assert paths.internal_error_log() == home / "mine/podman-emu.log"


def test_the_machine_key_tells_same_named_machines_of_two_homes_apart(tmp_path: Path) -> None:
    first = tmp_path / "a" / "vm.json"
    second = tmp_path / "b" / "vm.json"
    key = paths.machine_key(first)
    assert key == f"vm-{hashlib.sha256(str(first).encode()).hexdigest()[:12]}"
    assert key != paths.machine_key(second)
    assert paths.machine_key(first) == key  # stable: the journal and console log are found again
