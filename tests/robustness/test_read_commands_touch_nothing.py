"""Read commands run nothing of the user's and change nothing outside podman-emu's cache.

- `doctor NAME` as root does not execute a qemu-system-aarch64 that sits beside the machine's
  CmdLine[0] in a directory the user controls.
- `list`, `status` and `logs` keep only the console log podman-emu created (in its own state
  dir) bounded: a config that names another file as its console log, as big as it likes, gets
  that file left exactly as it is, and a symlink in the state dir is not followed either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from robustness.harness import QEMU_AARCH64, Sandbox, assert_success, invoke, needs_root, nobody, own_by, run_cli
from testing.oracles import diff_snapshots, snapshot

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"
OVER_LIMIT = 9 * 1024 * 1024  # the console limit is 8 MiB


@needs_root
def test_doctor_as_root_runs_no_binary_of_the_user(box: Sandbox) -> None:
    user = nobody()
    bin_dir = box.home / "bin"
    bin_dir.mkdir(parents=True)
    marker = box.root / "user-binary-ran"
    planted = bin_dir / "qemu-system-aarch64"
    planted.write_text(f'#!/bin/sh\ntouch {marker}\nexec {QEMU_AARCH64} "$@"\n')
    planted.chmod(0o755)
    native = bin_dir / "qemu-system-x86_64"
    native.write_text("#!/bin/sh\nexit 0\n")
    native.chmod(0o755)
    config = box.install(FIXTURE, name=MACHINE)
    content = json.loads(config.read_bytes())
    content["CmdLine"][0] = str(native)
    config.write_bytes(json.dumps(content, indent=1).encode())
    own_by(box.root, user)
    result = run_cli(box, "doctor", MACHINE, timeout=60)
    assert "Traceback" not in result.output, result.output
    assert not marker.exists(), f"root ran {planted}:\n{result.output}"
    # As the user, the qemu beside the machine's own is the natural choice, and is used.
    result = run_cli(box, "doctor", MACHINE, timeout=60, as_user=user)
    assert marker.exists(), result.output


def _console_log(box: Sandbox) -> Path:
    journal = json.loads(next((box.state_dir / "journals").glob("*.json")).read_bytes())
    return Path(next(item["path"] for item in journal["created"] if item["role"] == "console"))


def _point_console_at(config: Path, target: Path) -> None:
    content = json.loads(config.read_bytes())
    argv = content["CmdLine"]
    for index, element in enumerate(argv):
        if element.startswith("file,id=podman-emu-console,"):
            argv[index] = f"file,id=podman-emu-console,path={target},append=on"
            break
    else:
        raise AssertionError(f"no console chardev in {argv}")
    config.write_bytes(json.dumps(content, indent=1).encode())


def test_read_commands_rotate_only_their_own_log(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    own = _console_log(box)
    victim = box.root / "precious.txt"
    victim.write_bytes(b"x" * OVER_LIMIT)
    _point_console_at(config, victim)
    before = snapshot(box.root, ignore=(box.cache_dir,))
    for command in (["list"], ["list", "--json"], ["status", MACHINE], ["logs", MACHINE, "-n", "1"]):
        result = run_cli(box, *command, timeout=60)
        assert "Traceback" not in result.output, result.output
        changes = diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True)
        assert not changes, f"`{' '.join(command)}` changed files: {changes}"
    # podman-emu's own log is still kept bounded.
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_bytes(b"y" * OVER_LIMIT)
    result = run_cli(box, "list", timeout=60)
    assert result.exit_code == 0, result.output
    assert own.with_name(own.name + ".1").stat().st_size == OVER_LIMIT
    assert not own.exists() or own.stat().st_size == 0


def test_a_symlink_at_the_own_log_is_not_rotated(box: Sandbox, aarch64_disk: Path) -> None:
    box.install(FIXTURE, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    own = _console_log(box)
    victim = box.root / "precious.txt"
    victim.write_bytes(b"x" * OVER_LIMIT)
    own.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(victim, own)
    before = snapshot(box.root, ignore=(box.cache_dir,))
    for command in (["list"], ["status", MACHINE], ["logs", MACHINE, "-n", "1"]):
        run_cli(box, *command, timeout=60)
        changes = diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True)
        assert not changes, f"`{' '.join(command)}` changed files: {changes}"


@needs_root
def test_root_reads_no_file_a_config_names_as_its_console_log(box: Sandbox, aarch64_disk: Path) -> None:
    """`logs` as root on a user's machine would print whatever file the user's config names (a
    root-only file included): root reads only the console logs in its own state dir."""
    config = box.install(FIXTURE, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    secret = box.root / "root-only.txt"
    secret.write_bytes(b"Booting Linux on physical CPU 0x0 SECRET-TOKEN\n")
    secret.chmod(0o600)
    _point_console_at(config, secret)
    for command in (["logs", MACHINE], ["status", MACHINE], ["status", MACHINE, "--json"], ["list", "--json"]):
        result = run_cli(box, *command, timeout=60)
        assert "Traceback" not in result.output, result.output
        assert "SECRET-TOKEN" not in result.output, f"`{' '.join(command)}` printed it:\n{result.output}"
    refused = run_cli(box, "logs", MACHINE, timeout=60)
    assert refused.exit_code == 1 and str(secret) in refused.stderr, refused.output
