"""arm64 containers from the host through a converted machine: real podman 4.3.1, the real
gvproxy 0.8.1, a real Debian 12 arm64 guest provisioned by the real ignition (testing.realguest).

One ordered scenario as a throwaway user with podman's own configuration:
init -> convert -> start ("started successfully", the API forward up) -> `podman --connection`
info/import/run (uname -m = aarch64), a volume round trip, the host's loopback from a container,
`machine ssh` -> stop -> revert (the drop-in, the launcher and the registry gone) -> rm leaves
nothing; then the slow guest (sshd 200 s late, longer than gvproxy's own forward budget), and a
native machine of the same user whose gvproxy keeps every argument.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testing.podman_user import PodmanUser, Result, proc_argv

from .support import phase, record_phase

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_step]

FAST, SLOW, NATIVE = "rgfast", "rgslow", "rgnative"
# The fast guest was measured at ~150 s to "started successfully" on the 2-core CI box, the
# slow one at ~315 s; podman 4.3.1 has no timeout of its own.
START_TIMEOUT_S = 540
STOP_TIMEOUT_S = 120
REMOTE_TIMEOUT_S = 180
DROPIN = Path(".config/containers/containers.conf.d/99-podman-emu.conf")


def must(result: Result, what: str) -> Result:
    assert not result.timed_out, f"{what} timed out\n{result.describe()}"
    assert result.returncode == 0, f"{what} failed\n{result.describe()}"
    return result


@dataclass
class RealScenario:
    user: PodmanUser
    guest: Any  # testing.realguest.RealGuest
    native_image: Path
    originals: dict[str, bytes] = field(default_factory=dict)
    containers_conf: bytes | None = None


@pytest.fixture(scope="module")
def real_guest() -> Any:
    realguest = pytest.importorskip("testing.realguest")
    with phase("real guest build") as info:
        guest = realguest.build(log=print)
        info["note"] = "cached" if guest.cached else f"built in {guest.build_seconds:.0f}s"
    return guest


@pytest.fixture(scope="module")
def scenario(real_user: PodmanUser, real_guest: Any) -> Iterator[RealScenario]:
    user = real_user
    native = user.home / "native-x86_64.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(native), "2G"], check=True, timeout=60)
    os.chown(native, user.uid, user.gid)
    share = user.home / "share"
    share.mkdir()
    busybox = user.home / "busybox-arm64.tar"
    shutil.copy2(real_guest.busybox_tar, busybox)
    for path in (share, busybox):
        os.chown(path, user.uid, user.gid)
    made = RealScenario(user, real_guest, native)
    yield made
    for name in list(user.machines):
        user.kill_machine(name)


def init_machine(scenario: RealScenario, name: str) -> None:
    user = scenario.user
    with phase(f"init {name}"):
        must(
            user.podman(
                "machine", "init", "--timezone", "UTC", "--image-path", str(scenario.native_image), name, timeout=300
            ),
            "podman machine init",
        )
    user.machines.append(name)
    scenario.originals[name] = (user.config_dir / f"{name}.json").read_bytes()


def convert(scenario: RealScenario, name: str, disk: Path) -> None:
    with phase(f"convert {name}"):
        result = must(scenario.user.podman_emu("convert", name, "--image", str(disk), timeout=600), "convert")
    assert "99-podman-emu.conf" in result.output, "convert did not say it registers the launcher"


def start(user: PodmanUser, name: str, *, watch_status: bool = False) -> tuple[Result, list[str]]:
    """`podman machine start` under a timeout; with `watch_status`, `podman-emu status` is sampled
    meanwhile (what a user waiting on a slow boot sees)."""
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(15):
            status = user.podman_emu("status", name, timeout=60)
            seen.append(status.stdout)

    sampler = threading.Thread(target=sample, daemon=True)
    if watch_status:
        sampler.start()
    with phase(f"start {name}") as info:
        result = user.podman("machine", "start", name, timeout=START_TIMEOUT_S)
        started = result.line_time("started successfully")
        info["note"] = f"'started successfully' at {started:.0f}s" if started else "never started"
    done.set()
    if watch_status:
        sampler.join(timeout=70)
    (user.log_dir / f"start-{name}.log").write_text(result.describe())
    assert not result.timed_out, f"podman machine start {name} hung\n{result.describe()}"
    must(result, f"podman machine start {name}")
    assert "started successfully" in result.output, result.describe()
    return result, seen


def remote(user: PodmanUser, name: str, *args: str, what: str) -> Result:
    with phase(what):
        return must(user.podman("--connection", name, *args, timeout=REMOTE_TIMEOUT_S), what)


def stop(user: PodmanUser, name: str) -> None:
    with phase(f"stop {name}"):
        must(user.podman("machine", "stop", name, timeout=STOP_TIMEOUT_S), "podman machine stop")
    deadline = time.monotonic() + 30
    while any(user.machine_pids(name).values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(user.machine_pids(name).values()), user.machine_pids(name)


def forward_state(user: PodmanUser, name: str) -> dict[str, Any]:
    found = list((user.state_dir / "start-helpers" / "forward").glob(f"{name}-*.json"))
    assert len(found) == 1, found
    state: dict[str, Any] = json.loads(found[0].read_text())
    return state


@contextlib.contextmanager
def host_loopback_service(body: bytes) -> Iterator[int]:
    """A web server on the host's 127.0.0.1 only: gvproxy maps 192.168.127.254 to it."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def test_01_init_and_convert(scenario: RealScenario) -> None:
    user = scenario.user
    conf = user.home / ".config" / "containers" / "containers.conf"
    init_machine(scenario, FAST)
    scenario.containers_conf = conf.read_bytes() if conf.exists() else None
    dry = must(user.podman_emu("convert", FAST, "--image", str(scenario.guest.disk), "--dry-run"), "dry run")
    assert str(user.home / DROPIN) in dry.output and not (user.home / DROPIN).exists()
    convert(scenario, FAST, scenario.guest.disk)
    assert (user.home / DROPIN).exists()
    # podman itself rewrites containers.conf at init and rm (service destinations); podman-emu never does.
    assert (conf.read_bytes() if conf.exists() else None) == scenario.containers_conf


def test_02_start_completes_with_the_api_forward(scenario: RealScenario) -> None:
    user = scenario.user
    start(user, FAST)
    state = forward_state(user, FAST)
    assert state["phase"] == "forwarding", state
    record_phase(f"  {FAST}: guest sshd accepted the key", state["forward_up_at"] - state["started_at"])
    record_phase(f"  {FAST}: ssh attempts before that", float(state["attempts"]))
    gvproxy = user.machine_pids(FAST)["gvproxy"]
    assert gvproxy is not None
    argv = proc_argv(gvproxy)
    assert Path(argv[0]).name == "gvproxy" and "-forward-sock" not in argv, argv
    status = must(user.podman_emu("status", FAST), "status").stdout
    assert "API forward up" in status and "through podman-emu's launcher" in status, status


def test_03_arm64_containers_from_the_host(scenario: RealScenario) -> None:
    user = scenario.user
    info = remote(user, FAST, "info", "--format", "{{.Host.Arch}}", what="podman info (remote)")
    assert info.stdout.strip() == "arm64", info.describe()
    remote(user, FAST, "import", str(user.home / "busybox-arm64.tar"), "localhost/busybox-arm64", what="import")
    ran = remote(user, FAST, "run", "--rm", "localhost/busybox-arm64", "uname", "-m", what="first arm64 run")
    assert ran.stdout.strip() == "aarch64", ran.describe()


def test_04_volume_round_trip(scenario: RealScenario) -> None:
    user = scenario.user
    share = user.home / "share"
    token = hashlib.sha256(str(time.time()).encode()).hexdigest()[:16]
    (share / "from-host").write_text(token + "\n")
    os.chown(share / "from-host", user.uid, user.gid)
    remote(
        user,
        FAST,
        "run", "--rm", "-v", f"{share}:/data", "localhost/busybox-arm64",
        "sh", "-c", "cat /data/from-host > /data/from-container; uname -m >> /data/from-container",
        what="volume round trip",
    )  # fmt: skip
    assert (share / "from-container").read_text().split() == [token, "aarch64"]


def test_05_host_loopback_from_a_container(scenario: RealScenario) -> None:
    user = scenario.user
    body = b"served on the host's loopback\n"
    with host_loopback_service(body) as port:
        got = remote(
            user,
            FAST,
            "run", "--rm", "localhost/busybox-arm64", "wget", "-qO-", f"http://192.168.127.254:{port}/",
            what="container to host loopback",
        )  # fmt: skip
    assert got.stdout.encode() == body, got.describe()


def test_06_machine_ssh(scenario: RealScenario) -> None:
    with phase("machine ssh"):
        result = must(scenario.user.podman("machine", "ssh", FAST, "uname", "-m", timeout=120), "machine ssh")
    assert result.stdout.strip() == "aarch64"


def test_07_stop_closes_the_forward(scenario: RealScenario) -> None:
    user = scenario.user
    stop(user, FAST)
    deadline = time.monotonic() + 40
    while forward_state(user, FAST)["phase"] != "stopped" and time.monotonic() < deadline:
        time.sleep(1)
    assert forward_state(user, FAST)["phase"] == "stopped"
    assert not (user.runtime_dir / "podman" / "podman.sock").exists()


def test_08_slow_guest_survives_gvproxys_budget(scenario: RealScenario) -> None:
    """sshd comes up ~200 s late: gvproxy's own forward gives up after ~60 attempts and takes the
    network down with it; through the launcher the start completes."""
    user = scenario.user
    init_machine(scenario, SLOW)
    convert(scenario, SLOW, scenario.guest.slow_sshd_disk)
    _, samples = start(user, SLOW, watch_status=True)
    state = forward_state(user, SLOW)
    waited = state["forward_up_at"] - state["started_at"]
    record_phase(f"  {SLOW}: guest sshd accepted the key", waited)
    assert waited > 200, f"the slow guest was not slow ({waited:.0f}s): the scenario proves nothing"
    assert any("waiting for the guest's sshd" in sample for sample in samples), samples
    ran = remote(user, SLOW, "info", "--format", "{{.Host.Arch}}", what="slow guest: podman info")
    assert ran.stdout.strip() == "arm64"
    stop(user, SLOW)


def test_09_a_native_machine_keeps_gvproxys_arguments(scenario: RealScenario) -> None:
    """Started while emulated machines are registered, a native machine's gvproxy gets podman's
    arguments untouched (it cannot boot here: a blank x86_64 disk; only gvproxy matters)."""
    user = scenario.user
    init_machine(scenario, NATIVE)
    process = subprocess.Popen(
        ["runuser", "-u", user.name, "--", "env", "-i", *user.env(), "podman", "machine", "start", NATIVE],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        gvproxy = None
        while time.monotonic() < deadline and gvproxy is None:
            gvproxy = user.machine_pids(NATIVE)["gvproxy"]
            time.sleep(0.5)
        assert gvproxy is not None, "podman never started gvproxy"
        argv = proc_argv(gvproxy)
        assert "-forward-sock" in argv and "-forward-identity" in argv, argv
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        process.wait(timeout=30)
        user.kill_machine(NATIVE)
    must(user.podman("machine", "rm", "-f", NATIVE, timeout=120), "rm native")
    user.machines.remove(NATIVE)


def test_10_revert_and_rm_leave_nothing(scenario: RealScenario) -> None:
    user = scenario.user
    conf = user.home / ".config" / "containers" / "containers.conf"
    scenario.containers_conf = conf.read_bytes() if conf.exists() else None
    for name in (FAST, SLOW):
        with phase(f"revert {name}"):
            must(user.podman_emu("revert", name, "--delete-disk"), "revert")
        reverted = json.loads((user.config_dir / f"{name}.json").read_bytes())
        original = json.loads(scenario.originals[name])
        for key in ("LastUp", "Starting"):
            reverted.pop(key, None)
            original.pop(key, None)
        assert reverted == original
    assert not (user.home / DROPIN).exists()
    assert not (user.home / DROPIN).parent.exists()
    assert not (user.state_dir / "start-helpers" / "registry.json").exists()
    assert (conf.read_bytes() if conf.exists() else None) == scenario.containers_conf
    for name in (FAST, SLOW):
        must(user.podman("machine", "rm", "-f", name, timeout=120), "rm")
        user.machines.remove(name)
    # podman 4.3.1 makes <data>/containers/podman/machine/NAME/ for the API socket it asks gvproxy
    # to forward, and `machine rm` leaves it (empty) for native machines too: podman's, not ours.
    podmans_socket_dirs = {user.home / ".local/share/containers/podman/machine" / name for name in (FAST, SLOW)}
    traces = [
        str(p)
        for p in user.home.rglob("*")
        if (FAST in p.name or SLOW in p.name) and not (p in podmans_socket_dirs and not any(p.iterdir()))
    ]
    assert traces == [], traces
