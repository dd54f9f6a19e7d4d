"""doctor: the host checks and, with a name, the machine's, from one load of its config."""

from __future__ import annotations

import pytest

from podman_emu.podman import schema
from podman_emu.report.doctor import run_doctor
from testing.fixtures import FIXTURES
from testing.podman_home import Sandbox


def test_doctor_name_validates_the_machine_once(podman_home: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "a")
    calls = []
    real = schema.validate_machine

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(schema, "validate_machine", counting)
    report = run_doctor("a")
    assert len(calls) == 1
    machine_check = next(check for check in report.checks if check.topic == "machine a")
    assert machine_check.level == "ok" and "native" in machine_check.detail


def test_doctor_of_a_missing_machine_fails_that_check_only(podman_home: Sandbox) -> None:
    report = run_doctor("nope")
    failing = [check for check in report.checks if check.level == "fail"]
    assert [check.topic for check in failing if check.topic.startswith("machine")] == ["machine nope"]
    assert not report.ok and report.to_json()["ok"] is False


def _with_binary(podman_home: Sandbox, fixture: str, binary: str) -> None:
    data = podman_home.relocate((FIXTURES / fixture).read_bytes())
    data = data.replace(b'"/usr/bin/qemu-system-x86_64"', f'"{binary}"'.encode(), 1)
    if "aarch64" in binary:  # emulated means TCG only: with kvm left in, it would be a native arm64 machine
        data = data.replace(b'"kvm"', b'"tcg"', 1)
    podman_home.install(fixture, data=data)


def test_a_native_machine_without_its_native_qemu_is_a_warning_not_a_failure(podman_home: Sandbox) -> None:
    # The demo machine on a host with only qemu-system-aarch64: convert replaces CmdLine[0] anyway.
    _with_binary(podman_home, "podman-4.9-linux-amd64.json", "/nonexistent/qemu-system-x86_64")
    report = run_doctor("podman-machine-default")
    binary = next(check for check in report.checks if check.topic == "binary")
    assert binary.level == "warn" and "/nonexistent/qemu-system-x86_64" in binary.detail
    assert "cannot start it natively" in binary.detail and binary.fix is not None and "convert" in binary.fix
    assert report.ok


def test_an_emulated_machine_without_its_qemu_still_fails(podman_home: Sandbox) -> None:
    _with_binary(podman_home, "podman-4.9-linux-amd64.json", "/nonexistent/qemu-system-aarch64")
    report = run_doctor("podman-machine-default")
    binary = next(check for check in report.checks if check.topic == "binary")
    assert binary.level == "fail" and "host-arch qemu" in binary.detail and not report.ok
