"""The command line. `main` is the console entry point (and `python -m podman_emu`).

`podman-emu list` is the command people run most, and scripts poll it, so the argvs in
FAST_COMMANDS are served without importing typer and its pydantic adapters (most of the start-up
time, see benchmarks/cli_latency.py). They call the very function the typer command calls, behind
the same error boundary; tests/unit/cli/test_fast_path.py checks that both give the same output.
Every other argv goes to the typer app in `app`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from podman_emu.cli.guard import guarded


def show_list(as_json: bool) -> None:
    """`podman-emu list [--json]`, for both paths."""
    # Imported here for start-up speed: `--help` and other commands do not need the inventory.
    from podman_emu.cli import render
    from podman_emu.report.inventory import list_machines

    render.print_machine_list(list_machines(), as_json=as_json)


FAST_COMMANDS: dict[tuple[str, ...], Callable[[], None]] = {
    ("list",): lambda: show_list(as_json=False),
    ("list", "--json"): lambda: show_list(as_json=True),
}


def _run_typer(arguments: list[str], as_json: bool) -> None:
    # Imported here for start-up speed: the fast path must not import typer.
    from podman_emu.cli.app import run

    run(arguments, as_json=as_json)


def main() -> None:
    arguments = sys.argv[1:]
    as_json = "--json" in arguments
    fast = FAST_COMMANDS.get(tuple(arguments))
    if fast is not None:
        guarded(fast, as_json=as_json)
        return
    guarded(lambda: _run_typer(arguments, as_json), as_json=as_json)
