"""`python -m testing.realguest build --cache DIR` | `prepare-host --cache DIR` (root)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .build import DEFAULT_CACHE, build
from .host import prepare_host
from .run import BuildError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.realguest")
    parser.add_argument("action", choices=["build", "prepare-host"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    try:
        if args.action == "prepare-host":
            prep = prepare_host(args.cache)
            report = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(prep).items()}
        else:
            report = build(args.cache, log=lambda m: print(m, file=sys.stderr, flush=True)).as_json()
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
