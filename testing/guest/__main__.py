"""`python -m testing.guest [build|boot]`: build the cached guest disk, optionally boot it once."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from . import GuestSpec, boot_disk, build_guest_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.guest")
    parser.add_argument("action", choices=["build", "boot"], nargs="?", default="build")
    parser.add_argument("--kernel", default=GuestSpec().kernel_package, help="kernel (meta) package")
    parser.add_argument("--cpu", default="max,pauth-impdef=on")
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=180)
    parser.add_argument("--workdir", type=Path, help="keep the boot's files (serial log, overlay) here")
    args = parser.parse_args(argv)

    image = build_guest_image(GuestSpec(kernel_package=args.kernel), log=lambda m: print(m, file=sys.stderr))
    report: dict[str, object] = {
        "disk": str(image.disk),
        "kernel_release": image.kernel_release,
        "cached": image.cached,
        "build_timings": {k: round(v, 2) for k, v in image.timings.items()},
    }
    if args.action == "boot":
        with tempfile.TemporaryDirectory(prefix="podman-emu-guest-boot-") as tmp:
            workdir = args.workdir or Path(tmp)
            result = boot_disk(image.disk, workdir, cpu=args.cpu, smp=args.smp, timeout=args.timeout)
            report["boot_events"] = {k: round(v, 2) for k, v in sorted(result.events.items(), key=lambda i: i[1])}
            report["ready_line"] = result.ready_line
            report["returncode"] = result.returncode
            report["serial_tail"] = result.serial[-3000:]
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
