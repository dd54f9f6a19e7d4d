"""The benchmarks' own logic: which options each compared profile changes in convert's argv, and
which console lines mark the stages of a start."""

from __future__ import annotations

import re

import pytest

from benchmarks.first_container import CONSOLE_STAGES, PROFILES, apply_profile

CONVERTED = [
    "/usr/bin/qemu-system-aarch64",
    "-m", "2048", "-smp", "2",
    "-accel", "tcg,thread=multi",
    "-cpu", "max,pauth-impdef=on",
    "-M", "virt,highmem=on,gic-version=max",
    "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/AAVMF/AAVMF_CODE.fd",
    "-drive", "if=pflash,format=raw,unit=1,file=/m/m_ovmf_vars.fd",
    "-boot", "menu=on,splash-time=0",
    "-nographic",
    "-drive", "if=virtio,file=/m/m_aarch64.qcow2",
]  # fmt: skip


def test_podman_emus_profile_is_the_converted_argv() -> None:
    assert apply_profile(CONVERTED, PROFILES["podman-emu"]) == CONVERTED


def test_limas_profile_has_its_machine_cpu_and_code_pflash_only() -> None:
    argv = apply_profile(CONVERTED, PROFILES["lima"])
    assert argv[argv.index("-cpu") + 1] == "max"
    assert argv[argv.index("-M") + 1] == "virt,accel=tcg"
    assert "-accel" not in argv and "-boot" not in argv
    assert not any("unit=1" in element for element in argv)
    assert argv[-3:] == ["-nographic", "-drive", "if=virtio,file=/m/m_aarch64.qcow2"]
    assert argv[1:5] == ["-m", "2048", "-smp", "2"]


def test_podmans_arm64_profile_keeps_the_vars_and_drops_the_boot_menu_flag() -> None:
    argv = apply_profile(CONVERTED, PROFILES["podman-arm64"])
    assert argv[argv.index("-accel") : argv.index("-accel") + 2] == ["-accel", "tcg"]
    assert argv.count("-accel") == 1 and "-boot" not in argv
    assert argv[argv.index("-M") + 1] == "virt,highmem=on"
    assert any("unit=1" in element for element in argv)


@pytest.mark.parametrize(
    ("line", "stage"),
    [
        ("UEFI firmware (version edk2-stable202302 for aarch64 built at 00:00:00 on Feb 28 2023)", "firmware"),
        ("[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]", "kernel"),
        ("[    4.012345] systemd[1]: systemd 252.39-1~deb12u1 running in system mode", "systemd"),
        ("[  OK  ] Finished ignition-firstboot.service - Ignition on first boot (FCOS runs it…", "ignition"),
        ("[  OK  ] Started ssh.service - OpenBSD Secure Shell server.", "sshd"),
        ("[  OK  ] Finished ready.service.", "ready"),
    ],
)  # fmt: skip
def test_console_stage_patterns(line: str, stage: str) -> None:
    matched = [name for name, pattern in CONSOLE_STAGES if re.search(pattern, line)]
    assert matched == [stage]
