"""The real thing: podman 4.3.1 starts a machine podman-emu converted, and it boots from its disk.

One ordered scenario (issue 3), run as a throwaway user:
init -> convert -> list/inspect/set -> start (firmware, aarch64 kernel from the disk, ignition,
ready handshake) -> stop -> revert -> rm, then a second machine that podman-emu must refuse to
touch while it runs. Each step depends on the previous ones; after a failure the rest skip.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testing.podman_user import PodmanUser, Result, proc_argv

from .support import phase, record_phase

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_step]

FIRST = "emu1"
SECOND = "emu2"
# Slower hosts can stretch every limit at once (e.g. 2.0); podman itself has none in start/stop.
SCALE = float(os.environ.get("PODMAN_EMU_E2E_TIMEOUT_SCALE") or 1)
INIT_TIMEOUT = 180 * SCALE
# Launch -> ready takes 10-25 s on a 2-core host (firmware 6-8 s, kernel + /init 4-15 s).
START_TIMEOUT = 240 * SCALE
STOP_TIMEOUT = 90 * SCALE
CONSOLE_WAIT = 60 * SCALE
# What the guest's console must show, in this order, for a boot from the machine's own disk.
BOOT_SEQUENCE = [
    "UEFI firmware",
    "BdsDxe: starting Boot",
    "EFI stub: Booting Linux Kernel",
    "Booting Linux on physical CPU",
    "PODMAN-EMU-GUEST INIT-START",
    "IGNITION-SHA256=",
    "PODMAN-EMU-GUEST READY-SENT",
    "PODMAN-EMU-GUEST GUEST-UP",
]
DIRECT_KERNEL_OPTIONS = {"-kernel", "-initrd", "-append", "-dtb"}


@dataclass
class Scenario:
    user: PodmanUser
    disk: Path
    esp_partuuid: str
    kernel_release: str
    original: dict[str, Any] = field(default_factory=dict)
    converted_argv: list[str] = field(default_factory=list)
    created_files: list[str] = field(default_factory=list)
    console_log: Path | None = None
    journal: str | None = None


def must(result: Result, what: str) -> Result:
    assert not result.timed_out, f"{what} timed out\n{result.describe()}"
    assert result.returncode == 0, f"{what} failed\n{result.describe()}"
    return result


def as_json(result: Result) -> Any:
    try:
        return json.loads(result.stdout)
    except ValueError as exc:
        raise AssertionError(f"not JSON: {exc}\n{result.describe()}") from exc


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def with_set_changes(argv: list[str], cpus: int, memory: int) -> list[str]:
    # podman's editCmdLine: overwrite the element after the first exact "-m" / "-smp".
    out = list(argv)
    out[out.index("-smp") + 1] = str(cpus)
    out[out.index("-m") + 1] = str(memory)
    return out


def wait_for(predicate: Any, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def console_text(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def marker(text: str, name: str) -> str | None:
    match = re.search(rf"(?:^|\s){re.escape(name)}=(\S*)", text, re.M)
    return match.group(1) if match else None


def make_native_image(user: PodmanUser, name: str) -> Path:
    # A distinct basename per machine: podman 4.3.1 names the copied image after it, and two
    # machines made from one basename would share (and rm) one disk.
    path = user.home / f"native-{name}.x86_64.qcow2"
    must(user.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "1G"], timeout=60), "qemu-img create")
    return path


def podman_list(user: PodmanUser) -> list[dict[str, Any]]:
    return as_json(must(user.podman("machine", "list", "--format", "json"), "podman machine list"))


def podman_inspect(user: PodmanUser, name: str) -> dict[str, Any]:
    data = as_json(must(user.podman("machine", "inspect", name), f"podman machine inspect {name}"))
    assert isinstance(data, list) and len(data) == 1, data
    return data[0]


def emu_inspect(user: PodmanUser, name: str) -> dict[str, Any]:
    return as_json(must(user.podman_emu("inspect", name, "--json"), f"podman-emu inspect {name}"))


def init_machine(user: PodmanUser, name: str) -> dict[str, Any]:
    image = make_native_image(user, name)
    with phase(f"init {name}"):
        result = user.podman(
            "machine", "init", "--timezone", "UTC", "--image-path", str(image), name, timeout=INIT_TIMEOUT
        )
    must(result, f"podman machine init {name}")
    user.machines.append(name)
    content = user.machine_json(name)
    assert Path(content["CmdLine"][0]).name == "qemu-system-x86_64", content["CmdLine"]
    assert (user.config_dir / f"{name}.ign").is_file()
    return content


def convert_machine(scenario: Scenario, name: str) -> dict[str, Any]:
    user = scenario.user
    with phase(f"convert {name}"):
        result = user.podman_emu("convert", name, "--image", str(scenario.disk), "--json", timeout=300)
    report = as_json(must(result, f"podman-emu convert {name}"))
    assert report["applied"] is True, report
    argv = report["argv_after"]
    assert Path(argv[0]).name == "qemu-system-aarch64", argv
    # Debian 12's QEMU 7.2: the fast pauth asked for, LPA2 off against edk2 2025.11.
    assert report["cpu"] == "max,pauth-impdef=on,lpa2=off", report
    assert not DIRECT_KERNEL_OPTIONS & set(argv), f"the guest must boot from its disk, not {argv}"
    assert user.machine_json(name)["CmdLine"] == argv
    for item in report["files"]:
        if item["role"] != "console":  # qemu creates the log on first start
            assert Path(item["path"]).exists(), item
    return report


class ConsoleWatcher:
    """Timestamps each boot milestone as it appears in the console log during `start`."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path, self.offset = path, offset
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._start = time.monotonic()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            text = console_text(self.path, self.offset)
            for needle in BOOT_SEQUENCE:
                if needle not in self.seen and needle in text:
                    self.seen[needle] = time.monotonic() - self._start
            self._stop.wait(0.1)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


def start_machine(user: PodmanUser, name: str, label: str) -> tuple[Result, int]:
    """`podman machine start` under a timeout; returns its result and the console offset before it."""
    console = Path(emu_inspect(user, name)["console_log"])
    offset = console.stat().st_size if console.exists() else 0
    watcher = ConsoleWatcher(console, offset)
    with phase(label) as info:
        result = user.podman("machine", "start", name, timeout=START_TIMEOUT)
        ready_at = result.line_time("Mounting volume")
        waiting_at = result.line_time("Waiting for VM")
        if ready_at is not None:
            info["note"] = f"podman read Ready {ready_at:.1f}s after launch; qemu launched at {waiting_at or 0:.1f}s"
    seen = watcher.stop()
    (user.log_dir / f"console-{name}-start.log").write_text(console_text(console, offset))
    for needle, at in seen.items():
        record_phase(f"  {name} console: {needle}", at)
    assert not result.timed_out, f"podman machine start {name} hung\n{result.describe()}"
    assert "Waiting for VM" in result.stdout, result.describe()
    # Printed only after podman read the guest's ready line: the handshake worked. What follows
    # needs ssh into the guest, which the gvproxy stand-in cannot provide (no networking).
    assert ready_at is not None, f"podman never got past 'Waiting for VM'\n{result.describe()}"
    if result.returncode != 0:
        # ssh exits 255 on the stand-in's closed port; without openssh-client podman cannot exec it.
        ssh_failed = "exit status 255" in result.output or 'exec: "ssh"' in result.output
        assert ssh_failed, f"start failed before the ssh step\n{result.describe()}"
    return result, offset


def stop_machine(user: PodmanUser, name: str) -> Result:
    pids = user.machine_pids(name)
    with phase(f"stop {name}"):
        result = user.podman("machine", "stop", name, timeout=STOP_TIMEOUT)
    if result.timed_out or result.returncode != 0:
        killed = user.kill_machine(name)
        pytest.fail(f"podman machine stop {name} did not finish (killed {killed})\n{result.describe()}")
    qemu_pid = pids["qemu"]
    assert qemu_pid is not None
    assert wait_for(lambda: not Path(f"/proc/{qemu_pid}").exists() or not proc_argv(qemu_pid), 15), (
        f"qemu {qemu_pid} still runs after stop"
    )
    return result


def check_boot(user: PodmanUser, scenario: Scenario, name: str, offset: int) -> str:
    console = Path(emu_inspect(user, name)["console_log"])
    wait_for(lambda: "PODMAN-EMU-GUEST GUEST-UP" in console_text(console, offset), CONSOLE_WAIT)
    text = console_text(console, offset)
    assert text, f"nothing on the serial console {console}"
    positions: list[int] = []
    for needle in BOOT_SEQUENCE:
        index = text.find(needle, positions[-1] if positions else 0)
        assert index >= 0, f"console lacks {needle!r} (after {BOOT_SEQUENCE[: len(positions)]}):\n{text[-4000:]}"
        positions.append(index)
    assert marker(text, "UNAME-M") == "aarch64"
    assert marker(text, "UNAME-R") == scenario.kernel_release
    # systemd-boot on the machine's disk loaded the kernel, and says from which partition.
    assert marker(text, "LOADER-PARTUUID") == scenario.esp_partuuid
    ign = (user.config_dir / f"{name}.ign").read_bytes()
    assert marker(text, "IGNITION-SHA256") == hashlib.sha256(ign).hexdigest()
    assert marker(text, "IGNITION-BYTES") == str(len(ign))
    # FCOS's ready unit hard-codes /dev/vport1p1: the converted command line must keep podman's
    # virtio device order for a real guest to find its port there.
    assert marker(text, "READY-PORT") == "/dev/vport1p1"
    assert "PODMAN-EMU-GUEST VOL0-MOUNTED" in text, "the 9p share of $HOME was not mountable in the guest"
    return text


def check_qemu_process(user: PodmanUser, name: str) -> int:
    pid = user.machine_pids(name)["qemu"]
    assert pid is not None, "no qemu pid file after start"
    argv = proc_argv(pid)
    assert argv, f"qemu pid {pid} is not running"
    expected = user.machine_json(name)["CmdLine"]
    assert Path(os.readlink(f"/proc/{pid}/exe")).name == "qemu-system-aarch64"
    # podman runs CmdLine as stored and appends only -display none (no debug log level).
    assert argv == [*expected, "-display", "none"], f"qemu runs {argv}\nJSON has {expected}"
    return pid


def leftovers(user: PodmanUser, name: str) -> list[str]:
    """Files anywhere in the user's home (or runtime dir) that carry podman-emu's traces for `name`."""
    found = []
    for root in (user.home, user.runtime_dir):
        for path in root.rglob("*"):
            rel = str(path)
            if (
                f"{name}_ovmf_vars" in rel
                or f"{name}_aarch64" in rel
                or ("podman-emu" in rel and name in path.name)
                or (path.parent == user.config_dir and path.name.startswith(name) and path.suffix != ".json")
            ):
                found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario(e2e_user: PodmanUser, guest_image: Any) -> Any:
    disk_dir = e2e_user.home / "e2e-disks"
    disk_dir.mkdir(exist_ok=True)
    disk = disk_dir / "guest-aarch64.qcow2"
    shutil.copyfile(guest_image.disk, disk)
    for path in (disk_dir, disk):
        os.chown(path, e2e_user.uid, e2e_user.gid)
    yield Scenario(
        user=e2e_user,
        disk=disk,
        esp_partuuid=guest_image.esp_partuuid,
        kernel_release=guest_image.kernel_release,
    )
    for name in e2e_user.machines:
        e2e_user.kill_machine(name)


def test_01_init_native_machine(scenario: Scenario) -> None:
    scenario.original = init_machine(scenario.user, FIRST)
    raw = (scenario.user.config_dir / f"{FIRST}.json").read_bytes()
    # Podman 4.3.1's writer: MarshalIndent with one space, no trailing newline.
    assert raw.decode() == json.dumps(scenario.original, indent=1, ensure_ascii=False)


def test_02_convert(scenario: Scenario) -> None:
    user = scenario.user
    report = convert_machine(scenario, FIRST)
    scenario.converted_argv = report["argv_after"]
    scenario.created_files = [item["path"] for item in report["files"]]
    info = emu_inspect(user, FIRST)
    assert info["emulation"] == "emulated", info
    assert info["console_log"], info
    scenario.console_log = Path(info["console_log"])
    scenario.journal = (info.get("journal") or {}).get("path")
    assert scenario.journal and Path(scenario.journal).is_file(), info


def test_03_podman_list_inspect_set(scenario: Scenario) -> None:
    user = scenario.user
    listed = {m["Name"]: m for m in podman_list(user)}
    assert FIRST in listed, listed
    assert listed[FIRST]["Running"] is False
    assert podman_inspect(user, FIRST)["Name"] == FIRST
    before = user.machine_json(FIRST)["CmdLine"]
    must(user.podman("machine", "set", "--cpus", "2", "--memory", "2500", FIRST), "podman machine set")
    after = user.machine_json(FIRST)
    assert after["CPUs"] == 2 and after["Memory"] == 2500
    assert after["CmdLine"] == with_set_changes(before, 2, 2500), "podman set changed more than -m/-smp"
    assert value_after(after["CmdLine"], "-M").startswith("virt")
    assert Path(after["CmdLine"][0]).name == "qemu-system-aarch64"
    assert emu_inspect(user, FIRST)["emulation"] == "emulated"
    rows = {r["name"]: r for r in as_json(must(user.podman_emu("list", "--json"), "podman-emu list"))}
    assert rows[FIRST]["cpus"] == 2 and rows[FIRST]["memory_mib"] == 2500, rows


def test_04_start_boots_aarch64_from_disk(scenario: Scenario) -> None:
    user = scenario.user
    _, offset = start_machine(user, FIRST, f"boot to ready {FIRST}")
    check_qemu_process(user, FIRST)
    text = check_boot(user, scenario, FIRST, offset)
    gvproxy = user.machine_pids(FIRST)["gvproxy"]
    assert gvproxy is not None and "gvproxy_standin.py" in " ".join(proc_argv(gvproxy))
    standin_log = (user.runtime_dir / "gvproxy-standin.log").read_text()
    assert "accepted the qemu connection" in standin_log
    listed = {m["Name"]: m for m in podman_list(user)}
    assert listed[FIRST]["Running"] is True, listed
    assert "POWER-BUTTON" not in text


def test_05_stop_powers_guest_off(scenario: Scenario) -> None:
    user = scenario.user
    assert scenario.console_log is not None
    offset = scenario.console_log.stat().st_size
    stop_machine(user, FIRST)
    # QMP system_powerdown reached the guest as an ACPI power-button press, and it powered off.
    assert "PODMAN-EMU-GUEST POWER-BUTTON" in console_text(scenario.console_log, offset)
    assert user.machine_pids(FIRST)["gvproxy"] is None  # podman deletes the stand-in's pid file
    listed = {m["Name"]: m for m in podman_list(user)}
    assert listed[FIRST]["Running"] is False


def test_06_revert_restores_podmans_config(scenario: Scenario) -> None:
    user = scenario.user
    with phase(f"revert {FIRST}"):
        result = user.podman_emu("revert", FIRST, "--delete-disk", "--json")
    report = as_json(must(result, "podman-emu revert"))
    assert report["applied"] is True, report
    current = user.machine_json(FIRST)
    expected = copy.deepcopy(scenario.original)
    expected["CPUs"], expected["Memory"] = 2, 2500
    expected["CmdLine"] = with_set_changes(expected["CmdLine"], 2, 2500)
    # LastUp is podman's own bookkeeping (the first list and every stop write it).
    expected["LastUp"] = current["LastUp"]
    assert current == expected
    raw = (user.config_dir / f"{FIRST}.json").read_text()
    assert raw == json.dumps(current, indent=1, ensure_ascii=False), "not in podman's own byte format"
    for path in scenario.created_files:
        assert not Path(path).exists(), f"revert --delete-disk left {path}"
    assert podman_inspect(user, FIRST)["Name"] == FIRST
    assert FIRST in {m["Name"] for m in podman_list(user)}
    assert emu_inspect(user, FIRST)["emulation"] == "native"


def test_07_rm_leaves_nothing_of_podman_emu(scenario: Scenario) -> None:
    user = scenario.user
    must(user.podman("machine", "rm", "-f", FIRST, timeout=STOP_TIMEOUT), "podman machine rm -f")
    user.machines.remove(FIRST)
    assert not (user.config_dir / f"{FIRST}.json").exists()
    assert leftovers(user, FIRST) == []
    for path in [*scenario.created_files, scenario.journal]:
        assert path is None or not Path(path).exists(), path
    missing = user.podman_emu("inspect", FIRST, "--json")
    assert missing.returncode == 1, missing.describe()


def test_08_second_machine_refused_while_running(scenario: Scenario) -> None:
    user = scenario.user
    init_machine(user, SECOND)
    report = convert_machine(scenario, SECOND)
    disk = next(item["path"] for item in report["files"] if item["role"] == "disk")
    _, offset = start_machine(user, SECOND, f"boot to ready {SECOND}")
    check_qemu_process(user, SECOND)
    check_boot(user, scenario, SECOND, offset)

    config = user.config_dir / f"{SECOND}.json"
    before = config.read_bytes()
    # A running machine is refused for being busy before anything else is looked at.
    reasons = {"convert": ("running",), "revert": ("running",)}
    for argv in (["convert", SECOND, "--image", str(scenario.disk)], ["revert", SECOND]):
        refused = user.podman_emu(*argv)
        assert refused.returncode == 1, f"podman-emu {argv[0]} must refuse a running machine\n{refused.describe()}"
        said = refused.output.lower()
        assert any(r in said for r in reasons[argv[0]]), f"no reason given\n{refused.describe()}"
        assert config.read_bytes() == before, f"a refused {argv[0]} changed the config"
        print(f"[e2e] refused {argv[0]}: {refused.stderr.strip().splitlines()[0]}")
    assert user.machine_pids(SECOND)["qemu"] is not None

    stop_machine(user, SECOND)
    # Plain revert keeps the aarch64 disk (the user's data) and says so.
    reverted = as_json(must(user.podman_emu("revert", SECOND, "--json"), "podman-emu revert"))
    assert reverted["kept"] == [disk], reverted
    assert Path(disk).is_file()
    must(user.podman("machine", "rm", "-f", SECOND, timeout=STOP_TIMEOUT), "podman machine rm -f")
    user.machines.remove(SECOND)
    assert leftovers(user, SECOND) == [disk], "only the disk revert reported as kept may remain"
    Path(disk).unlink()


def test_09_no_stray_processes(scenario: Scenario) -> None:
    user = scenario.user
    # podman-emu's API forwarder ends within about a second of its gvproxy (it polls every 0.2 s).
    deadline = time.monotonic() + 10
    while True:
        stray = [(pid, proc_argv(pid)) for pid in user.own_pids() if proc_argv(pid)]
        if not stray or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not stray, f"processes left running as {user.name}: {stray}"
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, timeout=30, check=False)
    assert str(user.home) not in ps.stdout
