"""A converted machine does not hang on podman-emu's state dir in ways nobody sees.

- A relative PODMAN_EMU_STATE_DIR / PODMAN_EMU_CACHE_DIR is taken from the directory convert
  ran in and written into the machine's CmdLine as an absolute path: podman starts qemu from
  wherever the user stands, where a relative path names another file or none.
- With the consoles dir deleted, qemu refuses to start (shown here with the real qemu, which
  cannot open its console chardev); `doctor` fails the machine's check and `status` says so, both
  naming the directory and what to do.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from podman_emu.qemu.argv import suboption
from robustness.harness import QEMU_AARCH64, Sandbox, assert_success, run_cli

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE = "m"


def _console_log(config: Path) -> str:
    argv = json.loads(config.read_bytes())["CmdLine"]
    values = [argv[i + 1] for i, element in enumerate(argv[:-1]) if element == "-chardev"]
    (path,) = [suboption(value, "path") for value in values if suboption(value, "id") == "podman-emu-console"]
    assert path is not None
    return path


def test_relative_state_and_cache_dirs_become_absolute(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    env = {"PODMAN_EMU_STATE_DIR": "rel-state", "PODMAN_EMU_CACHE_DIR": "rel-cache"}
    assert_success(run_cli(box, "convert", MACHINE, "--image", str(aarch64_disk), env=env, timeout=120))
    log = _console_log(config)
    assert os.path.isabs(log), f"CmdLine names the console log {log!r}"
    assert log.startswith(str(box.cwd / "rel-state") + "/"), log
    assert all(os.path.isabs(element) for element in json.loads(config.read_bytes())["CmdLine"] if "/" in element[:1])
    journal = json.loads(run_cli(box, "inspect", MACHINE, "--json", env=env, timeout=60).stdout)["journal"]
    assert journal["path"].startswith(str(box.cwd / "rel-state") + "/"), journal


def test_qemu_refuses_a_console_log_in_a_missing_dir(tmp_path: Path) -> None:
    """The oracle for the next test: what qemu does with such a chardev."""
    assert QEMU_AARCH64 is not None
    completed = subprocess.run(
        [QEMU_AARCH64, "-M", "virt", "-display", "none", "-nodefaults", "-S", "-qmp", "stdio",
         "-chardev", f"file,id=c,path={tmp_path / 'gone' / 'm.log'},append=on", "-serial", "chardev:c"],
        input='{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n',
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode != 0 and "No such file or directory" in completed.stderr, completed.stderr


def test_doctor_and_status_see_a_missing_console_dir(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name=MACHINE)
    assert_success(run_cli(box, "convert", MACHINE, "--image", str(aarch64_disk), timeout=120))
    consoles = Path(_console_log(config)).parent
    shutil.rmtree(consoles, ignore_errors=True)
    doctor = run_cli(box, "doctor", MACHINE, timeout=60)
    assert doctor.exit_code == 1, doctor.output
    assert str(consoles) in doctor.stdout and "refuses to start" in doctor.stdout, doctor.stdout
    report = json.loads(run_cli(box, "doctor", MACHINE, "--json", timeout=60).stdout)
    failing = [check for check in report["checks"] if check["level"] == "fail"]
    assert failing and any(str(consoles) in check["detail"] and check["fix"] for check in failing), failing
    status = run_cli(box, "status", MACHINE, timeout=60)
    assert str(consoles) in status.stdout and "refuses to start" in status.stdout, status.stdout
    as_json = json.loads(run_cli(box, "status", MACHINE, "--json", timeout=60).stdout)
    assert str(consoles) in (as_json["console"].get("problem") or ""), as_json["console"]
    assert not consoles.exists(), "read commands must not recreate it"
