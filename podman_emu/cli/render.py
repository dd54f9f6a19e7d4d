"""Turning results into terminal output: diffs, tables, messages. No decisions here."""

from __future__ import annotations

import difflib
import json
import shlex
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from podman_emu import paths
from podman_emu.podman.gojson import go_json
from podman_emu.report.inventory import list_machines

if TYPE_CHECKING:
    # rich costs ~20 ms to import; `list --json` and error-free runs of some commands never need it.
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

_stdout: Console | None = None
_stderr: Console | None = None


def out() -> Console:
    global _stdout
    if _stdout is None:
        from rich.console import Console

        _stdout = Console(highlight=False, soft_wrap=True)
    return _stdout


def err() -> Console:
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    return _stderr


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def error(message: str, hint: str | None) -> None:
    from rich.text import Text

    err().print(Text("Error: ", style="bold red") + Text(message))
    if hint:
        err().print(Text("Hint: ", style="bold yellow") + Text(hint))


def warning(message: str) -> None:
    from rich.text import Text

    err().print(Text("Warning: ", style="yellow") + Text(message))


def _colored_diff(lines: Iterable[str]) -> Text:
    from rich.text import Text

    text = Text()
    for line in lines:
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        text.append(line.rstrip("\n") + "\n", style=style)
    return text


def unified_diff(
    before: Sequence[str], after: Sequence[str], before_name: str, after_name: str, context: int = 3
) -> Text:
    return _colored_diff(
        difflib.unified_diff(list(before), list(after), before_name, after_name, lineterm="", n=context)
    )


def json_diff(before: dict[str, Any], after: dict[str, Any], name: str) -> Text:
    def lines(content: dict[str, Any]) -> list[str]:
        return go_json(content).decode().splitlines()

    return unified_diff(lines(before), lines(after), f"{name} (now)", f"{name} (after)")


def argv_diff(before: Sequence[str], after: Sequence[str]) -> Text:
    return unified_diff(list(before), list(after), "qemu command (now)", "qemu command (after)", context=2)


def shell_command(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(element) for element in argv)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    from rich.table import Table

    grid = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if value is None else str(value) for value in row))
    return grid


def print_machine_list(as_json: bool) -> None:
    rows = list_machines()
    if as_json:
        print_json(rows)
        return
    if not rows:
        out().print(f"No machines in {paths.podman_config_dir()}")
        return
    out().print(
        table(
            ["NAME", "EMULATION", "STATE", "PODMAN", "CPUS", "MEMORY", "CPU MODEL"],
            (
                [row["name"], "error: " + row["error"], "", "", "", "", ""]
                if "error" in row
                else [
                    row["name"],
                    row["emulation"],
                    row["state"] + (f" ({row['boot_stage']})" if row.get("boot_stage") else ""),
                    row["podman"],
                    row["cpus"],
                    f"{row['memory_mib']} MiB",
                    row["cpu"] or "",
                ]
                for row in rows
            ),
        )
    )
