"""doctor: the host checks and, with a name, the machine's, from one load of its config."""

from __future__ import annotations

import pytest

from podman_emu.podman import schema
from podman_emu.report.doctor import run_doctor
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
