"""Time from `podman machine start` to the first arm64 container's output, stage by stage.

The real parts of the end-to-end suite: podman 4.3.1, gvproxy 0.8.1 (through podman-emu's
launcher), the Debian 12 arm64 guest of testing.realguest (systemd, ignition 2.14 from fw_cfg,
sshd, podman 4.3.1). For every profile and vCPU count a new machine is made as a throwaway user:
`podman machine init --cpus N` -> `podman-emu convert` -> the profile's CPU/machine/accelerator
options put into the machine's CmdLine -> `podman machine start` -> `podman --connection NAME
import` of a busybox arm64 tarball (no registry is reachable here) -> `podman --connection NAME
run --rm IMAGE uname -m` -> stop -> rm. Each console line is timestamped as it appears (the
console log podman-emu attaches), so the start splits into firmware, kernel, systemd, ignition,
sshd and Ready; podman's own output gives "started successfully".

Profiles (the rest of the argv is what convert wrote: disk, firmware, ignition, network, mounts):
  podman-emu     the CmdLine as convert writes it (-cpu max,pauth-impdef=on, -boot menu=on,splash-time=0, ...)
  lima           Lima's aarch64 TCG flags: -machine virt,accel=tcg -cpu max, code pflash only, no -boot
  podman-arm64   podman 4.x's own arm64 options (-accel hvf -accel tcg -cpu host -M virt,highmem=on):
                 qemu refuses -cpu host under TCG, so that run cannot finish (the error is
                 recorded); measured with -cpu max in its place, no -boot options

Runs are interleaved (round 1 of every profile and vCPU count, then round 2, ...). Root only.

    python benchmarks/first_container.py [--runs 1] [--profiles podman-emu,lima,podman-arm64]
                                         [--cpus 1,2] [--results DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from podman_emu.qemu.argv import canonical_name, iter_options, suboption  # noqa: E402
from testing.podman_user import PodmanUser, throwaway_podman_user  # noqa: E402

START_TIMEOUT_S = 900  # a slow profile: podman 4.3.1 itself would wait forever
COMMAND_TIMEOUT_S = 300
IMAGE = "localhost/busybox-arm64"

# (stage, pattern) in boot order; each stage is the first console line that matches.
CONSOLE_STAGES: tuple[tuple[str, str], ...] = (
    ("firmware", r"UEFI firmware \(version|BdsDxe: loading"),
    ("kernel", r"Booting Linux on physical CPU"),
    ("systemd", r"systemd\[1\]: |Welcome to Debian"),
    ("ignition", r"Finished .*Ignition on first boot"),
    ("sshd", r"Started .*(ssh\.service|OpenBSD Secure Shell)"),
    ("ready", r"(Started|Finished) ready\.service"),
)
# What each segment of a bar means: from the previous event to this one.
SEGMENTS: tuple[tuple[str, str, str], ...] = (
    ("firmware", "podman, gvproxy, qemu launch, UEFI firmware starts", "#cbd5e1"),
    ("kernel", "firmware + systemd-boot", "#9aa5b1"),
    ("systemd", "kernel", "#3b82f6"),
    ("ignition", "systemd → ignition done", "#22c55e"),
    ("sshd", "→ sshd up (host keys)", "#14b8a6"),
    ("ready", "→ Ready sent", "#a855f7"),
    ("started", "→ podman: started successfully", "#f97316"),
    ("imported", "podman import (busybox tarball)", "#eab308"),
    ("first_output", "podman run … uname -m", "#ef4444"),
)


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    cpu: str
    machine: str
    accel: list[str]  # -accel values, in order
    boot_options: bool  # keep convert's -boot menu=on,splash-time=0
    vars_drive: bool  # keep the UEFI vars pflash


PROFILES = {
    "podman-emu": Profile("podman-emu", "the CmdLine podman-emu's convert writes", "", "", [], True, True),
    "lima": Profile(
        "lima",
        "Lima's qemu driver for aarch64 on x86_64: -machine virt,accel=tcg -cpu max, code pflash only",
        "max",
        "virt,accel=tcg",
        [],
        False,
        False,
    ),
    "podman-arm64": Profile(
        "podman-arm64",
        "podman 4.x's arm64 options with -cpu max for -cpu host (TCG refuses host): -accel tcg -M virt,highmem=on",
        "max",
        "virt,highmem=on",
        ["tcg"],
        False,
        True,
    ),
}
# podman 4.x's own arm64 options as it writes them (pkg/machine/qemu/options_darwin_arm64.go).
PODMAN_ARM64_OPTIONS = ["-accel", "hvf", "-accel", "tcg", "-cpu", "host", "-M", "virt,highmem=on"]


@dataclass
class Run:
    profile: str
    cpus: int
    round_number: int
    # seconds from `podman machine start` for every stage reached, plus "forward" (the API forward up)
    events: dict[str, float] = field(default_factory=dict)
    import_s: float | None = None
    run_s: float | None = None
    output: str = ""
    error: str | None = None
    loadavg: float = 0.0
    argv: list[str] = field(default_factory=list)


def apply_profile(argv: list[str], profile: Profile) -> list[str]:
    """convert's argv with the profile's CPU, machine type, accelerator and firmware options."""
    if profile.name == "podman-emu":
        return list(argv)
    out = [argv[0]]
    for option in iter_options(argv):
        name, value = canonical_name(option.name), option.value or ""
        if name == "-cpu":
            out += ["-cpu", profile.cpu]
        elif name == "-M":
            out += [*(element for accel in profile.accel for element in ("-accel", accel)), "-M", profile.machine]
        elif not (
            name == "-accel"
            or (name == "-boot" and not profile.boot_options)
            or (
                name == "-drive"
                and not profile.vars_drive
                and suboption(value, "if") == "pflash"
                and suboption(value, "unit") == "1"
            )
        ):
            out += option.elements()
    return out


class ConsoleStages:
    """Timestamps the first console line of each stage as the guest writes it."""

    def __init__(self, path: Path, offset: int, started: float) -> None:
        self.path, self.offset, self.started = path, offset, started
        self.seen: dict[str, float] = {}
        self._patterns = [(stage, re.compile(pattern)) for stage, pattern in CONSOLE_STAGES]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        pending = b""
        while not self._stop.is_set():
            with contextlib.suppress(OSError), self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
                self.offset += len(chunk)
                now = time.monotonic() - self.started
                *lines, pending = (pending + chunk).split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    for stage, pattern in self._patterns:
                        if stage not in self.seen and pattern.search(line):
                            self.seen[stage] = now
            self._stop.wait(0.05)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=5)
        return dict(self.seen)


def podman_refuses_its_own_arm64_options(qemu: str) -> str:
    """What qemu says to podman's arm64 options on an x86_64 host (no HVF, TCG)."""
    probe = subprocess.run(
        [qemu, *PODMAN_ARM64_OPTIONS, "-display", "none", "-nodefaults", "-S"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return probe.stderr.strip() or f"exit {probe.returncode}"


def machine_argv(user: PodmanUser, name: str) -> list[str]:
    return list(user.machine_json(name)["CmdLine"])


def set_machine_argv(user: PodmanUser, name: str, argv: list[str]) -> None:
    path = user.config_dir / f"{name}.json"
    content = user.machine_json(name)
    content["CmdLine"] = argv
    path.write_text(json.dumps(content, indent=1) + "\n")


def forward_up(user: PodmanUser, name: str, started_epoch: float) -> float | None:
    for state_file in (user.state_dir / "start-helpers" / "forward").glob(f"{name}-*.json"):
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(state_file.read_text())
            if state.get("forward_up_at"):
                return float(state["forward_up_at"]) - started_epoch
    return None


def one_run(user: PodmanUser, guest: Any, native: Path, profile: Profile, cpus: int, round_number: int) -> Run:
    run = Run(profile.name, cpus, round_number, loadavg=os.getloadavg()[0])
    name = f"b{profile.name.replace('-', '')[:8]}{cpus}r{round_number}"
    try:
        init = user.podman(
            "machine", "init", "--timezone", "UTC", "--cpus", str(cpus), "--image-path", str(native), name,
            timeout=COMMAND_TIMEOUT_S,
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"podman machine init failed\n{init.describe()}")
        user.machines.append(name)
        converted = user.podman_emu("convert", name, "--image", str(guest.disk), timeout=COMMAND_TIMEOUT_S)
        if converted.returncode != 0:
            raise RuntimeError(f"podman-emu convert failed\n{converted.describe()}")
        run.argv = apply_profile(machine_argv(user, name), profile)
        set_machine_argv(user, name, run.argv)
        inspected = json.loads(user.podman_emu("inspect", name, "--json").stdout)
        console = Path(inspected["console_log"])
        offset = console.stat().st_size if console.exists() else 0
        started, started_epoch = time.monotonic(), time.time()
        stages = ConsoleStages(console, offset, started)
        start = user.podman("machine", "start", name, timeout=START_TIMEOUT_S)
        run.events = stages.stop()
        ok = start.line_time("started successfully")
        if start.returncode != 0 or ok is None:
            raise RuntimeError(f"podman machine start did not finish\n{start.describe()}")
        run.events["started"] = ok
        forward = forward_up(user, name, started_epoch)
        if forward is not None:
            run.events["forward"] = forward
        imported = user.podman("--connection", name, "import", str(guest.busybox_tar), IMAGE, timeout=COMMAND_TIMEOUT_S)
        if imported.returncode != 0:
            raise RuntimeError(f"podman import failed\n{imported.describe()}")
        run.import_s = imported.seconds
        run.events["imported"] = time.monotonic() - started
        ran = user.podman("--connection", name, "run", "--rm", IMAGE, "uname", "-m", timeout=COMMAND_TIMEOUT_S)
        run.events["first_output"] = time.monotonic() - started
        run.run_s, run.output = ran.seconds, ran.stdout.strip()
        if ran.returncode != 0 or run.output != "aarch64":
            raise RuntimeError(f"podman run did not print aarch64\n{ran.describe()}")
    except (RuntimeError, OSError, ValueError, KeyError) as error:
        run.error = str(error)[-3000:]
    finally:
        if name in user.machines:
            user.podman("machine", "stop", name, timeout=120)
            user.kill_machine(name)
            user.podman("machine", "rm", "-f", name, timeout=120)
            user.machines.remove(name)
    return run


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    rows = []
    for key in dict.fromkeys((run.profile, run.cpus) for run in runs):
        good = [run for run in runs if (run.profile, run.cpus) == key and run.error is None]
        row: dict[str, Any] = {"profile": key[0], "cpus": key[1], "runs": len(good)}
        for event in [*(stage for stage, _ in CONSOLE_STAGES), "forward", "started", "imported", "first_output"]:
            row[event] = median([run.events[event] for run in good if event in run.events])
        row["run_s"] = median([run.run_s for run in good if run.run_s is not None])
        rows.append(row)
    return rows


def fmt(value: object) -> str:
    return f"{value:.1f}" if isinstance(value, float) else "–" if value is None else str(value)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        f"# From `podman machine start` to the first arm64 container ({meta['date']})",
        "",
        f"Host: {meta['host']}; QEMU {meta['qemu_version']}; podman {meta['podman_version']}; guest "
        f"{meta['guest']}. Seconds from `podman machine start`, median of {meta['runs']} run(s) per row.",
        "",
        "| profile | vCPUs | firmware | kernel | systemd | ignition done | sshd | Ready | API forward | "
        "**started** | import done | **first output** |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [row[k] for k in ("firmware", "kernel", "systemd", "ignition", "sshd", "ready", "forward")]
        lines.append(
            f"| {row['profile']} | {row['cpus']} | "
            + " | ".join(fmt(c) for c in cells)
            + f" | **{fmt(row['started'])}** | {fmt(row['imported'])} | **{fmt(row['first_output'])}** |"
        )
    refused = " / ".join(meta["podman_arm64_refused"].splitlines())
    lines += ["", f"podman's own arm64 options (`{' '.join(PODMAN_ARM64_OPTIONS)}`) under TCG: `{refused}`", ""]
    for run in meta["failed"]:
        lines.append(f"* failed: {run['profile']} {run['cpus']} vCPU round {run['round_number']}: {run['error'][:300]}")
    return "\n".join(lines) + "\n"


def chart(rows: list[dict[str, Any]], meta: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [row for row in rows if isinstance(row["first_output"], float)]
    usable.sort(key=lambda row: row["first_output"], reverse=True)
    labels = [f"{row['profile']}, {row['cpus']} vCPU{'s' if row['cpus'] > 1 else ''}" for row in usable]
    figure, axes = plt.subplots(figsize=(10, 0.6 * len(usable) + 3.4), dpi=120)
    for index, row in enumerate(usable):
        previous = 0.0
        for event, label, color in SEGMENTS:
            at = row.get(event)
            if not isinstance(at, float) or at < previous:
                continue
            axes.barh(index, at - previous, left=previous, color=color, label=label if index == 0 else None)
            previous = at
        axes.text(previous + 3, index, f"started {row['started']:.0f} s · output {previous:.0f} s", va="center")
    axes.set_yticks(range(len(usable)), labels)
    axes.set_xlabel(f"seconds from `podman machine start` (median of {meta['runs']} run(s))")
    axes.set_xlim(0, max((row["first_output"] for row in usable), default=1) * 1.35)
    axes.set_title(f"start → first arm64 container under TCG (QEMU {meta['qemu_version']}, podman 4.3.1)")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize="x-small")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def report(rows: list[dict[str, Any]], meta: dict[str, Any], results: Path) -> None:
    (results / "first_container.md").write_text(markdown(rows, meta))
    chart(rows, meta, results / "first_container.png")
    print(markdown(rows, meta))


def version_of(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout
        return out.splitlines()[0] if out else "?"
    return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profiles", default="podman-emu,lima,podman-arm64")
    parser.add_argument("--cpus", default="1,2")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--report-only", action="store_true", help="redraw the table and chart from RESULTS' json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads((args.results / "first_container.json").read_text())
        report(saved["rows"], saved["meta"], args.results)
        return 0
    if os.geteuid() != 0:
        print("run as root: the benchmark makes a throwaway user (podman machine refuses root)", file=sys.stderr)
        return 2
    profiles = [PROFILES[name] for name in args.profiles.split(",")]
    cpu_counts = [int(count) for count in args.cpus.split(",")]
    import testing.realguest as realguest

    guest = realguest.build(log=print)
    qemu = "/usr/bin/qemu-system-aarch64"
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "host": f"{os.cpu_count()} x {platform.machine()} CPUs, {platform.platform()}",
        "qemu_version": version_of([qemu, "--version"]).split("version ")[-1].split()[0],
        "podman_version": version_of(["podman", "--version"]).split("version ")[-1],
        "guest": f"Debian 12 arm64, kernel {guest.kernel_release}, {guest.podman_version}",
        "runs": args.runs,
        "podman_arm64_refused": podman_refuses_its_own_arm64_options(qemu),
    }
    runs: list[Run] = []
    log_dir = Path(tempfile.mkdtemp(prefix="podman-emu-bench-"))
    with throwaway_podman_user(log_dir, prefix="pemb") as user:
        native = user.home / "native-x86_64.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(native), "2G"], check=True, timeout=60)
        os.chown(native, user.uid, user.gid)
        for round_number in range(1, args.runs + 1):
            for profile in profiles:
                for cpus in cpu_counts:
                    run = one_run(user, guest, native, profile, cpus, round_number)
                    runs.append(run)
                    state = run.error.splitlines()[0] if run.error else f"output {run.events['first_output']:.1f} s"
                    print(f"[bench] {profile.name} {cpus} vCPU round {round_number}: {state}", flush=True)
                    print(f"[bench]   {json.dumps(run.events)}", flush=True)
    meta["failed"] = [asdict(run) for run in runs if run.error]
    rows = summarise(runs)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "first_container.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "runs": [asdict(run) for run in runs]}, indent=1) + "\n"
    )
    report(rows, meta, args.results)
    print(f"logs: {log_dir}")
    return 0 if not meta["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
