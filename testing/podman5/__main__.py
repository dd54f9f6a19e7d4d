"""`python -m testing.podman5 build-root [--cache DIR]`
| `shell [--cache DIR] [--bind DIR]... [--timeout S] -- CMD...` (root; the command runs as the session user)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from .root import DEFAULT_CACHE, RootError, build_root, enter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testing.podman5")
    parser.add_argument("action", choices=["build-root", "shell"])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--bind", type=Path, action="append", default=[], help="shell: a host dir to show read-only")
    parser.add_argument("--timeout", type=float, default=600)
    raw = sys.argv[1:] if argv is None else argv
    command = raw[raw.index("--") + 1 :] if "--" in raw else []
    args = parser.parse_args(raw[: raw.index("--")] if "--" in raw else raw)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        root = build_root(args.cache, log=say)
        if args.action == "build-root":
            print(json.dumps(root.as_json(), indent=1))
            return 0
        logs = Path(tempfile.mkdtemp(prefix="podman5-shell-"))
        with enter(root, logs, binds=args.bind, log=say) as session:
            result = session.run(command or ["podman", "--version"], timeout=args.timeout)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.returncode
    except RootError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
