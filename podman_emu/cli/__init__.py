"""The command line. `main` serves `podman-emu list` (the command people run most, and scripts
poll) without importing typer and its pydantic adapters (see benchmarks/cli_latency.py);
everything else goes through the typer app in `app`.
"""

from __future__ import annotations

import sys

_FAST_LIST = (["list"], ["list", "--json"])


def main() -> None:
    arguments = sys.argv[1:]
    if arguments in _FAST_LIST:
        from podman_emu.cli import render
        from podman_emu.errors import PodmanEmuError

        try:
            render.print_machine_list(as_json=arguments == ["list", "--json"])
        except PodmanEmuError as error:
            render.error(error.message, error.hint)
            sys.exit(error.exit_code)
        return
    from podman_emu.cli.app import main as app_main

    app_main()
