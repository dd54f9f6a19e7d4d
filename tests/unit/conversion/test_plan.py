"""The conversion plan for every fixture, without any I/O."""

import copy
import json
from typing import Any

import jsonpatch
import pytest

from podman_emu.conversion.plan import NativeConfig, PlanInputs, plan_conversion, plan_revert
from podman_emu.errors import ConfigInvalid, ConversionStateError
from podman_emu.host.capabilities import Firmware
from podman_emu.host.cpu_profile import ACCEL, MACHINE, TcgProfile
from podman_emu.podman.layout import Layout
from podman_emu.qemu.argv import first_value, iter_options, suboption
from testing.fixtures import FIXTURES, manifest

QEMU = "/opt/test/bin/qemu-system-aarch64"
PROFILE = TcgProfile("max,pauth-impdef=on", ACCEL, MACHINE, "test")
FIRMWARE = Firmware("/fw/CODE.fd", "raw", "/fw/VARS.fd", "raw", "test")
HOST_ONLY = {"-accel", "-cpu", "-machine", "-M", "-enable-kvm"}
KEPT = ("-fw_cfg", "-qmp", "-netdev", "-device", "-chardev", "-pidfile", "-virtfs")


def options(**overrides: Any) -> PlanInputs:
    values: dict[str, Any] = {
        "qemu_binary": QEMU,
        "profile": PROFILE,
        "firmware": FIRMWARE,
        "disk_source": "/images/fcos-aarch64.qcow2",
        "disk_container": "qcow2",
        "console_log": "/state/consoles/m.log",
    }
    values.update(overrides)
    return PlanInputs(**values)


def load(entry: dict[str, Any]) -> tuple[dict[str, Any], Layout]:
    content = json.loads((FIXTURES / entry["file"]).read_text())
    return content, Layout(entry["layout"])


def pairs(argv: list[str]) -> list[tuple[str, str | None]]:
    return [(o.name, o.value) for o in iter_options(argv)]


def podman_set(argv: list[str], flag: str, value: str) -> list[str]:
    """podman's editCmdLine: first exact match, else append (v4.9.5 machine.go:1544-1556)."""
    result = list(argv)
    for index, element in enumerate(result):
        if element == flag:
            result[index + 1] = value
            return result
    return [*result, flag, value]


@pytest.mark.parametrize("entry", manifest(), ids=lambda entry: entry["file"])
def test_plan_for_every_fixture(entry: dict[str, Any]) -> None:
    content, layout = load(entry)
    original = copy.deepcopy(content)
    plan = plan_conversion(content, options())
    assert content == original, "planning must not modify its input"

    before, after = pairs(plan.argv_before), pairs(plan.argv_after)
    assert plan.argv_after[0] == QEMU
    # podman 5's guest RAM is its shared memfd (virtiofsd maps it): the backend stays on -M.
    machine = f"{MACHINE},memory-backend=mem" if layout is Layout.V5 else MACHINE
    profile_pairs = {("-accel", ACCEL), ("-cpu", PROFILE.cpu), ("-M", machine)}
    host_only = [(n, v) for n, v in after if n in HOST_ONLY and (n, v) not in profile_pairs]
    assert host_only == [], "host accelerator options must all be gone"
    assert profile_pairs <= set(after)
    assert [v for n, v in after if n == "-accel"] == [ACCEL]

    # Everything podman depends on stays, in its order, as separate elements.
    kept_before = [
        (n, v) for n, v in before if n in KEPT and not (v or "").startswith("name=opt/com.coreos/environment")
    ]
    kept_after = [(n, v) for n, v in after if n in KEPT and v is not None and "podman-emu-console" not in v]
    assert kept_after == kept_before
    assert first_value(plan.argv_after, "-m") == first_value(plan.argv_before, "-m")
    assert first_value(plan.argv_after, "-smp") == first_value(plan.argv_before, "-smp")
    assert not any((v or "").startswith("name=opt/com.coreos/environment") for _, v in after)

    drives = [v for n, v in after if n == "-drive" and v is not None]
    virtio = [d for d in drives if suboption(d, "if") == "virtio"]
    assert len(virtio) == 1
    assert suboption(virtio[0], "file") == plan.files[1].destination
    assert suboption(virtio[0], "format") == "qcow2"
    pflash = [d for d in drives if suboption(d, "if") == "pflash"]
    assert [suboption(d, "file") for d in pflash] == ["/fw/CODE.fd", plan.files[0].destination]
    assert "readonly=on" in pflash[0] and "readonly" not in pflash[1]
    assert ("-serial", "chardev:podman-emu-console") in after
    assert ("-boot", "menu=on,splash-time=0") in after

    image = plan.after["ImagePath"] if layout is Layout.V1 else plan.after["ImagePath"]["Path"]
    assert image == plan.files[1].destination
    assert plan.files[0].destination.endswith(f"/{entry['name']}_ovmf_vars.fd")
    assert [f.role for f in plan.files] == ["vars", "disk", "console"]

    # The patch is exactly the change, and it refuses to apply to another document.
    assert jsonpatch.apply_patch(original, plan.patch) == plan.after
    changed = copy.deepcopy(original)
    if layout is Layout.V5:  # no stored command line: the disk is all the patch changes
        changed["ImagePath"]["Path"] = "/elsewhere/disk.qcow2"
    else:
        changed["CmdLine"][0] = "/elsewhere/qemu"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(changed, plan.patch)
    changed_keys = {k for k in original if original[k] != plan.after.get(k)}
    assert changed_keys == ({"ImagePath"} if layout is Layout.V5 else {"CmdLine", "ImagePath"})


PROFILE_PAIRS = {("-accel", ACCEL), ("-cpu", PROFILE.cpu), ("-M", MACHINE)}


@pytest.mark.parametrize(
    ("fixture", "anchor"),
    [("podman-4.9-linux-amd64.json", 0), ("podman-4.8-darwin-amd64.json", 0), ("podman-4.3-linux-amd64.json", None)],
)
def test_arch_options_go_where_podman_had_them(fixture: str, anchor: int | None) -> None:
    content = json.loads((FIXTURES / fixture).read_text())
    plan = plan_conversion(content, options())
    after = plan.argv_after
    if anchor == 0:  # 4.8/4.9: right after the binary
        assert after[1:3] == ["-accel", ACCEL]
    else:  # <= 4.7: after -pidfile
        pidfile = after.index("-pidfile")
        assert after[pidfile + 2 : pidfile + 4] == ["-accel", ACCEL]


def test_podman_set_after_conversion_keeps_every_aarch64_argument() -> None:
    content = json.loads((FIXTURES / "podman-4.3-linux-amd64.json").read_text())
    plan = plan_conversion(content, options())
    edited = podman_set(podman_set(plan.argv_after, "-smp", "2"), "-m", "2500")
    assert [e for e in edited if e not in ("2", "2500")] == [e for e in plan.argv_after if e not in ("1", "2048")]
    assert first_value(edited, "-m") == "2500" and first_value(edited, "-smp") == "2"


def test_revert_restores_native_and_keeps_set_changes() -> None:
    content = json.loads((FIXTURES / "podman-4.3-linux-amd64.json").read_text())
    plan = plan_conversion(content, options())
    converted = copy.deepcopy(plan.after)
    converted["CmdLine"] = podman_set(podman_set(converted["CmdLine"], "-smp", "3"), "-m", "3000")
    converted["CPUs"], converted["Memory"] = 3, 3000
    native = NativeConfig(content["CmdLine"], content["ImagePath"]["Path"])
    revert = plan_revert(converted, native, [])
    expected = json.loads((FIXTURES / "podman-4.3-linux-amd64-after-set.json").read_text())
    expected["LastUp"] = content["LastUp"]  # the real file also went through a `list`
    assert revert.after == expected
    assert any("kept memory 3000" in note for note in revert.notes)


def test_paths_with_commas_are_escaped_for_qemu() -> None:
    content = json.loads((FIXTURES / "podman-4.3-linux-amd64.json").read_text())
    content["Name"] = "a,b"
    content["ImagePath"]["Path"] = "/data,dir/disk.qcow2"
    plan = plan_conversion(content, options(console_log="/st,ate/m.log"))
    drives = [v for n, v in pairs(plan.argv_after) if n == "-drive" and v]
    assert "file=/data,,dir/a,,b_aarch64.qcow2,format=qcow2" in drives[-1]
    assert any("path=/st,,ate/m.log" in (v or "") for _, v in pairs(plan.argv_after))
    assert plan.after["ImagePath"]["Path"] == "/data,dir/a,b_aarch64.qcow2"


def test_raw_disk_gets_an_explicit_format() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    plan = plan_conversion(content, options(disk_container="raw"))
    assert plan.argv_after[-1].endswith("_aarch64.raw,format=raw")


def test_bios_fallback_has_no_vars_file() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    firmware = Firmware("/fw/QEMU_EFI.fd", "raw", None, "raw", "test", bios=True)
    plan = plan_conversion(content, options(firmware=firmware))
    assert ("-bios", "/fw/QEMU_EFI.fd") in pairs(plan.argv_after)
    assert [f.role for f in plan.files] == ["disk", "console"]
    assert any("will not persist" in note for note in plan.notes)


def test_already_emulated_is_refused() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    content["CmdLine"][0] = "/usr/bin/qemu-system-aarch64"
    with pytest.raises(ConversionStateError):
        plan_conversion(content, options())


def test_a_cmdline_without_a_disk_is_refused() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    content["CmdLine"] = content["CmdLine"][:-2]
    with pytest.raises(ConfigInvalid) as raised:
        plan_conversion(content, options())
    assert "-drive if=virtio" in raised.value.message


def test_a_lone_trailing_option_is_refused() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    content["CmdLine"].append("-m")
    with pytest.raises(ConfigInvalid) as raised:
        plan_conversion(content, options())
    assert "'-m' at the end has no value" in raised.value.message


def test_the_native_disk_is_not_accepted_as_the_aarch64_image() -> None:
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    with pytest.raises(ConversionStateError):
        plan_conversion(content, options(disk_source=content["ImagePath"]["Path"]))


def test_a_native_disk_path_with_an_unescaped_comma_is_replaced_whole() -> None:
    """podman writes `if=virtio,file=<path>` without qemu's `,,` escaping."""
    content = json.loads((FIXTURES / "podman-4.9-linux-amd64.json").read_text())
    content["ImagePath"]["Path"] = "/home/a,b/disk.qcow2"
    content["CmdLine"][-1] = "if=virtio,file=/home/a,b/disk.qcow2"
    plan = plan_conversion(content, options())
    assert plan.argv_after[-1] == "if=virtio,file=/home/a,,b/m_aarch64.qcow2,format=qcow2".replace(
        "m_", content["Name"] + "_"
    )


@pytest.mark.parametrize(
    ("smp", "host_cpus", "advised"),
    [("1", 2, True), ("1", 8, True), ("1", 1, False), ("2", 2, False), ("4", 8, False), ("cpus=1,cores=1", 2, True)],
)
def test_a_one_vcpu_machine_on_a_multicore_host_is_told_what_a_second_vcpu_buys(
    smp: str, host_cpus: int, advised: bool
) -> None:
    content, _ = load(manifest()[0])
    content["CmdLine"] = podman_set(content["CmdLine"], "-smp", smp)
    notes = plan_conversion(content, options(host_cpus=host_cpus)).notes
    advice = [note for note in notes if "vCPU" in note]
    assert bool(advice) is advised, notes
    if advised:
        assert f"podman machine set --cpus 2 {content['Name']}" in advice[0]
