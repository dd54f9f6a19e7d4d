"""`podman-emu status`: what a machine is right now, asked of its qemu, plus how far its boot got.

qemu answers over the QMP socket podman created (`QMPMonitor.Address`). That socket serves one
client at a time: while podman (or anyone) is connected, a second client gets no greeting until
the first leaves. So status connects once, asks everything in one short session with a timeout
on every step, disconnects, and reports "busy" instead of waiting when the greeting does not come.

The boot stage comes from the console log, so it works for a stopped machine too (what the last
boot reached) and for a running one whose QMP socket is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, QMPClient

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import configured_console_log, console_log_path, machine_kind
from podman_emu.conversion.journal import emulation_status
from podman_emu.conversion.routes import machine_argv
from podman_emu.observe.boot_stage import BootProgress, last_boot
from podman_emu.observe.console_log import (
    console_log_fix,
    console_log_problem,
    console_log_to_read,
    log_files,
    root_refuses_reading,
    rotate_if_large,
)
from podman_emu.observe.network import NetworkReport, network_report
from podman_emu.podman.machines import ConfiguredQemu, load_machine
from podman_emu.podman.running import RunCheck, RunState, live_pid, run_state
from podman_emu.qemu.argv import first_value

QMP_STEP_TIMEOUT_S = 2.0  # connect + greeting, and each command
QMP_TOTAL_TIMEOUT_S = 6.0  # the whole session, whatever happens inside it


@dataclass
class QmpReport:
    """What qemu said about itself. Fields stay None when qemu did not say."""

    reachable: bool = False
    error: str | None = None
    version: str | None = None
    run_state: str | None = None
    arch: str | None = None
    machine: str | None = None
    cpu: str | None = None
    pauth: str | None = None
    vcpus: int | None = None
    accelerator: str | None = None
    tcg_threads: str | None = None
    memory_mib: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def socket_path(address: str) -> str:
    """podman stores a plain path; podman 3.x wrote `unix:` / `unix://` URLs on the command line."""
    for prefix in ("unix://", "unix:"):
        if address.startswith(prefix):
            return address[len(prefix) :]
    return address


def _pauth(properties: dict[str, Any]) -> str | None:
    """Which pointer-authentication algorithm the vCPU emulates (the biggest TCG speed factor)."""
    if "pauth" not in properties:
        return None  # a model without pointer authentication (cortex-a57, neoverse-n1, …)
    if properties["pauth"] is False:
        return "off"
    if properties.get("pauth-impdef"):
        return "impdef"
    if properties.get("pauth-qarma3"):
        return "QARMA3"
    if "pauth-qarma5" in properties:
        # QEMU 10+: impdef is the default unless QARMA5 is asked for.
        return "QARMA5" if properties["pauth-qarma5"] else "impdef"
    return "QARMA5"


async def _session(path: str, facts: QmpReport) -> None:
    client = QMPClient("podman-emu-status")

    async def ask(command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return await asyncio.wait_for(client.execute(command, arguments), QMP_STEP_TIMEOUT_S)
        except ExecuteError as error:
            facts.notes.append(f"{command}: {error}")
            return None

    try:
        try:
            await asyncio.wait_for(client.connect(path), QMP_STEP_TIMEOUT_S)
        except asyncio.TimeoutError:
            facts.error = (
                f"qemu sent no QMP greeting within {QMP_STEP_TIMEOUT_S:.0f} s: another client (podman, while it "
                "starts or stops the machine) holds the single-client QMP socket, or qemu is stuck"
            )
            return
        facts.reachable = True
        greeting = client.greeting
        if greeting is not None:
            with contextlib.suppress(AttributeError, KeyError, TypeError):
                qemu: Any = greeting.QMP.version["qemu"]
                facts.version = f"{qemu['major']}.{qemu['minor']}.{qemu['micro']}"
        status = await ask("query-status")
        if isinstance(status, dict):
            facts.run_state = status.get("status")
        target = await ask("query-target")
        if isinstance(target, dict):
            facts.arch = target.get("arch")
        machine_type = await ask("qom-get", {"path": "/machine", "property": "type"})
        if isinstance(machine_type, str):
            facts.machine = machine_type.removesuffix("-machine")
        cpus = await ask("query-cpus-fast")
        if isinstance(cpus, list) and cpus:
            facts.vcpus = len(cpus)
            await _cpu_model(ask, cpus[0].get("qom-path"), facts)
            threads = {cpu.get("thread-id") for cpu in cpus}
            if len(cpus) > 1:
                # MTTCG runs each vCPU on its own host thread; round-robin TCG runs all on one.
                facts.tcg_threads = "multi" if len(threads) == len(cpus) else "single"
        await _accelerator(ask, client, facts)
        memory = await ask("query-memory-size-summary")
        if isinstance(memory, dict):
            total = int(memory.get("base-memory", 0)) + int(memory.get("plugged-memory", 0) or 0)
            facts.memory_mib = total // (1024 * 1024)
        if facts.accelerator != "tcg":
            facts.tcg_threads = None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), QMP_STEP_TIMEOUT_S)


async def _cpu_model(ask: Any, qom_path: str | None, facts: QmpReport) -> None:
    if not qom_path:
        return
    cpu_type = await ask("qom-get", {"path": qom_path, "property": "type"})
    if not isinstance(cpu_type, str):
        return
    facts.cpu = cpu_type.removesuffix("-arm-cpu")
    listed = await ask("qom-list", {"path": qom_path})
    names = {item.get("name") for item in listed} if isinstance(listed, list) else set()
    properties: dict[str, Any] = {}
    for name in ("pauth", "pauth-impdef", "pauth-qarma3", "pauth-qarma5"):
        if name in names:
            properties[name] = await ask("qom-get", {"path": qom_path, "property": name})
    facts.pauth = _pauth(properties)


async def _accelerator(ask: Any, client: Any, facts: QmpReport) -> None:
    kvm = await ask("query-kvm")
    if isinstance(kvm, dict) and kvm.get("enabled"):
        facts.accelerator = "kvm"
        return
    # x-query-jit (QEMU 6.2+) answers only under TCG; elsewhere it errors "only available with
    # accel=tcg". There is no other QMP command in QEMU 7.x that names the accelerator.
    try:
        await asyncio.wait_for(client.execute("x-query-jit"), QMP_STEP_TIMEOUT_S)
        facts.accelerator = "tcg"
    except ExecuteError as error:
        if "CommandNotFound" in str(getattr(error, "error_class", "")) or "not found" in str(error):
            # Older qemu: an aarch64 guest on a non-arm host can only be TCG.
            if facts.arch == "aarch64" and platform.machine().lower() not in ("aarch64", "arm64"):
                facts.accelerator = "tcg"
                facts.notes.append("accelerator inferred: this qemu has no x-query-jit")
        else:
            facts.accelerator = "not tcg (hvf or another hardware accelerator)"


def ask_qemu(address: str, timeout: float = QMP_TOTAL_TIMEOUT_S) -> QmpReport:
    """A short QMP session; never raises, never takes longer than twice `timeout` (plus teardown).
    qemu.qmp also logs the failures reported here in `error`; the CLI silences its logger."""
    path = socket_path(address)
    if not os.path.exists(path):
        return QmpReport(error=f"no QMP socket at {path} (qemu is not running)")
    for attempt in (1, 2):
        facts = QmpReport()

        async def bounded(facts: QmpReport = facts) -> None:
            await asyncio.wait_for(_session(path, facts), timeout)

        try:
            asyncio.run(bounded())
        except asyncio.TimeoutError:
            facts.error = facts.error or f"qemu did not answer within {timeout:.0f} s"
        except Exception as exc:
            # ConnectError wraps the OSError: a stale socket file refuses the connection.
            cause = exc.__cause__ or getattr(exc, "exc", None) or exc
            if isinstance(cause, ConnectionRefusedError) or "Connection refused" in str(exc):
                facts.error = f"QMP socket {path} refuses connections (a stale file: qemu is not running)"
            elif attempt == 1:
                # Seen right after another client let go of the socket: the connection that queued
                # meanwhile fails (recv: EINVAL) and a fresh one is served. One retry, then report.
                time.sleep(0.2)
                continue
            else:
                facts.error = f"QMP session failed: {type(exc).__name__}: {exc}"
        return facts
    return facts


def _qemu_pid(argv: list[str], vm_pid_file: str | None) -> tuple[int | None, str | None]:
    candidates = [first_value(argv, "-pidfile"), vm_pid_file]
    for pid_file in candidates:
        if not pid_file:
            continue
        pid = live_pid(pid_file)
        if pid is None:
            continue
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = None  # no /proc (macOS): trust the pid file, as podman does
        if comm is not None and not comm.startswith("qemu"):
            continue  # the pid was reused by something else after qemu died
        return pid, pid_file
    return None, None


def process_uptime(pid: int, pid_file: str | None) -> float | None:
    """Seconds since the qemu process started: /proc on Linux, else the pid file qemu wrote at start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        system_uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, system_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        pass
    if pid_file:
        with contextlib.suppress(OSError):
            return max(0.0, time.time() - os.stat(pid_file).st_mtime)
    return None


@dataclass(frozen=True)
class ConsoleReport:
    """The machine's console log as status sees it: which files, how much, how fresh, how far."""

    log: Path | None  # None: podman-emu does not log this machine's console
    files: list[Path] = field(default_factory=list)  # those that exist, oldest first
    size_bytes: int = 0
    last_output_age_s: float | None = None
    boot: BootProgress | None = None
    problem: str | None = None  # why qemu could not open the log at its next start
    fix: str | None = None

    @property
    def exists(self) -> bool:
        return bool(self.files)

    def to_json(self) -> dict[str, Any]:
        if self.log is None:
            return {"log": None, "exists": False, "boot": None}
        report: dict[str, Any] = {"log": str(self.log), "exists": self.exists, "files": [str(f) for f in self.files]}
        report["problem"] = self.problem
        report["fix"] = self.fix
        if self.exists:
            report["size_bytes"] = self.size_bytes
            report["last_output_age_s"] = self.last_output_age_s
        report["boot"] = self.boot.to_json() if self.boot is not None else None
        return report


def console_report(log: Path | None, name: str) -> ConsoleReport:
    if log is None:
        return ConsoleReport(None)
    problem = console_log_problem(log)
    fix = console_log_fix(log, name) if problem is not None else None
    files = log_files(log)
    if not files:
        return ConsoleReport(log, files, problem=problem, fix=fix)
    newest = max(files, key=lambda f: f.stat().st_mtime)
    return ConsoleReport(
        log,
        files,
        problem=problem,
        fix=fix,
        size_bytes=sum(f.stat().st_size for f in files),
        last_output_age_s=round(max(0.0, time.time() - newest.stat().st_mtime), 1),
        boot=last_boot(log),
    )


@dataclass(frozen=True)
class StatusReport:
    """`status`: the config's view, the live qemu's answers and the console's, side by side."""

    name: str
    emulation: str
    run: RunCheck
    configured: ConfiguredQemu
    qmp_socket: str
    qemu: QmpReport
    pid: int | None
    uptime_s: float | None
    console: ConsoleReport
    network: NetworkReport | None = None  # emulated machines: gvproxy and the API forward

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "name": self.name,
            "emulation": self.emulation,
            "state": self.run.state.value,
            "state_evidence": list(self.run.evidence),
            "configured": self.configured.to_json(),
            "qmp_socket": self.qmp_socket,
            "qemu": {**self.qemu.to_json(), "pid": self.pid, "uptime_s": self.uptime_s},
            "console": self.console.to_json(),
            "network": self.network.to_json() if self.network else None,
        }


def _machine_console_report(configured: str | None, own: Path, *, converted: bool, name: str) -> ConsoleReport:
    if configured is None:
        # Converted, but the console options were edited out of CmdLine: earlier boots may be there.
        return console_report(own if converted else None, name)
    readable = console_log_to_read(configured, own)
    if readable is None:
        return ConsoleReport(Path(configured), problem=root_refuses_reading(configured), fix="Run status as its owner.")
    return console_report(readable, name)


def machine_status(name: str) -> StatusReport:
    machine = load_machine(name)
    argv = machine_argv(machine)
    journal = journals.load_journal(machine.config_path)
    check = run_state(machine.config)
    own = console_log_path(machine.config_path)
    rotate_if_large(own)
    pid, pid_file = _qemu_pid(argv, machine.config.vm_pid_file)
    if check.state is not RunState.STOPPED:
        qemu = ask_qemu(machine.config.qmp_socket)
    else:
        qemu = QmpReport(error="the machine is stopped")
    return StatusReport(
        name=machine.name,
        emulation=emulation_status(
            journal, current_sha256=machine.document.sha256, kind=machine_kind(machine.document.content)
        ),
        run=check,
        configured=ConfiguredQemu.of(machine.config, argv),
        qmp_socket=socket_path(machine.config.qmp_socket),
        qemu=qemu,
        pid=pid,
        uptime_s=round(process_uptime(pid, pid_file) or 0.0, 1) if pid is not None else None,
        console=_machine_console_report(configured_console_log(argv), own, converted=journal is not None, name=name),
        network=network_report(machine, check) if machine_kind(machine.document.content) == "emulated" else None,
    )
