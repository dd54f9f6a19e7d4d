"""The host side of a conversion: the containers.conf drop-in, the launcher and the registry are
created with the first emulated machine, kept while one remains, removed with the last — and no
file of the user's changes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import tomlkit
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.conversion.helper_registry import read_registry
from podman_emu.host.containers_conf import dropin_path
from testing.podman_home import Sandbox

USER_CONF = b'# my settings\n[engine]\nhelper_binaries_dir = ["/opt/podman/qemu/bin", "/usr/libexec/podman"] # keep\n'


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
    }


@pytest.fixture
def user_conf(podman_home: Sandbox) -> Path:
    conf = podman_home.home / ".config" / "containers" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_bytes(USER_CONF)
    return conf


def convert(name: str, disk: Path, *extra: str) -> str:
    result = CliRunner().invoke(app, ["convert", name, "--image", str(disk), *extra])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_dry_run_lists_every_host_change_and_writes_nothing(
    podman_home: Sandbox, user_conf: Path, blank_aarch64_disk: Path
) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "m")
    outside_cache = [podman_home.home, podman_home.state_dir, podman_home.runtime_dir]
    before = [tree_digest(root) for root in outside_cache]
    shown = convert("m", blank_aarch64_disk, "--dry-run")
    assert [tree_digest(root) for root in outside_cache] == before
    for path in (dropin_path(), podman_home.state_dir / "start-helpers" / "bin" / "gvproxy"):
        assert f"create {path}" in shown.replace("\n", " ")


def test_the_dropin_puts_podman_emu_first_then_the_users_own_list(
    podman_home: Sandbox, user_conf: Path, blank_aarch64_disk: Path
) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "m")
    convert("m", blank_aarch64_disk)
    dirs = tomlkit.parse(dropin_path().read_text())["engine"]["helper_binaries_dir"]
    registry = read_registry()
    assert registry is not None
    assert list(dirs) == [registry.helper_dir, "/opt/podman/qemu/bin", "/usr/libexec/podman"]
    assert user_conf.read_bytes() == USER_CONF


def test_revert_of_the_last_machine_removes_everything_outside_the_json(
    podman_home: Sandbox, user_conf: Path, blank_aarch64_disk: Path
) -> None:
    podman_home.install("podman-4.3-linux-amd64.json", "a")
    podman_home.install("podman-4.9-linux-amd64.json", "b")
    config_home = podman_home.home / ".config"
    before = tree_digest(config_home)
    convert("a", blank_aarch64_disk)
    convert("b", blank_aarch64_disk)
    assert CliRunner().invoke(app, ["revert", "a"]).exit_code == 0
    assert dropin_path().exists(), "b is still emulated and needs the launcher"
    assert CliRunner().invoke(app, ["revert", "b"]).exit_code == 0
    assert not dropin_path().exists()
    assert not dropin_path().parent.exists(), "podman-emu created containers.conf.d, so it goes too"
    assert read_registry() is None
    assert not (podman_home.state_dir / "start-helpers" / "bin").exists()
    assert tree_digest(config_home) == before


def test_a_dropin_of_the_users_under_podman_emus_name_is_refused_with_no_write(
    podman_home: Sandbox, blank_aarch64_disk: Path
) -> None:
    config = podman_home.install("podman-4.3-linux-amd64.json", "m")
    dropin_path().parent.mkdir(parents=True)
    dropin_path().write_bytes(b"[engine]\n")
    original = config.read_bytes()
    result = CliRunner().invoke(app, ["convert", "m", "--image", str(blank_aarch64_disk)])
    assert result.exit_code != 0
    assert "podman-emu did not write it" in result.stderr
    assert config.read_bytes() == original
    assert dropin_path().read_bytes() == b"[engine]\n"


def test_cleanup_after_podman_machine_rm_removes_the_host_side_too(
    podman_home: Sandbox, user_conf: Path, blank_aarch64_disk: Path
) -> None:
    config = podman_home.install("podman-4.3-linux-amd64.json", "m")
    convert("m", blank_aarch64_disk)
    assert dropin_path().exists()
    config.unlink()  # what `podman machine rm` does to the config
    result = CliRunner().invoke(app, ["cleanup", "m"])
    assert result.exit_code == 0, result.stderr
    assert not dropin_path().exists() and read_registry() is None
    assert user_conf.read_bytes() == USER_CONF
