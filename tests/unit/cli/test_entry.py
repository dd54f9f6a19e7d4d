"""The console entry point as a user starts it: version, exit codes, shell completion."""

from testing.cli import run_module
from testing.podman_home import Sandbox


def test_module_entry_point_version_and_usage_exit_codes(podman_home: Sandbox) -> None:
    env = podman_home.env()
    assert run_module("--version", env=env).stdout.startswith("podman-emu ")
    usage = run_module("convert", env=env)
    assert usage.returncode == 2
    missing = run_module("revert", "nope", env=env)
    assert missing.returncode == 1 and "no machine config" in missing.stderr and "Traceback" not in missing.stderr


def test_machine_names_complete(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "alpha")
    podman_home.install("podman-4.9-linux-amd64.json", "beta")
    env = dict(
        podman_home.env(), _PODMAN_EMU_COMPLETE="complete_bash", COMP_WORDS="podman-emu inspect al", COMP_CWORD="2"
    )
    result = run_module(env=env)
    assert "alpha" in result.stdout and "beta" not in result.stdout
