"""A podman 5.4.2 qemu machine run emulated through podman-emu's `qemu-system-x86_64` wrapper:
real podman 5.4.2, qemu 10, gvproxy 0.8.1 and virtiofsd from a Debian trixie root
(testing.podman5), a real Debian 12 arm64 guest provisioned by the real ignition
(testing.realguest).

One ordered scenario, as a user made inside the root:
init (5.x, a virtiofs volume) -> `podman-emu convert` (the aarch64 disk at ImagePath, the vars
file, the qemu wrapper and its containers.conf drop-in, the journal) -> a native machine of the
same user still reaches the real qemu-system-x86_64 with podman's argv unchanged -> start ->
`podman --connection` info / import / `run uname -m` = aarch64 -> the volume round trip over
virtiofs -> `machine ssh` -> stop -> `podman-emu revert` (the config as podman left it, nothing
of podman-emu left in the user's containers config) -> rm leaves nothing.

Prerequisites: root (mmdebstrap, mounts, chroot) and mmdebstrap + qemu-user-static (the arm64
guest's build). Missing, the module skips, and fails under CI=true.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testing.podman_user import Result
from testing.tools import unavailable

from .support import phase, record_phase

pytestmark = [pytest.mark.e2e]

EMU, NATIVE = "p5emu", "p5native"
# Under TCG a first boot of the guest takes ~2-4 min on 2 host cores; podman 5 then retries ssh
# on its own (conductVMReadinessCheck) before the virtiofs mounts.
START_TIMEOUT_S = 600
STOP_TIMEOUT_S = 180
REMOTE_TIMEOUT_S = 240
NATIVE_START_TIMEOUT_S = 90
REAL_QEMU = "/usr/bin/qemu-system-x86_64"
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
DROPIN_DIR = ".config/containers/containers.conf.d"
# What podman itself rewrites in the machine's JSON at start and stop.
PODMAN_REWRITES = ("LastUp", "Starting")


# ---------------------------------------------------------------------------------------------
# Ordering: once a step fails, the later ones skip (the scenario builds on each step).

_FAILED: list[str] = []


@pytest.fixture(autouse=True)
def _in_order(request: pytest.FixtureRequest) -> Iterator[None]:
    if _FAILED:
        pytest.skip(f"an earlier podman 5 step failed: {_FAILED[0]}")
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        _FAILED.append(request.node.name)


def must(result: Result, what: str) -> Result:
    assert not result.timed_out, f"{what} timed out\n{result.describe()}"
    assert result.returncode == 0, f"{what} failed\n{result.describe()}"
    return result


def _normalised(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw)
    for key in PODMAN_REWRITES:
        data.pop(key, None)
    return data


# ---------------------------------------------------------------------------------------------
# Fixtures.


def _prerequisites() -> None:
    if sys.platform != "linux":
        unavailable("needs Linux")
    if os.geteuid() != 0:
        unavailable("needs root: mmdebstrap, the root's mounts, chroot (run it as root)")
    if shutil.which("mmdebstrap") is None:
        unavailable("mmdebstrap is not installed (Debian: apt-get install mmdebstrap)")
    if not BINFMT_CONF.is_file():
        unavailable(f"{BINFMT_CONF} is missing: the arm64 guest's build needs apt-get install qemu-user-static")


@pytest.fixture(scope="module")
def log_dir() -> Path:
    chosen = os.environ.get("PODMAN_EMU_E2E_LOGS")
    path = Path(chosen) / "podman5" if chosen else Path(tempfile.mkdtemp(prefix="podman-emu-p5-logs-"))
    path.mkdir(parents=True, exist_ok=True)
    print(f"[podman5] logs in {path}")
    return path


@pytest.fixture(scope="module")
def p5_root() -> Any:
    _prerequisites()
    from testing import podman5

    with phase("podman 5 root (trixie) build") as info:
        root = podman5.build_root(log=print)
        info["note"] = "cached" if root.cached else f"built in {root.build_seconds:.0f}s {root.phases}"
    return root


@pytest.fixture(scope="module")
def p5_guest(p5_root: Any) -> Any:
    from testing.podman5.guest import build_guest

    with phase("podman 5 guest build") as info:
        guest = build_guest(log=print)
        info["note"] = "cached" if guest.cached else f"built in {guest.build_seconds:.0f}s"
    return guest


@dataclass
class Scenario:
    session: Any  # testing.podman5.RootSession
    guest: Any
    blank: str  # the x86_64 disk `init` copies (never booted natively: no KVM for the user)
    aarch64_disk: str  # the guest disk, seen inside the root
    share: str  # host dir of the volume, mounted at the same path in the guest
    busybox: str
    originals: dict[str, bytes] = field(default_factory=dict)
    containers_config: dict[str, bytes | None] = field(default_factory=dict)


def _containers_config(session: Any) -> dict[str, bytes | None]:
    """The user's containers.conf and its drop-ins, by path (None: absent)."""
    base = session.host(f"{session.home}/.config/containers")
    found: dict[str, bytes | None] = {"containers.conf": None}
    if (base / "containers.conf").is_file():
        found["containers.conf"] = (base / "containers.conf").read_bytes()
    for path in sorted((base / "containers.conf.d").glob("*")) if (base / "containers.conf.d").is_dir() else []:
        found[f"containers.conf.d/{path.name}"] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def scenario(p5_root: Any, p5_guest: Any, log_dir: Path) -> Iterator[Scenario]:
    from testing import podman5

    with contextlib.ExitStack() as stack:
        with phase("podman 5 session setup (mounts, user, pip install podman-emu)"):
            session = stack.enter_context(podman5.enter(p5_root, log_dir, binds=[p5_guest.directory], log=print))
        home = session.home
        made = Scenario(
            session,
            p5_guest,
            blank=f"{home}/blank-x86_64.qcow2",
            aarch64_disk=str(p5_guest.disk),
            share=f"{home}/share",
            busybox=f"{home}/busybox-arm64.tar",
        )
        must(session.run(["qemu-img", "create", "-q", "-f", "qcow2", made.blank, "2G"], timeout=60), "qemu-img")
        must(session.run(["mkdir", made.share], timeout=30), "mkdir share")
        shutil.copy2(p5_guest.busybox_tar, session.host(made.busybox))
        os.chown(session.host(made.busybox), session.uid, session.gid)
        yield made


def init_machine(scenario: Scenario, name: str, *extra: str, image: str | None = None) -> None:
    session = scenario.session
    with phase(f"init {name}"):
        must(
            session.podman(
                "machine", "init", "--image", image or scenario.blank, "--timezone", "UTC",
                "--volume", f"{scenario.share}:{scenario.share}", *extra, name,
                timeout=300,
            ),
            f"podman machine init {name}",
        )  # fmt: skip
    session.machines.append(name)
    scenario.originals[name] = (session.config_dir / f"{name}.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# The native machine's start, traced: what podman exec'd and what finally ran.

EXECVE = re.compile(
    r'^(\d+)\s+execve\("((?:[^"\\]|\\.)*)", \[(.*?)\](?:, .*?)?'  # pid, path, argv, env
    r"(?:\)\s*=\s*(-?\d+)| <unfinished \.\.\.>)"  # the result, or the call's first half
)
RESUMED = re.compile(r"^(\d+)\s+<\.\.\. execve resumed>.*\)\s*=\s*(-?\d+)")
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse_execves(trace: str) -> list[tuple[int, str, list[str], int]]:
    """(pid, path, argv, result) of every execve in an `strace -f -v -s N -e trace=execve` log,
    in call order. With -f, strace splits a call that another traced process interrupts into
    `execve(…) <unfinished ...>` and `<... execve resumed>) = N`; both halves are joined."""
    found: list[tuple[int, str, list[str], int]] = []
    pending: dict[int, int] = {}  # pid -> index in found of its unfinished call
    for line in trace.splitlines():
        match = EXECVE.match(line)
        if match:
            argv = [bytes(a, "utf-8").decode("unicode_escape") for a in ARG.findall(match.group(3))]
            pid, result = int(match.group(1)), match.group(4)
            if result is None:
                pending[pid] = len(found)
            found.append((pid, match.group(2), argv, int(result) if result is not None else -1))
            continue
        resumed = RESUMED.match(line)
        if resumed and int(resumed.group(1)) in pending:
            pid, path, argv, _ = found[pending.pop(int(resumed.group(1)))]
            found[found.index((pid, path, argv, -1))] = (pid, path, argv, int(resumed.group(2)))
    return found


# ---------------------------------------------------------------------------------------------
# The scenario.


def test_01_init(scenario: Scenario) -> None:
    session = scenario.session
    version = must(session.podman("--version"), "podman --version").stdout
    assert "5.4.2" in version, version
    # Two vCPUs: MTTCG makes the first boot ~1.5x faster (README: convert advises a second vCPU).
    init_machine(scenario, EMU, "--cpus", "2")
    raw = scenario.originals[EMU]
    assert b"\n" not in raw, "podman 5.x writes the machine JSON on one line"
    config = json.loads(raw)
    assert config["Mounts"][0]["Type"] == "virtiofs", config["Mounts"]
    init_machine(scenario, NATIVE)
    scenario.containers_config = _containers_config(session)


def podman_emu(scenario: Scenario, *args: str) -> Any:
    session = scenario.session
    result = must(
        session.run([f"{session.venv}/bin/podman-emu", *args, "--json"], timeout=300), f"podman-emu {args[0]}"
    )
    (session.log_dir / f"podman-emu-{args[0]}.txt").write_text(result.describe())
    return json.loads(result.stdout)


def test_02_convert(scenario: Scenario) -> None:
    session = scenario.session
    with phase(f"podman-emu convert {EMU}"):
        converted = podman_emu(scenario, "convert", EMU, "--image", scenario.aarch64_disk)
    # QEMU 10 already uses the fast pauth for max; lpa2=off guards against edk2 2025.11.
    assert converted["applied"] and converted["cpu"] == "max,lpa2=off", converted
    after = _containers_config(session)
    dropins = [k for k in after if k.startswith("containers.conf.d/") and k not in scenario.containers_config]
    assert dropins, f"no containers.conf drop-in was registered: {sorted(after)}"
    assert after["containers.conf"] == scenario.containers_config["containers.conf"], "containers.conf was edited"
    assert any(b"helper_binaries_dir" in (after[k] or b"") for k in dropins), {k: after[k] for k in dropins}
    roles = {edit["role"] for edit in converted["host_changes"]}
    assert {"qemu wrapper", "gvproxy launcher", "containers.conf drop-in"} <= roles, roles
    raw = (session.config_dir / f"{EMU}.json").read_bytes()
    # podman's own byte format (one json.Marshal line), and only the disk changed.
    assert b"\n" not in raw and raw.startswith(b'{"Created":'), raw[:80]
    config, original = json.loads(raw), json.loads(scenario.originals[EMU])
    assert config["ImagePath"]["Path"].endswith(f"/{EMU}_aarch64.qcow2"), config["ImagePath"]
    assert {**config, "ImagePath": original["ImagePath"]} == original
    listed = podman_emu(scenario, "list")
    assert {m["name"]: m["emulation"] for m in listed}.get(EMU) == "emulated", listed


def test_03_a_native_machine_reaches_the_real_qemu_unchanged(scenario: Scenario) -> None:
    """podman 5 finds podman-emu's wrapper first for every machine of the user; for a machine
    podman-emu did not convert, the real qemu-system-x86_64 must get podman's argv as it was.
    Traced with strace: podman's execve of the first qemu-system-x86_64 it finds, and the real
    binary's. Without KVM for the user (this host) the real qemu fails at once with its KVM
    error; with KVM it would wait for a guest that cannot boot (a blank disk). Either way the
    start is ended here: podman leaves gvproxy and virtiofsd running after a failed start, and
    strace -f would wait for them."""
    from testing.podman_user import stop_process_group

    session = scenario.session

    def is_real(path: str) -> bool:  # /usr/bin/qemu-system-x86_64 by any name (merged /usr: /bin/…)
        return session.host(path).resolve() == session.host(REAL_QEMU).resolve()

    trace_in = f"{session.home}/native-start.strace"
    trace = session.host(trace_in)
    output = session.log_dir / "native-start.txt"
    before = (session.config_dir / f"{NATIVE}.json").read_bytes()
    outcome = "timed out"
    with phase(f"start {NATIVE} (native, traced)") as info:
        proc = session.spawn(
            ["strace", "-f", "-q", "-v", "-s", "65536", "-e", "trace=execve", "-o", trace_in,
             "podman", "machine", "start", NATIVE],
            output=output,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + NATIVE_START_TIMEOUT_S
            while time.monotonic() < deadline and proc.poll() is None:
                text = trace.read_text() if trace.exists() else ""
                execs = parse_execves(text)
                # podman's own exit, or its error line: strace does not always report the exit of
                # a Go thread-group leader while podman's leftover children (gvproxy) are traced.
                podman_done = execs and re.search(rf"^{execs[0][0]} \+\+\+ exited with \d+", text, re.M)
                if podman_done or "Error: " in output.read_text(errors="replace"):
                    outcome = "podman exited"
                    break
                if any(is_real(p) and rc == 0 for _, p, _, rc in execs) and session.processes("qemu-system-x86"):
                    time.sleep(3)  # the qemu podman started is up (KVM available): it stays up
                    if session.processes("qemu-system-x86"):
                        outcome = "the real qemu is running"
                        break
                time.sleep(0.3)
        finally:
            killed = session.kill_everything()
            stop_process_group(proc)
        info["note"] = outcome
    shutil.copy2(trace, session.log_dir / "native-start.strace")
    said = output.read_text(errors="replace")
    (session.log_dir / "native-start-teardown.txt").write_text("\n".join(killed) + "\n")
    assert outcome != "timed out", said
    qemus = [(p, argv, rc) for _, p, argv, rc in parse_execves(trace.read_text()) if Path(p).name.startswith("qemu-")]
    assert qemus, f"podman exec'd no qemu-system-*\n{said}"
    first_path, podman_argv, _ = qemus[0]
    record_phase(f"  {NATIVE}: the qemu podman exec'd", 0.0, first_path)
    assert podman_argv[1:4] == ["-accel", "kvm", "-cpu"], podman_argv
    assert not is_real(first_path), (
        "podman found the real qemu first: the wrapper is not in podman's helper dirs, so this proves nothing"
    )
    real = [argv for p, argv, rc in qemus if is_real(p) and rc == 0]
    assert real, f"the real {REAL_QEMU} never ran: {qemus}"
    assert real[-1][1:] == podman_argv[1:], f"the argv changed on the way:\n{podman_argv}\n{real[-1]}"
    assert not [q for q in qemus if "aarch64" in q[0]], qemus
    if outcome == "podman exited":
        # The real qemu refused -accel kvm (no KVM for the user). podman prints qemu's stderr, or,
        # when it reads the ready socket first, "connection reset by peer": a race in podman.
        assert "Could not access KVM kernel module" in said or "connection reset by peer" in said, said
    assert _normalised((session.config_dir / f"{NATIVE}.json").read_bytes()) == _normalised(before)


def test_04_start(scenario: Scenario) -> None:
    session = scenario.session
    with phase(f"start {EMU}") as info:
        result = session.podman("machine", "start", EMU, timeout=START_TIMEOUT_S)
        started = result.line_time("started successfully")
        info["note"] = f"'started successfully' at {started:.0f}s" if started else "never started"
    (session.log_dir / f"start-{EMU}.txt").write_text(result.describe())
    for label in ("Mounting volume", "started successfully"):
        at = result.line_time(label)
        if at is not None:
            record_phase(f"  {EMU}: '{label}'", at)
    must(result, f"podman machine start {EMU}")
    assert "started successfully" in result.output, result.describe()
    running = {pid: os.readlink(f"/proc/{pid}/exe") for pid in session.processes("qemu-system-")}
    assert [exe for exe in running.values() if Path(exe).name == "qemu-system-aarch64"], running
    # podman-emu's gvproxy launcher took the API forward over (told by gvproxy's -listen-qemu
    # socket: 5.x has one gvproxy pid file per user) and brought it up once sshd took the key.
    assert forward_phase(scenario, until="forwarding") == "forwarding"


def forward_phase(scenario: Scenario, *, until: str, timeout_s: float = 120) -> str | None:
    session = scenario.session
    forward = session.host(f"{session.home}/.local/state/podman-emu/start-helpers/forward")
    deadline = time.monotonic() + timeout_s
    phase_now = None
    while time.monotonic() < deadline:
        states = sorted(forward.glob("*.json")) if forward.is_dir() else []
        if states:
            with contextlib.suppress(ValueError, OSError):
                phase_now = json.loads(states[0].read_text())["phase"]
        if phase_now == until:
            break
        time.sleep(1)
    return phase_now


def remote(scenario: Scenario, *args: str, what: str) -> Result:
    with phase(what):
        return must(scenario.session.podman("--connection", EMU, *args, timeout=REMOTE_TIMEOUT_S), what)


def test_05_arm64_container(scenario: Scenario) -> None:
    info = remote(scenario, "info", "--format", "{{.Host.Arch}}", what="podman info (remote)")
    assert info.stdout.strip() == "arm64", info.describe()
    remote(scenario, "import", scenario.busybox, "localhost/busybox-arm64", what="import busybox")
    ran = remote(scenario, "run", "--rm", "localhost/busybox-arm64", "uname", "-m", what="first arm64 run")
    assert ran.stdout.strip() == "aarch64", ran.describe()


def test_06_virtiofs_volume_round_trip(scenario: Scenario) -> None:
    session = scenario.session
    share = session.host(scenario.share)
    token = hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]
    (share / "from-host").write_text(token + "\n")
    os.chown(share / "from-host", session.uid, session.gid)
    remote(
        scenario,
        "run", "--rm", "-v", f"{scenario.share}:/data", "localhost/busybox-arm64",
        "sh", "-c", "cat /data/from-host > /data/from-container; uname -m >> /data/from-container",
        what="virtiofs volume round trip",
    )  # fmt: skip
    assert (share / "from-container").read_text().split() == [token, "aarch64"]


def test_07_machine_ssh(scenario: Scenario) -> None:
    with phase("machine ssh"):
        result = must(scenario.session.podman("machine", "ssh", EMU, "uname", "-m", timeout=120), "machine ssh")
    assert result.stdout.strip() == "aarch64", result.describe()


def test_08_stop(scenario: Scenario) -> None:
    session = scenario.session
    with phase(f"stop {EMU}"):
        must(session.podman("machine", "stop", EMU, timeout=STOP_TIMEOUT_S), "podman machine stop")
    deadline = time.monotonic() + 30
    while session.processes("qemu-system-") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not session.processes("qemu-system-"), session.processes("qemu-system-")
    assert forward_phase(scenario, until="stopped", timeout_s=30) == "stopped"  # it followed gvproxy out


def test_09_revert(scenario: Scenario) -> None:
    session = scenario.session
    with phase(f"podman-emu revert {EMU}"):
        reverted = podman_emu(scenario, "revert", EMU, "--delete-disk")
    assert reverted["applied"], reverted
    current = (session.config_dir / f"{EMU}.json").read_bytes()
    # podman rewrote it at start/stop (LastUp, Starting); everything else must be as it was.
    assert _normalised(current) == _normalised(scenario.originals[EMU])
    assert _containers_config(session) == scenario.containers_config, "start-helper changes left behind"
    assert not list(session.host(session.home).rglob("qemu-system-x86_64")), "the wrapper is still there"


def test_10_rm_leaves_nothing(scenario: Scenario) -> None:
    session = scenario.session
    for name in (EMU, NATIVE):
        with phase(f"rm {name}"):
            must(session.podman("machine", "rm", "-f", name, timeout=120), f"rm {name}")
        session.machines.remove(name)
    home = session.host(session.home)
    # podman 5.4.2's `machine rm` leaves the machine's empty NAME.lock (native machines too):
    # podman's, not podman-emu's.
    podmans_locks = {session.config_dir / f"{name}.lock" for name in (EMU, NATIVE)}
    traces = [
        str(p)
        for p in home.rglob("*")
        if (EMU in p.name or NATIVE in p.name) and not (p in podmans_locks and p.stat().st_size == 0)
    ]
    assert traces == [], traces
    state = home / ".local/state/podman-emu"
    left = [str(p) for p in state.rglob("*") if p.is_file() and p.name != "registry.json"] if state.exists() else []
    assert not (state / "start-helpers" / "registry.json").exists()
    assert not [p for p in left if EMU in Path(p).read_bytes().decode(errors="replace")], left
    assert _containers_config(session) == scenario.containers_config
