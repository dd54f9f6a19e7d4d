"""Boot time of an emulated aarch64 machine under TCG, per CPU/accelerator profile.

Every profile boots the same real Debian arm64 kernel and busybox initramfs (built by the test
guest package from Debian packages) the way a converted podman machine boots: UEFI firmware from
pflash, then systemd-boot from the disk's ESP, then the kernel and the initramfs. The initramfs
/init prints a marker, runs a fork/exec-heavy workload (what container start-up and shell
scripts do), prints a second marker and powers off. The host times each serial-console line from
the moment qemu is launched.

Profiles:
  podman-emu       the qemu argv convert writes (conversion.rewrite.rewrite_argv with choose_profile(probe_qemu(…)),
                   the firmware as pflash code + vars, its -boot and console options)
  lima             Lima's aarch64 TCG flags: -machine virt,accel=tcg -cpu max, code pflash only
  podman-arm64     podman's own arm64 options, under TCG: -cpu max -M virt,highmem=on + pflash
  max,pauth=off    podman-emu's argv with -cpu max,pauth=off
  max,pauth-impdef=on  podman-emu's argv without lpa2=off (what the edk2 2025.11 guard costs)
  cortex-a57       podman-emu's argv with -cpu cortex-a57
  neoverse-n1      podman-emu's argv with -cpu neoverse-n1
  cortex-a76       podman-emu's argv with -cpu cortex-a76

Runs are interleaved (round 1 of every profile, then round 2, …) so background load spreads over
all profiles instead of hitting one.

    python benchmarks/boot.py [--runs 3] [--profiles podman-emu,lima,…] [--results DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from podman_emu.conversion.rewrite import console_arguments, rewrite_argv  # noqa: E402
from podman_emu.host.cpu_profile import choose_profile  # noqa: E402
from podman_emu.host.firmware import find_firmware  # noqa: E402
from podman_emu.host.qemu import find_qemu, probe_qemu  # noqa: E402
from testing.guest import GuestSpec, build_guest_image  # noqa: E402

MARK = "PODMAN-EMU-BENCH"
FORK_EXECS = 300
BOOT_TIMEOUT_S = 300
POLL_S = 0.02

# busybox ash; `/bin/busybox true` (not `true`, which is a shell builtin) forces a real fork and
# exec of a static binary each time.
BENCH_INIT = rf"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
echo 1 > /proc/sys/kernel/printk
echo "{MARK} INIT uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
i=0
while [ $i -lt {FORK_EXECS} ]; do /bin/busybox true; i=$((i+1)); done
echo "{MARK} WORKLOAD-DONE uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/console
poweroff -f
"""

# Serial console text -> event name, in boot order.
EVENTS = {
    "firmware": "UEFI firmware",
    "kernel": "EFI stub: Booting Linux Kernel",
    "init": f"{MARK} INIT",
    "workload": f"{MARK} WORKLOAD-DONE",
}


@dataclass
class Profile:
    name: str
    arguments: list[str]  # shown in the table: the options that differ between profiles
    description: str
    # Where the machine options come from: "podman-emu" = the argv podman-emu's plan writes for a
    # converted machine (its firmware, console and display options included); "own" = `arguments`
    # plus the firmware below.
    source: str = "own"
    vars_file: bool = True  # own: attach a private copy of the vars template as the second pflash
    extra: list[str] = field(default_factory=list)  # podman-emu: appended to the generated argv


@dataclass
class Run:
    profile: str
    round: int
    events: dict[str, float] = field(default_factory=dict)
    guest_uptime: dict[str, float] = field(default_factory=dict)
    returncode: int | None = None
    error: str | None = None
    loadavg: float = 0.0


def build_profiles(qemu: Path, smp: int, generated: list[str]) -> tuple[list[Profile], str]:
    chosen = choose_profile(probe_qemu(qemu))
    # Shown in the table: the profile, plus the firmware boot options convert writes.
    boot = generated[generated.index("-boot") : generated.index("-boot") + 2] if "-boot" in generated else []
    emu = chosen.arguments() + boot

    def with_cpu(cpu: str) -> list[str]:
        arguments = list(emu)
        arguments[arguments.index("-cpu") + 1] = cpu
        return arguments

    def variant(cpu: str) -> Profile:
        return Profile(cpu, with_cpu(cpu), f"podman-emu's argv with -cpu {cpu}", "podman-emu")

    # What the firmware guard costs: the same CPU with FEAT_LPA2 left on.
    without_lpa2_off = ",".join(part for part in chosen.cpu.split(",") if part != "lpa2=off")

    profiles = [
        Profile("podman-emu", emu, f"podman-emu's argv ({chosen.reason})", "podman-emu"),
        Profile(
            "lima",
            ["-machine", "virt,accel=tcg", "-cpu", "max", "-smp", f"{smp},sockets=1,cores={smp},threads=1"],
            "Lima's qemu driver for aarch64 on x86_64 (pkg/driver/qemu/qemu.go): code pflash only",
            vars_file=False,
        ),
        Profile(
            "podman-arm64",
            ["-accel", "tcg", "-cpu", "max", "-M", "virt,highmem=on"],
            "podman 4.x's arm64 options (-accel hvf -accel tcg -cpu host -M virt,highmem=on) under TCG, + pflash",
        ),
        variant("max,pauth=off"),
        *([variant(without_lpa2_off)] if without_lpa2_off != chosen.cpu else []),
        variant("cortex-a57"),
        variant("neoverse-n1"),
        variant("cortex-a76"),
    ]
    return profiles, chosen.cpu


def podman_emu_argv(qemu: Path, memory_mib: int, smp: int) -> Callable[[Path, Path, Path, Path], list[str]]:
    """The qemu argv podman-emu's plan writes for a podman 4.3 machine (fixture testvm), with
    the disk, vars file and console log put where the benchmark wants them."""
    capabilities = probe_qemu(qemu)
    firmware = find_firmware(qemu)
    native = [
        "/usr/bin/qemu-system-x86_64",
        "-m",
        str(memory_mib),
        "-smp",
        str(smp),
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-drive",
        "if=virtio,file=/native.qcow2",
    ]

    def build(disk: Path, vars_copy: Path, console: Path, _workdir: Path) -> list[str]:
        return rewrite_argv(
            native,
            qemu_binary=str(qemu),
            profile=choose_profile(capabilities),
            firmware_arguments=firmware.arguments(str(vars_copy)),
            console_log=str(console),
            disk_path=str(disk),
            disk_container="qcow2",
        ).argv

    return build


def firmware_arguments(code: str, vars_copy: Path | None) -> list[str]:
    # The same -drive options podman-emu's plan writes; Lima attaches the code image alone.
    arguments = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
    if vars_copy is not None:
        arguments += ["-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    return arguments


def profile_argv(
    profile: Profile,
    qemu: Path,
    generated: Callable[[Path, Path, Path, Path], list[str]],
    code: str,
    disk: Path,
    vars_copy: Path,
    console: Path,
    *,
    smp: int,
    memory_mib: int,
) -> list[str]:
    if profile.source == "podman-emu":
        argv = generated(disk, vars_copy, console, disk.parent)
        cpu_at = argv.index("-cpu") + 1
        argv[cpu_at] = profile.arguments[profile.arguments.index("-cpu") + 1]
        return [*argv, *profile.extra]
    argv = [str(qemu), "-m", str(memory_mib)]
    if "-smp" not in profile.arguments:
        argv += ["-smp", str(smp)]
    return [
        *argv,
        *profile.arguments,
        *firmware_arguments(code, vars_copy if profile.vars_file else None),
        # The console exactly as podman-emu attaches it.
        *console_arguments(str(console)),
        "-display",
        "none",
        "-drive",
        f"if=virtio,file={disk},format=qcow2",
    ]


def boot_once(argv: list[str], serial: Path, workdir: Path, *, profile: str, round_number: int) -> Run:
    run = Run(profile, round_number, loadavg=os.getloadavg()[0])
    # No NIC: the guest needs none, and with one UEFI may try a network boot first.
    argv = [*argv, "-nic", "none", "-no-reboot"]
    stderr = (workdir / "qemu.stderr").open("w+")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
    try:
        offset = 0
        pending = b""
        while True:
            exited = proc.poll() is not None
            now = time.monotonic() - start
            try:
                with serial.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except FileNotFoundError:
                chunk = b""
            offset += len(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                for event, text in EVENTS.items():
                    if text in line and event not in run.events:
                        run.events[event] = now
                        if "uptime=" in line:
                            run.guest_uptime[event] = float(line.rsplit("uptime=", 1)[1].split()[0])
            if exited:
                run.events["qemu-exit"] = now
                break
            if now > BOOT_TIMEOUT_S:
                run.error = f"timed out after {BOOT_TIMEOUT_S} s"
                break
            time.sleep(POLL_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        run.returncode = proc.returncode
        stderr.seek(0)
        if proc.returncode not in (0, None) and run.error is None:
            run.error = f"qemu exited {proc.returncode}: {stderr.read()[-400:]}"
        stderr.close()
    if "workload" not in run.events and run.error is None:
        run.error = "the guest powered off before the workload finished"
    return run


def prepare(workdir: Path, disk: Path, vars_template: str | None) -> tuple[Path, Path, Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "overlay.qcow2"
    overlay.unlink(missing_ok=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(disk), str(overlay)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    vars_copy = workdir / "vars.fd"
    if vars_template:
        shutil.copyfile(vars_template, vars_copy)
    else:
        with vars_copy.open("wb") as handle:
            handle.truncate(64 * 1024 * 1024)
    serial = workdir / "serial.log"
    serial.unlink(missing_ok=True)
    return overlay, vars_copy, serial


def median_of(runs: list[Run], name: str, key: str) -> float | None:
    values = [r.events[key] for r in runs if r.profile == name and r.error is None and key in r.events]
    return statistics.median(values) if values else None


def summarise(profiles: list[Profile], runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for profile in profiles:
        mine = [r for r in runs if r.profile == profile.name]
        if not mine:
            continue
        good = [r for r in mine if r.error is None]

        def phase(start: str, end: str, good: list[Run] = good) -> float | None:
            values = [r.events[end] - r.events[start] for r in good if start in r.events and end in r.events]
            return statistics.median(values) if values else None

        rows.append(
            {
                "profile": profile.name,
                "arguments": " ".join([*profile.arguments, *profile.extra]),
                "runs": len(good),
                "failed": len(mine) - len(good),
                "firmware_s": median_of(runs, profile.name, "kernel"),
                "init_s": median_of(runs, profile.name, "init"),
                "kernel_s": phase("kernel", "init"),
                "workload_s": phase("init", "workload"),
                "done_s": median_of(runs, profile.name, "workload"),
                "exit_s": median_of(runs, profile.name, "qemu-exit"),
                "init_runs_s": [round(r.events["init"], 2) for r in good if "init" in r.events],
            }
        )
    return rows


def fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "–"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lima = next((r for r in rows if r["profile"] == "lima"), None)
    ours = next((r for r in rows if r["profile"] == "podman-emu"), None)
    fastest = min((r for r in rows if isinstance(r["init_s"], float)), key=lambda r: r["init_s"], default=None)
    lines = [
        "| profile | launch → kernel (firmware + boot loader) | kernel → /init | **launch → /init** | "
        f"{FORK_EXECS} fork+exec | launch → workload done | /init vs podman-emu |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: r["init_s"] if isinstance(r["init_s"], float) else 1e9):
        ratio = (
            f"{row['init_s'] / ours['init_s']:.2f}×"
            if ours and isinstance(row["init_s"], float) and isinstance(ours["init_s"], float)
            else "–"
        )
        name = f"**{row['profile']}**" if row["profile"] == "podman-emu" else str(row["profile"])
        lines.append(
            f"| {name} (`{row['arguments']}`) | {fmt(row['firmware_s'])} | {fmt(row['kernel_s'])} | "
            f"**{fmt(row['init_s'])}** | {fmt(row['workload_s'])} | {fmt(row['done_s'])} | {ratio} |"
        )
    lines.append("")
    lines.append(
        f"Seconds, medians of {meta['runs']} runs each, wall time from qemu launch as seen on the serial console; "
        f"QEMU {meta['qemu_version']}, {meta['host_cpus']} host CPUs ({meta['host_cpu_model']}), guest "
        f"-smp {meta['smp']} -m {meta['memory_mib']}, kernel {meta['kernel_release']}."
    )
    lines.append("")
    for candidate in (ours,):
        if not (lima and candidate and fastest and isinstance(candidate["init_s"], float)):
            continue
        kernel_ratio = (
            f"; kernel → /init alone {lima['kernel_s'] / candidate['kernel_s']:.2f}×"
            if isinstance(lima["kernel_s"], float) and isinstance(candidate["kernel_s"], float)
            else ""
        )
        lines.append(
            f"* {candidate['profile']} reaches /init {lima['init_s'] / candidate['init_s']:.2f}× faster than "
            f"Lima's flags (target ≥ 3.5×{kernel_ratio}) and takes {candidate['init_s'] / fastest['init_s']:.2f}× "
            f"the time of the fastest profile, {fastest['profile']} (target ≤ 1.25×)."
        )
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if isinstance(r["done_s"], float)]
    usable.sort(key=lambda r: r["done_s"], reverse=True)
    names = [str(r["profile"]) for r in usable]
    # Segments between the medians of the events, so each bar ends at its median "done" and
    # the blue/orange boundary is its median /init.
    firmware = [float(r["firmware_s"] or 0) for r in usable]
    kernel = [float(r["init_s"] or 0) - f for r, f in zip(usable, firmware, strict=True)]
    workload = [float(r["done_s"] or 0) - float(r["init_s"] or 0) for r in usable]
    figure, axes = plt.subplots(figsize=(9, 0.55 * len(usable) + 1.6), dpi=120)
    left = [0.0] * len(usable)
    for values, label, color in (
        (firmware, "UEFI firmware + boot loader", "#9aa5b1"),
        (kernel, "kernel → /init", "#3b82f6"),
        (workload, f"{FORK_EXECS} fork+exec in user space", "#f59e0b"),
    ):
        axes.barh(names, values, left=left, label=label, color=color)
        left = [a + b for a, b in zip(left, values, strict=True)]
    for index, row in enumerate(usable):
        axes.text(left[index] + 0.3, index, f"/init {row['init_s']:.1f} s · done {row['done_s']:.1f} s", va="center")
    for tick in axes.get_yticklabels():
        if tick.get_text() == "podman-emu":
            tick.set_fontweight("bold")
    axes.set_xlabel(f"seconds from qemu launch (median of {meta['runs']} runs)")
    axes.set_xlim(0, max(left) * 1.35 if left else 1)
    title = f"aarch64 guest boot under TCG on x86_64 (QEMU {meta['qemu_version']})"
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--profiles",
        default="podman-emu,lima,podman-arm64,max,pauth=off,cortex-a57,neoverse-n1,cortex-a76",
        help="comma-separated profile names",
    )
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--memory", type=int, default=2048, help="MiB")
    parser.add_argument("--qemu", help="qemu-system-aarch64 (default: as podman-emu finds it)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--from-json", type=Path, help="only redraw the table and chart from a results file")
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        profiles = [Profile(**p) for p in saved["profiles"]]
        runs = [Run(**r) for r in saved["runs"]]
        meta = saved["meta"]
    else:
        qemu = find_qemu(args.qemu, None)
        generated = podman_emu_argv(qemu, args.memory, args.smp)
        sample = generated(Path("/disk"), Path("/vars"), Path("/console"), Path("/"))
        all_profiles, chosen_cpu = build_profiles(qemu, args.smp, sample)
        # "max,pauth=off" holds a comma, so the list is matched against known names.
        profiles = [p for p in all_profiles if f",{p.name}," in f",{args.profiles},"] or all_profiles
        firmware = find_firmware(qemu)
        if firmware.bios:
            raise SystemExit(f"{firmware.code} is not a 64 MiB pflash image; the benchmark needs pflash firmware")
        image = build_guest_image(GuestSpec(init_script=BENCH_INIT), log=lambda m: print(m, file=sys.stderr))
        meta = {
            "qemu": str(qemu),
            "qemu_version": probe_qemu(qemu).version_string,
            "firmware": firmware.code,
            "vars_template": firmware.vars_template,
            "podman_emu_argv": sample,
            "kernel_release": image.kernel_release,
            "packages": image.packages,
            "chosen_cpu": chosen_cpu,
            "runs": args.runs,
            "smp": args.smp,
            "memory_mib": args.memory,
            "fork_execs": FORK_EXECS,
            "host_cpus": os.cpu_count(),
            "host_cpu_model": host_cpu_model(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "loadavg_start": os.getloadavg(),
        }
        runs = []
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="podman-emu-boot-bench-") as tmp:
            for round_number in range(1, args.runs + 1):
                for profile in profiles:
                    workdir = Path(tmp) / f"{len(runs)}"
                    overlay, vars_copy, serial = prepare(workdir, image.disk, firmware.vars_template)
                    argv = profile_argv(
                        profile,
                        qemu,
                        generated,
                        firmware.code,
                        overlay,
                        vars_copy,
                        serial,
                        smp=args.smp,
                        memory_mib=args.memory,
                    )
                    run = boot_once(argv, serial, workdir, profile=profile.name, round_number=round_number)
                    runs.append(run)
                    shown = " ".join(f"{k}={v:.2f}" for k, v in run.events.items())
                    print(f"round {round_number} {profile.name:>22}: {shown} {run.error or ''}", file=sys.stderr)
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        meta["loadavg_end"] = os.getloadavg()
        (args.results / "boot.json").write_text(
            json.dumps(
                {"meta": meta, "profiles": [asdict(p) for p in profiles], "runs": [asdict(r) for r in runs]},
                indent=1,
            )
            + "\n"
        )
    rows = summarise(profiles, runs)
    table = markdown(rows, meta)
    (args.results / "boot.md").write_text(table)
    chart(rows, meta, args.results / "boot.png")
    print(table)
    return 0


def host_cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
