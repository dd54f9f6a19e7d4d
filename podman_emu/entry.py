"""The console entry point.

`podman-emu list` is the command people run most (and scripts poll), so it is served without
importing typer and its pydantic adapters (~60 ms of a ~200 ms start-up, see
benchmarks/cli_latency.py); everything else goes through the typer app in `cli`.
"""

from __future__ import annotations

import sys

_FAST_LIST = (["list"], ["list", "--json"])


def main() -> None:
    arguments = sys.argv[1:]
    if arguments in _FAST_LIST:
        from podman_emu.errors import PodmanEmuError
        from podman_emu.listing import print_machine_list

        try:
            print_machine_list(as_json=arguments == ["list", "--json"])
        except PodmanEmuError as error:
            from podman_emu import render

            render.error(error.message, error.hint)
            sys.exit(error.exit_code)
        return
    from podman_emu.cli import main as cli_main

    cli_main()
