"""Register (and unregister) a podman 5 machine with podman-emu's qemu wrapper, with podman-emu's
own functions: the host part of a 5.x conversion. `podman-emu convert` does not edit 5.x machine
JSON yet, so the e2e suite makes the machine with its aarch64 disk already at ImagePath
(`podman machine init --image AARCH64_DISK`: podman 5 checks no arch) and registers it here.
This script is that stand-in and nothing else: the qemu profile, firmware, vars file, console
log, drop-in, wrapper and registry are the ones a 5.x `convert` will make.

    python route.py register NAME | unregister NAME      (as the machine's owner)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from podman_emu import paths
from podman_emu.conversion import start_helpers
from podman_emu.conversion.artifacts import console_log_path
from podman_emu.conversion.helper_registry import QemuRoute, RegisteredMachine
from podman_emu.host.cpu_profile import choose_profile
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import find_qemu, probe_qemu
from podman_emu.images.formats import sniff_disk

VARS_BYTES = 64 << 20


def _vars_file(name: str) -> Path:
    return paths.podman_data_dir() / f"{name}_ovmf_vars.fd"


def register(name: str) -> dict[str, object]:
    config_path = paths.podman_config_dir() / f"{name}.json"
    config = json.loads(config_path.read_bytes())
    qemu = find_qemu(None, None)
    profile = choose_profile(probe_qemu(qemu))
    firmware = find_firmware(qemu)
    vars_file = _vars_file(name)
    if firmware.vars_template:
        shutil.copyfile(firmware.vars_template, vars_file)
    else:
        vars_file.write_bytes(bytes(VARS_BYTES))
    route = QemuRoute(
        pid_file=config["QEMUHypervisor"]["QEMUPidPath"]["Path"],
        qemu_binary=str(qemu),
        accel=profile.accel,
        cpu=profile.cpu,
        machine=profile.machine,
        firmware_arguments=firmware.arguments(str(vars_file)),
        disk_container=sniff_disk(Path(config["ImagePath"]["Path"])).container,
    )
    plan = start_helpers.with_machine(
        RegisteredMachine(name, str(config_path), str(console_log_path(config_path)), route), dry_run=False
    )
    return {"route": route.__dict__, "edits": [edit.to_json() for edit in plan.edits]}


def unregister(name: str) -> dict[str, object]:
    config_path = paths.podman_config_dir() / f"{name}.json"
    plan = start_helpers.without_machine(config_path, dry_run=False)
    log = console_log_path(config_path)
    for path in (_vars_file(name), log, log.with_name(log.name + ".1")):
        if path.exists():
            os.unlink(path)
    return {"edits": [edit.to_json() for edit in plan.edits]}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("register", "unregister"):
        sys.stderr.write(__doc__ or "")
        return 2
    action = register if argv[0] == "register" else unregister
    print(json.dumps(action(argv[1]), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
