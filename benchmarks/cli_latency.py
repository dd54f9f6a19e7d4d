"""CLI start-up latency: `podman-emu --help` and `podman-emu list` with 1, 10 and 50 machines.

Each machine is a real podman fixture config (every 4.x layout, linux and darwin) relocated into
a private XDG home; a third of them are converted with `podman-emu convert` first, so `list`
also reads journals and console paths as it does for real emulated machines. Every command runs
as a separate process, exactly as a user starts it, and the medians of wall time are reported.

    python benchmarks/cli_latency.py [--runs 21] [--out benchmarks/results/cli_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testing.fixtures import manifest  # noqa: E402
from testing.podman_home import Sandbox  # noqa: E402

COMMAND_TIMEOUT_S = 60
TARGETS_MS = {"--help": 120.0, "list (10 machines)": 150.0}
PODMAN_RATIO_TARGET = 2.0


def entry_point() -> list[str]:
    """The installed console script when there is one: what a user runs."""
    script = Path(sys.executable).parent / "podman-emu"
    return [str(script)] if script.exists() else [sys.executable, "-m", "podman_emu"]


def fixtures_4x() -> list[str]:
    # 3.4 machines are listed too, but nobody runs them with a podman-emu-era podman.
    return [entry["file"] for entry in manifest() if not entry["version"].startswith("3.")]


def build_home(count: int, blank_disk: Path | None) -> Sandbox:
    home = Sandbox.create(prefix="pemu-bench-")
    files = fixtures_4x()
    env = {**os.environ, **home.env()}
    for index in range(count):
        name = f"vm{index:02d}"
        home.install(files[index % len(files)], name)
        if blank_disk is not None and index % 3 == 0:
            subprocess.run(
                [*entry_point(), "convert", name, "--image", str(blank_disk)],
                env=env,
                capture_output=True,
                timeout=COMMAND_TIMEOUT_S,
                check=True,
            )
    return home


CPU_SAMPLES: dict[str, list[float]] = {}


def time_command(argv: list[str], env: dict[str, str], runs: int, label: str = "") -> list[float]:
    """Wall milliseconds per run; the child's user+system CPU time goes to CPU_SAMPLES[label]
    (it is what other load on the host inflates least)."""
    # Two untimed runs warm the page cache and the .pyc files.
    samples = []
    cpu = []
    for index in range(runs + 2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            raise SystemExit(f"{argv} failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
        if index >= 2:
            samples.append(elapsed * 1000)
            cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    CPU_SAMPLES[label] = cpu
    return samples


def podman_for_comparison() -> str | None:
    """The yardstick of issue-9's goal (podman-emu `list` within 2x of podman's own `list`, same
    home, same run). podman machine refuses root, so it is measured only when run as a user."""
    podman = shutil.which("podman")
    return podman if podman and os.geteuid() != 0 else None


def python_baseline(runs: int) -> list[float]:
    """`python -c pass`: the floor no CLI can go below on this machine."""
    return time_command([sys.executable, "-c", "pass"], dict(os.environ), runs, "python -c pass")


def measure(runs: int, with_conversions: bool) -> dict[str, object]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="podman-emu-cli-latency-") as tmp:
        blank: Path | None = None
        qemu_img = shutil.which("qemu-img")
        if with_conversions and qemu_img:
            blank = Path(tmp) / "blank-aarch64.qcow2"
            subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", str(blank), "1G"], check=True, timeout=60)
        results["python -c pass"] = python_baseline(runs)
        empty = build_home(0, None)
        results["--help"] = time_command([*entry_point(), "--help"], {**os.environ, **empty.env()}, runs, "--help")
        for count in (1, 10, 50):
            home = build_home(count, blank)
            env = {**os.environ, **home.env()}
            label = f"list ({count} machine{'s' if count > 1 else ''})"
            results[label] = time_command([*entry_point(), "list"], env, runs, label)
            if count == 10:
                label = "list --json (10 machines)"
                results[label] = time_command([*entry_point(), "list", "--json"], env, runs, label)
                podman = podman_for_comparison()
                if podman:
                    label = "podman machine list (10 machines)"
                    results[label] = time_command([podman, "machine", "list"], env, runs, label)
    return {
        "host": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "loadavg_at_start": os.getloadavg(),
        },
        "runs": runs,
        "converted_share": "1 in 3" if with_conversions else "none",
        "samples_ms": results,
        "median_ms": {key: round(statistics.median(values), 1) for key, values in results.items()},
        "cpu_samples_ms": dict(CPU_SAMPLES),
        "median_cpu_ms": {key: round(statistics.median(values), 1) for key, values in CPU_SAMPLES.items()},
    }


def markdown(report: dict[str, object]) -> str:
    medians: dict[str, float] = report["median_ms"]  # type: ignore[assignment]
    samples: dict[str, list[float]] = report["samples_ms"]  # type: ignore[assignment]
    lines = [
        "| command | median wall (ms) | min–max wall (ms) | median CPU (ms) | target |",
        "|---|---:|---:|---:|---|",
    ]
    for key, median in medians.items():
        target = TARGETS_MS.get(key)
        verdict = f"< {target:.0f} ms {'✓' if median < target else '✗'}" if target else ""
        lo, hi = min(samples[key]), max(samples[key])
        cpu_ms: dict[str, float] = report["median_cpu_ms"]  # type: ignore[assignment]
        lines.append(f"| `{key}` | {median:.0f} | {lo:.0f}–{hi:.0f} | {cpu_ms.get(key, 0):.0f} | {verdict} |")
    host: dict[str, Any] = report["host"]  # type: ignore[assignment]
    lines.append("")
    lines.append(
        f"{report['runs']} runs each, separate processes, medians; CPU = the child's user+system time; "
        f"Python {host['python']}, {host['cpus']} CPUs, load average {host['loadavg_at_start'][0]:.2f} at start; "
        f"{report['converted_share']} of the machines converted. "
        f"Growth from 1 to 50 machines: {medians['list (50 machines)'] - medians['list (1 machine)']:.0f} ms "
        f"({(medians['list (50 machines)'] - medians['list (1 machine)']) / 49:.1f} ms per machine)."
    )
    podman_ms = medians.get("podman machine list (10 machines)")
    if podman_ms:
        ratio = medians["list (10 machines)"] / podman_ms
        verdict = "✓" if ratio <= PODMAN_RATIO_TARGET else "✗"
        lines.append("")
        lines.append(
            f"`podman-emu list` / `podman machine list` (10 machines, same home): {ratio:.2f}× "
            f"(target ≤ {PODMAN_RATIO_TARGET:.0f}× {verdict})."
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--no-convert", action="store_true", help="list native machines only")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cli_latency.json")
    parser.add_argument("--markdown", type=Path, default=REPO / "benchmarks" / "results" / "cli_latency.md")
    args = parser.parse_args()
    report = measure(args.runs, not args.no_convert)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    args.markdown.write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
