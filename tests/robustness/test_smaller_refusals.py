"""Refusals that used to come too late or say the wrong thing.

- `--cpu MODEL,PROP=VALUE` is tried on the probed qemu: a property qemu does not know is refused
  at convert, not when `podman machine start` runs qemu.
- A console log path that is a symlink already (qemu would append wherever it leads) is refused.
- `--image` from a pipe (`/dev/stdin`) is named a pipe, not misread as an image.
- `doctor` on a native machine whose native qemu is missing warns about starting it natively;
  it is no failure of a conversion, and revert-then-convert is not the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from podman_emu.paths import machine_key
from robustness.harness import Sandbox, assert_clean_refusal, assert_success, base_env, invoke, podman_emu_argv

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"


@pytest.mark.parametrize("cpu", ["cortex-a57,x=y", "max,pauth-impdef=maybe", "cortex-a57,pmu"])
def test_a_cpu_property_qemu_rejects_is_refused_at_convert(box: Sandbox, aarch64_disk: Path, cpu: str) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    before = config.read_bytes()
    result = invoke(box, "convert", MACHINE, "--image", str(aarch64_disk), "--cpu", cpu)
    assert_clean_refusal(result, f"--cpu {cpu}", exit_codes=(2,))
    assert config.read_bytes() == before


@pytest.mark.parametrize("cpu", ["cortex-a57,pmu=off", "max,pauth-impdef=on", "neoverse-n1"])
def test_a_cpu_with_properties_qemu_accepts_converts(box: Sandbox, aarch64_disk: Path, cpu: str) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk), "--cpu", cpu, "--dry-run"))
    assert config.exists()


def test_a_console_log_that_is_a_symlink_is_refused(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    before = config.read_bytes()
    log = box.state_dir / "consoles" / f"{machine_key(config)}.log"
    log.parent.mkdir(parents=True)
    victim = box.root / "elsewhere.txt"
    victim.write_bytes(b"not a console log\n")
    log.symlink_to(victim)
    result = invoke(box, "convert", MACHINE, "--image", str(aarch64_disk))
    assert_clean_refusal(result, str(log), "symlink")
    assert config.read_bytes() == before and victim.read_bytes() == b"not a console log\n"


def test_an_image_from_a_pipe_is_named_a_pipe(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    before = config.read_bytes()
    with aarch64_disk.open("rb") as disk:
        feeder = subprocess.Popen(["cat"], stdin=disk, stdout=subprocess.PIPE)
        assert feeder.stdout is not None
        completed = subprocess.run(
            podman_emu_argv("convert", MACHINE, "--image", "/dev/stdin"),
            stdin=feeder.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            env=base_env(box),
            cwd=box.cwd,
            check=False,
        )
        feeder.kill()
        feeder.wait()
    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    assert "/dev/stdin is a FIFO (named pipe)" in completed.stderr, completed.stderr
    assert "save it to a file first" in completed.stderr, completed.stderr
    assert config.read_bytes() == before


def test_doctor_on_a_native_machine_without_its_native_qemu_warns(box: Sandbox) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    content = json.loads(config.read_bytes())
    content["CmdLine"][0] = "/nonexistent/bin/qemu-system-x86_64"
    config.write_bytes(json.dumps(content, indent=1).encode())
    result = invoke(box, "doctor", MACHINE, "--json")
    report = json.loads(result.stdout)
    (binary,) = [check for check in report["checks"] if check["topic"] == "binary"]
    assert binary["level"] == "warn", binary
    assert "natively" in binary["detail"] and "convert again" not in (binary["fix"] or ""), binary
    assert result.exit_code == 0 and report["ok"], result.output
    assert os.path.exists(config)
