"""Boot a guest disk directly with qemu-system-aarch64 (no podman) and time each stage.

The device set mirrors what podman 4.3.1 puts on its command line (net, virtio-serial with the
ready port, fw_cfg ignition, disk last), so the guest sees the same /dev/vportNpM numbering it
would under podman, and the host side speaks the same ready protocol podman does.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .initramfs import MARK

AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
DEFAULT_CPU = "max,pauth-impdef=on"

# Serial console milestones, in boot order: name -> text that marks it.
MILESTONES = {
    "firmware": "UEFI firmware",
    "bds-boot": "BdsDxe: starting Boot",
    "kernel": "Booting Linux on physical CPU",
    "init": f"{MARK} INIT-START",
    "ignition": "IGNITION-SHA256=",
    "ready-sent": f"{MARK} READY-SENT",
    "guest-up": f"{MARK} GUEST-UP",
    "power-button": f"{MARK} POWER-BUTTON",
}


@dataclass
class BootResult:
    serial_log: Path
    argv: list[str]
    events: dict[str, float] = field(default_factory=dict)
    ready_line: str | None = None
    returncode: int | None = None
    stderr: str = ""

    @property
    def serial(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def marker(self, name: str) -> str | None:
        """Value of `PODMAN-EMU-GUEST NAME=value` (or bare `NAME=value`) from the console."""
        match = re.search(rf"(?:^|\s){re.escape(name)}=(\S*)", self.serial, re.M)
        return match.group(1) if match else None


def parse_milestones(serial: str) -> list[str]:
    return [name for name, text in MILESTONES.items() if text in serial]


def qmp_execute(path: Path, command: str, timeout: float = 10) -> dict[str, Any]:
    """Send one QMP command (after the capabilities handshake) and return its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        reader = sock.makefile("rb")
        reader.readline()  # greeting
        for cmd in ("qmp_capabilities", command):
            sock.sendall(json.dumps({"execute": cmd}).encode() + b"\n")
            while True:
                reply: dict[str, Any] = json.loads(reader.readline() or b"{}")
                if "return" in reply or "error" in reply or not reply:
                    break
        return reply


def boot_disk(
    disk: Path,
    workdir: Path,
    *,
    ignition: Path | None = None,
    qemu: str = "qemu-system-aarch64",
    cpu: str = DEFAULT_CPU,
    smp: int = 2,
    memory_mib: int = 1024,
    timeout: float = 180,
    power_off: bool = True,
) -> BootResult:
    """Boot `disk` through AAVMF and wait for the guest's GUEST-UP marker.

    The disk is never written: the guest runs on a qcow2 overlay in workdir. With power_off, a QMP
    system_powerdown follows (what `podman machine stop` sends) and the guest must exit on its own.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk.resolve()), str(overlay)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    vars_copy = workdir / "vars.fd"
    shutil.copyfile(AAVMF_VARS, vars_copy)
    serial_log = workdir / "serial.log"
    serial_log.unlink(missing_ok=True)
    ready_sock = workdir / "ready.sock"
    qmp_sock = workdir / "qmp.sock"
    if ignition is None:
        ignition = workdir / "test.ign"
        ignition.write_text('{"ignition":{"version":"3.2.0"}}')
    argv = [
        qemu,
        "-m",
        str(memory_mib),
        "-smp",
        str(smp),
        "-fw_cfg",
        f"name=opt/com.coreos/config,file={ignition}",
        "-qmp",
        f"unix:{qmp_sock},server=on,wait=off",
        "-netdev",
        "user,id=vlan",
        "-device",
        "virtio-net-pci,netdev=vlan,mac=5a:94:ef:e4:0c:ee",
        "-device",
        "virtio-serial",
        "-chardev",
        f"socket,path={ready_sock},server=on,wait=off,id=aguest_ready",
        "-device",
        "virtserialport,chardev=aguest_ready,name=org.fedoraproject.port.0",
        "-accel",
        "tcg",
        "-cpu",
        cpu,
        "-M",
        "virt,highmem=on,gic-version=max",
        "-drive",
        f"if=pflash,format=raw,readonly=on,file={AAVMF_CODE}",
        "-drive",
        f"if=pflash,format=raw,file={vars_copy}",
        "-serial",
        f"file:{serial_log}",
        "-drive",
        f"if=virtio,file={overlay}",
        "-display",
        "none",
    ]
    result = BootResult(serial_log=serial_log, argv=argv)
    start = time.monotonic()
    stderr_file = (workdir / "qemu.stderr").open("w+")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr_file, stderr=stderr_file)

    def read_ready() -> None:
        # Same as podman: dial the chardev socket, block until one line arrives.
        deadline = start + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.connect(str(ready_sock))
                    sock.settimeout(max(1.0, deadline - time.monotonic()))
                    line = sock.makefile("rb").readline()
                    result.ready_line = line.decode(errors="replace")
                    result.events["ready"] = time.monotonic() - start
                    return
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
            except OSError:
                return

    reader = threading.Thread(target=read_ready, daemon=True)
    reader.start()
    try:
        deadline = start + timeout
        powered_down = False
        while time.monotonic() < deadline:
            now = time.monotonic() - start
            for name in parse_milestones(result.serial):
                result.events.setdefault(name, now)
            if proc.poll() is not None:
                break
            if "guest-up" in result.events and not powered_down:
                if not power_off:
                    break
                qmp_execute(qmp_sock, "system_powerdown")
                result.events["powerdown-sent"] = time.monotonic() - start
                powered_down = True
            time.sleep(0.05)
        if proc.poll() is not None:
            result.events["qemu-exit"] = time.monotonic() - start
            for name in parse_milestones(result.serial):
                result.events.setdefault(name, result.events["qemu-exit"])
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        result.returncode = proc.returncode
        reader.join(timeout=5)
        stderr_file.seek(0)
        result.stderr = stderr_file.read()
        stderr_file.close()
    return result
