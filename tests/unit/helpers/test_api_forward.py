"""The API forwarder's record of a start: created once, updated while its gvproxy lives, and never
brought back once revert or cleanup removed it (a probe may still be under way at `machine stop`)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from pathlib import Path

from podman_emu.helpers import api_forward


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed: ssh is refused


def test_a_removed_record_stays_removed_while_the_forwarder_winds_down(tmp_path: Path) -> None:
    gvproxy = subprocess.Popen(["sleep", "60"])  # stands for gvproxy: only its pid and start time count
    state_file = tmp_path / "forward" / "m.json"
    request = api_forward.ForwardRequest(
        str(tmp_path / "api.sock"), "/run/podman/podman.sock", "core", str(tmp_path / "key"), closed_port()
    )
    forwarder = threading.Thread(target=api_forward.run, args=([request], gvproxy.pid, state_file))
    forwarder.start()
    try:
        deadline = time.monotonic() + 30
        while not state_file.exists() or json.loads(state_file.read_text())["attempts"] < 1:
            assert time.monotonic() < deadline, "the forwarder never probed the guest"
            time.sleep(0.1)
        assert json.loads(state_file.read_text())["phase"] == "waiting-for-sshd"
        state_file.unlink()  # what revert does right after `podman machine stop`
        time.sleep(api_forward.PROBE_INTERVAL_S + 1)  # at least one more probe and its update
        assert not state_file.exists()
    finally:
        gvproxy.kill()
        gvproxy.wait()
        forwarder.join(timeout=30)
    assert not forwarder.is_alive()
    assert not state_file.exists()  # nor the final "stopped"
