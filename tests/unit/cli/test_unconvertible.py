"""Machines podman-emu cannot or need not convert get the right answer in every command, and
their files are never written: native arm64 machines (Apple silicon, podman 4.0–4.9) and podman
5.x machines of the applehv, libkrun, WSL and Hyper-V providers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from testing.cli import invoke
from testing.fixtures import FIXTURES, entries_expecting
from testing.podman_home import Sandbox

NATIVE_ARM64 = [entry["file"] for entry in entries_expecting("native-arm64")]
NO_ROUTE = {entry["file"]: entry for entry in entries_expecting("no-route")}
ARM64_CHECK = "podman run --rm --platform linux/arm64 docker.io/library/alpine uname -m"


def digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).parts[0] != "cache"
    }


@pytest.mark.parametrize("fixture", NATIVE_ARM64)
def test_a_native_arm64_machine_is_named_so_everywhere_and_never_touched(podman_home: Sandbox, fixture: str) -> None:
    podman_home.install(fixture, "m")
    before = digest(podman_home.root)

    listed = invoke(podman_home, "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["emulation"] == "native-arm64"

    inspected = invoke(podman_home, "inspect", "m", "--json")
    assert inspected.exit_code == 0, inspected.output
    assert json.loads(inspected.stdout)["emulation"] == "native-arm64"

    doctor = invoke(podman_home, "doctor", "m", "--json")
    details = " ".join(c["detail"] for c in json.loads(doctor.stdout)["checks"] if c["topic"] == "machine m")
    assert "native arm64 machine" in details and "already run natively" in details

    for command in (["convert", "m", "--image", "/nonexistent.qcow2"], ["revert", "m"]):
        refused = invoke(podman_home, *command)
        assert refused.exit_code == 1, refused.output
        assert "native arm64 machine" in refused.output, refused.output
        assert "already run natively" in refused.output
        assert "nothing to convert" in refused.output
        assert "no record" not in refused.output and "podman machine rm" not in refused.output
        assert "Traceback" not in refused.output
    assert digest(podman_home.root) == before


PROVIDER_DIRS = {"applehv": "applehv", "libkrun": "libkrun", "wsl": "wsl", "hyperv": "hyperv"}


def install_in_provider_dir(box: Sandbox, fixture: str) -> Path:
    provider = fixture.rsplit("-", 1)[1].removesuffix(".json")
    target = box.home / ".config" / "containers" / "podman" / "machine" / PROVIDER_DIRS[provider] / "m.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes((FIXTURES / fixture).read_bytes())
    return target


@pytest.mark.parametrize("fixture", sorted(NO_ROUTE))
def test_a_podman5_machine_of_another_provider_gets_the_right_answer(podman_home: Sandbox, fixture: str) -> None:
    install_in_provider_dir(podman_home, fixture)
    before = digest(podman_home.root)
    for command in (["convert", "m", "--image", "/nonexistent.qcow2"], ["doctor", "m"]):
        result = invoke(podman_home, *command)
        assert result.exit_code == 1, result.output
        text = " ".join(result.output.split())
        assert "Traceback" not in text
        if "applehv" in fixture:
            assert "applehv" in text and "full emulation is impossible" in text.lower()
            assert "user-mode emulation" in text and ARM64_CHECK in text
        elif "libkrun" in fixture:
            assert "libkrun" in text and "native arm64 machine" in text and "already run natively" in text
        elif "wsl" in fixture:
            assert "WSL" in text and "full emulation is impossible" in text.lower() and ARM64_CHECK in text
        else:
            assert "Hyper-V" in text and "full emulation is impossible" in text.lower()
            assert "user-mode emulation" in text and ARM64_CHECK in text
    assert digest(podman_home.root) == before


def test_an_arm64_hosts_podman5_qemu_machine_is_native_and_refused_with_the_reason(podman_home: Sandbox) -> None:
    data = (FIXTURES / "podman-5.8-linux-amd64-qemu.json").read_bytes()
    data = data.replace(b"-amd64.qcow2", b"-arm64.qcow2")  # podman names the disk NAME-<GOARCH>
    (podman_home.config_dir / "m.json").write_bytes(data)
    result = invoke(podman_home, "convert", "m", "--image", "/nonexistent.qcow2")
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "podman 5.x qemu machine with an arm64 disk" in text and "already run natively" in text
    assert (podman_home.config_dir / "m.json").read_bytes() == data
