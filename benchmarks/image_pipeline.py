"""Decompress + checksum throughput: podman-emu's materialize against `xz -dc | sha256sum`.

Builds a few-hundred-MB qcow2 with real-ish content (executables, libraries and text from /usr,
some random data, zero regions that qcow2 leaves unallocated), compresses it with xz, then times in
the same run, interleaved, three times each:

  pipe              xz -dc IMAGE | sha256sum                       (two processes)
  materialize       materialize(IMAGE, DEST)                       (sha256 of the .xz + decompress + write)
  materialize+hash  materialize(IMAGE, DEST, hash_output=True)     (also sha256 of the decompressed disk,
                                                                    as a stream download's check needs)

Each materialize run is a fresh child process, so its peak RSS (VmHWM from /proc, the child's own
address space) is the pipeline's. The written disk is fsynced, which the pipe never does; that is
part of what materialize costs. Prints a markdown table and writes it to
benchmarks/results/image_pipeline.md.

    python benchmarks/image_pipeline.py [--size-mib 700] [--runs 3] [--workdir /var/tmp/podman-emu-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

MIB = 1 << 20
RESULTS = Path(__file__).resolve().parent / "results" / "image_pipeline.md"


def _usr_files() -> list[Path]:
    found: list[Path] = []
    for root in ("/usr/bin", "/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/lib/python3"):
        for directory, _, names in os.walk(root):
            found.extend(Path(directory, name) for name in sorted(names))
    return [path for path in found if path.is_file() and not path.is_symlink()]


def build_raw(path: Path, size_mib: int) -> None:
    """About half file content from /usr, a sixth random, the rest zeros, in 1-8 MiB extents."""
    rng = random.Random(4)
    sources = _usr_files()
    rng.shuffle(sources)
    source_iter = iter(sources)
    with path.open("wb") as out:
        while out.tell() < size_mib * MIB:
            extent = rng.randint(1, 8) * MIB
            kind = rng.choices(["files", "random", "zeros"], weights=[3, 1, 2])[0]
            if kind == "zeros":
                out.seek(extent, os.SEEK_CUR)
                continue
            if kind == "random":
                out.write(rng.randbytes(extent))
                continue
            written = 0
            while written < extent:
                candidate = next(source_iter, None)
                if candidate is None:
                    source_iter = iter(sources)
                    continue
                try:
                    data = candidate.read_bytes()[: extent - written]
                except OSError:
                    continue
                out.write(data)
                written += len(data)
        out.truncate(size_mib * MIB)


def prepare(workdir: Path, size_mib: int) -> tuple[Path, int]:
    """The .qcow2.xz (reused between runs of this script) and its decompressed size."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / f"bench-{size_mib}.qcow2.xz"
    qcow2 = workdir / f"bench-{size_mib}.qcow2"
    if not image.exists():
        raw = workdir / "bench.raw"
        print(f"building a {size_mib} MiB raw disk …", file=sys.stderr)
        build_raw(raw, size_mib)
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2], check=True)
        raw.unlink()
        print("compressing with xz -6 -T0 (as image builders do) …", file=sys.stderr)
        with image.with_suffix(".tmp").open("wb") as out:
            subprocess.run(["xz", "-6", "-T0", "-c", qcow2], stdout=out, check=True)
        image.with_suffix(".tmp").rename(image)
        qcow2.unlink()
    listing = subprocess.run(["xz", "--robot", "--list", image], capture_output=True, text=True, check=True)
    # "totals <streams> <blocks> <compressed> <uncompressed> …"
    size = int(listing.stdout.split("totals")[1].split()[3])
    return image, size


def time_pipe(image: Path) -> float:
    start = time.perf_counter()
    subprocess.run(f"xz -dc '{image}' | sha256sum", shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


_CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from podman_emu.images.materialize import materialize
    source, destination, hash_output = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
    start = time.perf_counter()
    materialize(source, destination, hash_output=hash_output)
    elapsed = time.perf_counter() - start
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    print(json.dumps({"seconds": elapsed, "peak_kib": peak_kib}))
    """
)


def time_materialize(image: Path, destination: Path, hash_output: bool) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(image), str(destination), "1" if hash_output else "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    destination.unlink()
    report = json.loads(result.stdout)
    return float(report["seconds"]), report["peak_kib"] / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=700, help="raw size of the generated disk")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/var/tmp/podman-emu-bench"))
    args = parser.parse_args()
    for tool in ("qemu-img", "xz", "sha256sum"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed")

    image, disk_size = prepare(args.workdir, args.size_mib)
    destination = args.workdir / "materialized.qcow2"
    timings: dict[str, list[float]] = {"pipe": [], "materialize": [], "materialize+hash": []}
    peaks: dict[str, list[float]] = {"materialize": [], "materialize+hash": []}
    time_pipe(image)  # warm the page cache for everyone alike
    load_before = os.getloadavg()[0]
    for run in range(args.runs):
        timings["pipe"].append(time_pipe(image))
        for name, hash_output in (("materialize", False), ("materialize+hash", True)):
            seconds, peak = time_materialize(image, destination, hash_output)
            timings[name].append(seconds)
            peaks[name].append(peak)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in timings.items()), file=sys.stderr)

    load_after = os.getloadavg()[0]
    pipe = statistics.median(timings["pipe"])
    rows = []
    for name, values in timings.items():
        median = statistics.median(values)
        throughput = disk_size / MIB / median
        peak_text = f"{max(peaks[name]):.0f} MiB" if name in peaks else "(two processes, not measured)"
        rows.append(
            f"| {name} | {median:.2f} s | {throughput:.0f} MiB/s | {pipe / median:.2f}× | {peak_text} | "
            + ", ".join(f"{v:.2f}" for v in values)
            + " |"
        )
    xz_version = subprocess.run(["xz", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    table = "\n".join(
        [
            "# Image pipeline benchmark",
            "",
            f"Image: {image.stat().st_size / MIB:.0f} MiB .qcow2.xz → {disk_size / MIB:.0f} MiB qcow2 "
            f"(generated from a {args.size_mib} MiB raw disk). {args.runs} interleaved runs, medians.",
            f"Host: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {xz_version}; "
            f"1-minute load average {load_before:.1f} before and {load_after:.1f} after (other work shares the CPUs, "
            "hence interleaved runs).",
            "Throughput is decompressed bytes per second; ratio is the pipe's time over this one's (≥ 1 is faster).",
            "",
            "| pipeline | median | throughput | ratio vs pipe | peak RSS | runs (s) |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
