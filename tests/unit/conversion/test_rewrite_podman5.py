"""The argv rewrite on the command line podman 5 builds at every start (the run-time route of the
`qemu-system-x86_64` wrapper): the real podman 5.4.2 argv in (testing.podman5_qemu), an aarch64
argv out that the real qemu-system-aarch64 runs with gvproxy's stream socket and a virtiofs share.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from podman_emu.conversion.rewrite import rewrite_argv
from podman_emu.host.cpu_profile import choose_profile
from podman_emu.host.firmware import find_firmware
from podman_emu.host.qemu import probe_qemu
from podman_emu.qemu.argv import suboption
from testing.podman5_qemu import (
    captured_argv,
    podman5_dirs,
    qemu_peers,
    qmp,
    qmp_socket,
    values_of,
    virtio_disk,
    wait_for_firmware,
)


def rewritten(argv: list[str], aavmf: str, qemu: str, vars_path: str, console_log: str) -> list[str]:
    return rewrite_argv(
        argv,
        qemu_binary=qemu,
        profile=choose_profile(probe_qemu(Path(qemu))),
        firmware_arguments=find_firmware(Path(qemu), code_override=aavmf).arguments(vars_path),
        console_log=console_log,
        disk_path=virtio_disk(argv),
        disk_container="qcow2",
    ).argv


def test_podman5_argv_keeps_what_podman_and_virtiofs_need(aavmf: str, qemu_aarch64: str, tmp_path: Path) -> None:
    native = captured_argv()
    assert values_of(native, "-M") == ["memory-backend=mem"]  # the file is what podman 5.4.2 ran
    argv = rewritten(native, aavmf, qemu_aarch64, str(tmp_path / "vars.fd"), str(tmp_path / "console.log"))

    assert argv[0] == qemu_aarch64
    assert "kvm" not in values_of(argv, "-accel") and "host" not in values_of(argv, "-cpu")
    (machine,) = values_of(argv, "-M")  # one -M: the aarch64 machine with podman's shared memory
    assert suboption(machine, "memory-backend") == "mem" and machine.startswith("virt,")
    for name in ("-object", "-m", "-smp", "-fw_cfg", "-qmp", "-netdev", "-pidfile"):
        assert values_of(argv, name) == values_of(native, name), name
    native_devices = values_of(native, "-device")
    assert [device for device in values_of(argv, "-device") if device in native_devices] == native_devices
    assert "virtio-net-pci,netdev=vlan,mac=5a:94:ef:e4:0c:ee" in native_devices  # gvproxy's DHCP lease
    drives = values_of(argv, "-drive")
    assert sorted(suboption(drive, "if") or "" for drive in drives) == ["pflash", "pflash", "virtio"]
    assert virtio_disk(argv) == virtio_disk(native)  # convert puts the aarch64 disk at ImagePath


def test_without_a_machine_memory_backend_the_aarch64_machine_is_the_profiles(
    aavmf: str, qemu_aarch64: str, tmp_path: Path
) -> None:
    """podman 4.x argvs carry no memory-backend: their aarch64 -M stays the profile's own."""
    native = [line for line in captured_argv() if line != "memory-backend=mem"]
    native.remove("-M")
    argv = rewritten(native, aavmf, qemu_aarch64, str(tmp_path / "vars.fd"), str(tmp_path / "console.log"))
    assert values_of(argv, "-M") == [choose_profile(probe_qemu(Path(qemu_aarch64))).machine]


def test_real_qemu_runs_the_rewritten_podman5_argv_with_gvproxys_socket_and_virtiofs(
    aavmf: str, qemu_aarch64: str, qemu_img: str
) -> None:
    with podman5_dirs() as dirs:
        console = dirs.runtime / "console.log"
        argv = rewritten(dirs.argv(), aavmf, qemu_aarch64, str(dirs.home / "vars.fd"), str(console))
        (dirs.home / "vars.fd").write_bytes(bytes(64 << 20))
        with qemu_peers(argv, qemu_img, dirs.home) as gvproxy:
            qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                connection, _ = gvproxy.accept()  # qemu dialled gvproxy: -netdev stream works
                connection.close()
                wait_for_firmware(console, qemu)
                status = qmp(qmp_socket(argv), "query-status")
                assert status == {"status": "running", "singlestep": False, "running": True}
                assert qmp(qmp_socket(argv), "query-target") == {"arch": "aarch64"}
                # Guest RAM is the shared memfd podman made for virtiofsd, or virtiofs mounts fail.
                machine_ram = qmp(qmp_socket(argv), "qom-get", {"path": "/machine", "property": "memory-backend"})
                assert machine_ram == "/objects/mem"
                assert Path(values_of(argv, "-pidfile")[0]).read_text().strip() == str(qemu.pid)
            finally:
                qemu.kill()
                qemu.wait(timeout=30)
