"""`convert` and `revert` of a podman 5.x qemu machine, on the config the real podman 5.4.2 wrote
(tests/data) and the 5.8 layout: only ImagePath changes in podman's one-line format; the rest of
the aarch64 argv is the qemu wrapper's route; revert gives the bytes back, or keeps what podman
rewrote since."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.conversion.helper_registry import read_registry
from podman_emu.conversion.rewrite import rewrite_routed_argv
from podman_emu.host.containers_conf import dropin_path
from podman_emu.podman.podman5 import podman5_argv
from podman_emu.report.doctor import run_doctor
from testing.fixtures import FIXTURES
from testing.podman5_qemu import captured_argv, captured_config
from testing.podman_home import Sandbox

runner = CliRunner()
CONFIGS = ["podman-5.4.2-linux-amd64-qemu.json", "podman-5.8-linux-amd64-qemu.json"]


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def install(box: Sandbox, fixture: str) -> tuple[Path, str]:
    """The config in place as podman 5 lays it out in the sandbox, with a stand-in native disk."""
    if fixture == CONFIGS[0]:
        data = captured_config(str(box.home), str(box.runtime_dir))
    else:
        text = (FIXTURES / fixture).read_text().replace("/home/alice", str(box.home))
        data = text.replace("/run/user/1000", str(box.runtime_dir)).encode()
    content = json.loads(data)
    config = box.config_dir / f"{content['Name']}.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_bytes(data)
    disk = Path(content["ImagePath"]["Path"])
    disk.parent.mkdir(parents=True, exist_ok=True)
    disk.write_bytes(b"native disk stand-in")
    return config, content["Name"]


def convert(disk: Path, name: str, *extra: str) -> Any:
    code, out, err = cli("convert", name, "--image", str(disk), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_the_argv_podman5_argv_builds_is_the_one_the_real_podman_5_4_2_ran(podman_home: Sandbox) -> None:
    config, _ = install(podman_home, CONFIGS[0])
    real = captured_argv(str(podman_home.home), str(podman_home.runtime_dir))
    built = podman5_argv(json.loads(config.read_bytes()))
    assert built[0] == "qemu-system-x86_64" and real[0].endswith("/qemu-system-x86_64")
    assert built[1:] == real[1:]


@pytest.mark.parametrize("fixture", CONFIGS)
def test_dry_run_shows_the_disk_the_route_and_the_host_changes_and_writes_nothing(
    podman_home: Sandbox, blank_aarch64_disk: Path, qemu_aarch64: str, fixture: str
) -> None:
    config, name = install(podman_home, fixture)
    before = config.read_bytes()
    result = convert(blank_aarch64_disk, name, "--dry-run")
    assert result["applied"] is False
    assert [op["path"] for op in result["patch"] if op["op"] != "test"] == ["/ImagePath/Path"]
    after = result["argv_after"]
    assert after[0] == qemu_aarch64 and "tcg" in after[after.index("-accel") + 1]
    assert result["argv_before"] == podman5_argv(json.loads(before))
    roles = {edit["role"] for edit in result["host_changes"]}
    assert {"qemu wrapper", "gvproxy launcher", "containers.conf drop-in", "start-helper registry"} <= roles
    assert config.read_bytes() == before
    assert not dropin_path().exists() and read_registry() is None


@pytest.mark.parametrize("fixture", CONFIGS)
def test_convert_writes_podmans_one_line_and_revert_gives_the_bytes_back(
    podman_home: Sandbox, blank_aarch64_disk: Path, fixture: str
) -> None:
    config, name = install(podman_home, fixture)
    original = config.read_bytes()
    result = convert(blank_aarch64_disk, name)
    converted = config.read_bytes()
    # json.Marshal: one line, no spaces, no trailing newline; only the disk changed.
    assert b"\n" not in converted and b'": ' not in converted
    content = json.loads(converted)
    assert content["ImagePath"]["Path"] == str(podman_home.data_dir / f"{name}_aarch64.qcow2")
    assert converted == original.replace(
        json.loads(original)["ImagePath"]["Path"].encode(), content["ImagePath"]["Path"].encode()
    )
    registry = read_registry()
    assert registry is not None
    (machine,) = registry.machines
    assert machine.qemu_route is not None
    assert machine.qemu_route.pid_file == content["QEMUHypervisor"]["QEMUPidPath"]["Path"]
    # What convert showed is what the wrapper will run at start.
    assert rewrite_routed_argv(podman5_argv(content), machine.qemu_route, machine.console_log) == result["argv_after"]
    code, out, _ = cli("list", "--json")
    assert code == 0 and json.loads(out)[0]["emulation"] == "emulated" and json.loads(out)[0]["cpu"].startswith("max")
    code, out, _ = cli("inspect", name, "--json")
    assert code == 0 and json.loads(out)["cmdline"] == result["argv_after"]

    code, _, err = cli("revert", name, "--delete-disk")
    assert code == 0, err
    assert config.read_bytes() == original
    assert not dropin_path().exists() and read_registry() is None
    assert sorted(p.name for p in podman_home.data_dir.iterdir()) == [
        Path(json.loads(original)["ImagePath"]["Path"]).name
    ]


def test_revert_keeps_what_podman_rewrote_since_and_its_format(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    config, name = install(podman_home, CONFIGS[0])
    original = json.loads(config.read_bytes())
    convert(blank_aarch64_disk, name)
    # What podman 5 does to the file meanwhile: a start (LastUp), a new SSH port, `set --cpus 2`.
    content = json.loads(config.read_bytes())
    content["LastUp"] = "2026-12-03T17:00:00.123456789Z"
    content["SSH"]["Port"] = 40001
    content["Resources"]["CPUs"] = 2
    config.write_bytes(json.dumps(content, separators=(",", ":")).encode())
    code, out, err = cli("revert", name, "--json")
    assert code == 0, err
    assert json.loads(out)["byte_identical_to_original"] is False
    reverted = config.read_bytes()
    assert b"\n" not in reverted and b'": ' not in reverted
    expected = {**content, "ImagePath": original["ImagePath"]}
    assert json.loads(reverted) == expected
    assert list(json.loads(reverted)) == list(original)  # podman's key order


def test_an_already_converted_podman5_machine_is_refused_and_untouched(
    podman_home: Sandbox, blank_aarch64_disk: Path
) -> None:
    config, name = install(podman_home, CONFIGS[0])
    convert(blank_aarch64_disk, name)
    before = config.read_bytes()
    code, _, err = cli("convert", name, "--image", str(blank_aarch64_disk))
    assert code == 1 and "already converted" in err
    assert config.read_bytes() == before


def _machine_warnings(name: str) -> dict[str, tuple[str, str]]:
    report = run_doctor(name)
    return {
        check.topic: (check.level, check.detail) for check in report.checks if check.topic in ("helper dirs", "cpu")
    }


def test_doctor_says_when_podman_would_not_run_the_wrapper(
    podman_home: Sandbox, blank_aarch64_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, name = install(podman_home, CONFIGS[0])
    convert(blank_aarch64_disk, name)
    checks = _machine_warnings(name)
    assert checks["helper dirs"][0] == "ok" and checks["cpu"][0] == "ok", checks  # host "cpu": the profile

    monkeypatch.setenv("CONTAINERS_HELPER_BINARY_DIR", "/usr/libexec/podman")
    level, detail = _machine_warnings(name)["helper dirs"]
    assert level == "warn" and "CONTAINERS_HELPER_BINARY_DIR" in detail and "native qemu-system-x86_64" in detail
    monkeypatch.delenv("CONTAINERS_HELPER_BINARY_DIR")

    later = dropin_path().with_name("zz-mine.conf")
    later.write_text('[engine]\nhelper_binaries_dir = ["/usr/libexec/podman"]\n')
    level, detail = _machine_warnings(name)["helper dirs"]
    assert level == "warn" and str(later) in detail
    later.unlink()

    monkeypatch.setenv("CONTAINERS_CONF", str(later))
    level, detail = _machine_warnings(name)["helper dirs"]
    assert level == "warn" and "CONTAINERS_CONF" in detail
    monkeypatch.delenv("CONTAINERS_CONF")

    saved = dropin_path().read_bytes()
    dropin_path().unlink()
    level, detail = _machine_warnings(name)["helper dirs"]
    assert level == "fail" and "is gone" in detail
    dropin_path().write_bytes(saved)
    assert _machine_warnings(name)["helper dirs"][0] == "ok"


def test_doctor_warns_of_a_max_cpu_that_offers_lpa2(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    _, name = install(podman_home, CONFIGS[0])
    convert(blank_aarch64_disk, name, "--cpu", "max")
    report = run_doctor(name)
    (warning,) = [check for check in report.checks if check.topic == "cpu" and check.level == "warn"]
    assert "FEAT_LPA2" in warning.detail and warning.fix is not None
    assert f"--image {podman_home.data_dir / (name + '_aarch64.qcow2')}" in warning.fix


def test_usb_passthrough_follows_the_pid_file_as_podman_5_builds_it(podman_home: Sandbox) -> None:
    config, _ = install(podman_home, CONFIGS[0])
    content = json.loads(config.read_bytes())
    content["Resources"]["USBs"] = [
        {"Bus": "1", "DevNumber": "4", "Vendor": 0, "Product": 0},
        {"Bus": "", "DevNumber": "", "Vendor": 1234, "Product": 42},
    ]
    argv = podman5_argv(content)
    after_pid_file = argv[argv.index("-pidfile") + 2 :][:6]
    assert after_pid_file == [
        "-device", "qemu-xhci",
        "-device", "usb-host,hostbus=1,hostaddr=4",
        "-device", "usb-host,vendorid=1234,productid=42",
    ]  # fmt: skip
