"""Every way podman-emu shows a result or an error: tables, diffs, reports, JSON. No decisions.

Each command's result is a typed value with a `to_json()`; `--json` prints that, the terminal
gets the rendering below. rich is imported only where colour or a diff needs it (it costs
~30 ms), so `list` and every `--json` output never load it.
"""

from __future__ import annotations

import difflib
import json
import os
import shlex
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from podman_emu.podman.gojson import go_json

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from podman_emu.conversion.convert import ConvertOutcome
    from podman_emu.conversion.leftovers import Leftover
    from podman_emu.conversion.plan import Plan
    from podman_emu.conversion.revert import RevertOutcome
    from podman_emu.conversion.start_helpers import HostPlan
    from podman_emu.images.stream import CachedImage
    from podman_emu.observe.qmp_status import StatusReport
    from podman_emu.report.doctor import DoctorReport
    from podman_emu.report.inventory import InspectReport, MachineList

JSON_SCHEMA = 1  # of every JSON object podman-emu prints; lists of rows stay plain arrays

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


# --- errors and warnings ----------------------------------------------------------------------


def error_envelope(code: str, message: str, hint: str | None) -> None:
    """A failure under --json, on stdout: scripts get JSON whatever happened."""
    print_json({"schema": JSON_SCHEMA, "ok": False, "error": {"code": code, "message": message, "hint": hint}})


def one_line_error(message: str) -> None:
    from rich.text import Text

    err().print(Text("Error: ", style="bold red") + Text(message))


def error(message: str, hint: str | None) -> None:
    from rich.text import Text

    one_line_error(message)
    if hint:
        err().print(Text("Hint: ", style="bold yellow") + Text(hint))


def warning(message: str) -> None:
    from rich.text import Text

    err().print(Text("Warning: ", style="yellow") + Text(message))


# --- building blocks --------------------------------------------------------------------------


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


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[tuple[str, str]] = ()) -> str:
    """Columns padded to their widest cell, two spaces apart, like `podman machine list`; nothing
    is cut or wrapped, so the output reads the same in a terminal, a pipe and a file. `notes` are
    (first cell, text) lines whose text runs on past the columns."""
    widths = [max([len(column), *(len(row[index]) for row in rows)]) for index, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines = [line(columns), *(line(row) for row in rows)]
    lines += [f"{first.ljust(widths[0])}  {text}".rstrip() for first, text in notes]
    return "\n".join(lines) + "\n"


# --- list and inspect --------------------------------------------------------------------------

LIST_COLUMNS = ("NAME", "EMULATION", "STATE", "PODMAN", "CPUS", "MEMORY", "CPU MODEL")


def print_machine_list(listing: MachineList, *, as_json: bool) -> None:
    """`list`: rendered without rich, so the fast path stays fast (benchmarks/cli_latency.py)."""
    # Imported here, as the other result types are only for type checking: render is imported for
    # `--help` too, and the caller has loaded the inventory already.
    from podman_emu.report.inventory import BrokenRow

    if as_json:
        print_json(listing.to_json())
        return
    if not listing.rows:
        sys.stdout.write(f"No machines in {listing.config_dir}\n")
        return
    rows: list[list[str]] = []
    broken: list[tuple[str, str]] = []
    for row in listing.rows:
        if isinstance(row, BrokenRow):
            broken.append((row.name, f"error: {row.error}"))
            continue
        state = row.state.value + (f" ({row.boot_stage})" if row.boot_stage else "")
        configured = row.configured
        memory = f"{configured.memory_mib} MiB"
        rows.append([row.name, row.emulation, state, row.podman, str(configured.cpus), memory, configured.cpu or ""])
    sys.stdout.write(plain_table(LIST_COLUMNS, rows, broken))


def print_inspect(report: InspectReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    console = out()
    row, configured = report.row, report.row.configured
    fields: list[tuple[str, object]] = [
        ("name", row.name),
        ("config", row.config),
        ("layout", row.layout),
        ("podman", row.podman),
        ("emulation", row.emulation),
        ("state", row.state.value),
        ("qemu", configured.qemu),
        ("cpu", configured.cpu),
        ("cpus", configured.cpus),
        ("memory_mib", configured.memory_mib),
        ("disk_gib", row.disk_gib if row.disk_gib is not None else "not recorded (podman 3.3 kept no DiskSize)"),
        ("image", report.image),
        ("console_log", report.console_log),
    ]
    for key, value in fields:
        console.print(f"[bold]{key:>12}[/bold]  {value}")
    for line in report.state_evidence:
        console.print(f"{'':>12}  {line}")
    for note in report.notes:
        console.print(f"[bold]{'note':>12}[/bold]  {note}")
    journal = report.journal
    if journal is not None:
        console.print(f"[bold]{'journal':>12}[/bold]  {journal.path} ({journal.status}, {journal.converted_at})")
        console.print(f"[bold]{'native':>12}[/bold]  {journal.native_qemu}  {journal.native_image}")
        for item in journal.created:
            console.print(f"{'':>12}  created {item.role}: {item.path}")
    console.print(f"[bold]{'command':>12}[/bold]  {shell_command(report.cmdline)}")


# --- convert and revert -----------------------------------------------------------------------


def _print_plan(plan: Plan, applied: bool, host: HostPlan | None = None) -> bool:
    """The diff, the file actions and the changes outside the machine JSON; False (after saying
    so) for a dry run."""
    console = out()
    console.print(argv_diff(plan.argv_before, plan.argv_after))
    console.print(json_diff(plan.before, plan.after, f"{plan.machine}.json"))
    for action in plan.files:
        console.print(f"[bold]create[/bold] {action.destination}  ({action.detail})")
    for path in plan.removals:
        console.print(f"[bold]remove[/bold] {path}")
    from rich.markup import escape  # rich is imported late everywhere here, for start-up speed

    for edit in host.edits if host else []:
        detail = f"  ({escape(edit.detail)})" if edit.detail else ""
        console.print(f"[bold]{edit.action}[/bold] {escape(edit.path)}  [dim]{edit.role}[/dim]{detail}")
    for note in plan.notes:
        console.print(f"[dim]note:[/dim] {note}")
    if not applied:
        console.print("[yellow]Dry run: nothing was written.[/yellow]")
    return applied


def print_convert(outcome: ConvertOutcome, *, as_json: bool) -> None:
    if as_json:
        print_json(outcome.to_json())
        return
    name = outcome.plan.machine
    if not _print_plan(outcome.plan, outcome.applied, outcome.host):
        return
    console = out()
    console.print(f"[green]Converted {name!r}[/green] to an emulated aarch64 machine (-cpu {outcome.profile.cpu}).")
    console.print(f"Start it with `podman machine start {name}`; watch the boot with `podman-emu logs -f {name}`.")
    console.print(f"Undo with `podman-emu revert {name}`.")


def print_revert(outcome: RevertOutcome, *, as_json: bool) -> None:
    if as_json:
        print_json(outcome.to_json())
        return
    if not _print_plan(outcome.plan, outcome.applied, outcome.host):
        return
    console = out()
    same = " (byte-identical to the original)" if outcome.byte_identical else ""
    console.print(f"[green]Reverted {outcome.plan.machine!r}[/green] to its native config{same}.")
    for path in outcome.kept:
        console.print(f"Kept the aarch64 disk {path} (remove it with --delete-disk next time, or by hand).")
    for path in outcome.protected:
        console.print(
            f"Kept {path}: a current machine config names it, or it is outside podman's and podman-emu's dirs."
        )


# --- doctor, cleanup, images ------------------------------------------------------------------

_LEVEL_MARKS = {"ok": "[green]ok[/green]  ", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]", "info": "info"}


def print_doctor(report: DoctorReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    console = out()
    for check in report.checks:
        console.print(f"{_LEVEL_MARKS[check.level]}  [bold]{check.topic}[/bold]: {check.detail}")
        if check.fix and check.level != "ok":
            console.print(f"        fix: {check.fix}")
    for leftover in report.leftovers:
        console.print(f"[yellow]leftover[/yellow] from removed machine {leftover.machine!r}:")
        for file in [*leftover.files, leftover.journal]:
            console.print(f"        {file}")
        console.print(f"        remove with: {leftover.command}")


def print_cleanup(leftover: Leftover, *, dry_run: bool) -> None:
    verb = "would remove" if dry_run else "removed"
    for file in [*leftover.files, leftover.journal]:
        out().print(f"{verb} {file}")


def print_images(cached: list[CachedImage], directory: Path, *, as_json: bool) -> None:
    if as_json:
        print_json([entry.to_json() for entry in cached])
        return
    if not cached:
        out().print(f"No cached images in {directory} (`podman-emu convert NAME --stream testing` fetches one).")
        return
    out().print(
        table(
            ["STREAM", "RELEASE", "SIZE", "SHA256", "FETCHED", "PATH"],
            (
                [e.stream, e.release, f"{e.size / 2**20:.0f} MiB", e.sha256[:16] + "…", e.fetched, str(e.path)]
                for e in cached
            ),
        )
    )


# --- logs -------------------------------------------------------------------------------------


def console_text(text: str) -> None:
    """Console output as it arrives: sanitized already, written at once (`logs -f`)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def console_notice(message: str) -> None:
    sys.stderr.write(f"podman-emu: {message}\n")


def prepare_console_output() -> None:
    # Console text is sanitized already; an unencodable character must not end the stream.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


# --- status -----------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, whole = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {whole:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _live_qemu_rows(report: StatusReport) -> list[tuple[str, str]]:
    qemu = report.qemu
    bits = [f"qemu {qemu.version or '?'}", f"run state {qemu.run_state or '?'}"]
    if report.pid is not None:
        bits.append(f"pid {report.pid}")
    if report.uptime_s is not None:
        bits.append(f"up {duration(report.uptime_s)}")
    cpu = qemu.cpu or "?"
    if qemu.pauth:
        cpu += f" (pointer auth: {qemu.pauth})"
    count = f"{qemu.vcpus} vCPU{'' if qemu.vcpus == 1 else 's'}" if qemu.vcpus is not None else "? vCPUs"
    accel = qemu.accelerator or "unknown"
    if qemu.tcg_threads:
        accel += " (one host thread per vCPU)" if qemu.tcg_threads == "multi" else " (single-threaded)"
    return [
        ("qemu", ", ".join(bits)),
        ("cpu", f"{cpu}, {count}, {qemu.arch or '?'}, {qemu.machine or '?'}"),
        ("accelerator", accel),
        ("memory", f"{qemu.memory_mib} MiB" if qemu.memory_mib is not None else "?"),
    ]


def _silent_qemu_rows(report: StatusReport) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if report.run.busy:
        rows.append(("qemu", f"not answering: {report.qemu.error}"))
        if report.pid is not None:
            up = f", up {duration(report.uptime_s)}" if report.uptime_s is not None else ""
            rows.append(("process", f"pid {report.pid}{up}"))
    configured = report.configured
    rows.append(
        (
            "configured",
            f"-cpu {configured.cpu or '(none)'}, {configured.cpus} vCPUs, {configured.memory_mib} MiB, "
            f"{os.path.basename(configured.qemu)}",
        )
    )
    return rows


def _console_rows(report: StatusReport) -> list[tuple[str, str]]:
    # Imported here for the same reason as BrokenRow above; status has loaded it already.
    from podman_emu.observe.boot_stage import STAGE_DESCRIPTIONS

    console = report.console
    if console.log is None:
        return [("console", "not logged (podman-emu logs the console of machines it converted)")]
    rows: list[tuple[str, str]] = []
    if console.problem is not None:
        rows.append(("problem", console.problem))
        rows.append(("fix", console.fix or ""))
    boot = console.boot
    label = "boot" if report.run.busy else "last boot"
    if not console.exists:
        rows.append((label, "no console output yet (not started since the conversion)"))
    elif boot is None or boot.stage is None:
        rows.append((label, "no recognisable boot stage in the console log yet"))
    else:
        rows.append((label, f"{boot.stage}: {STAGE_DESCRIPTIONS[boot.stage]}"))
        rows.append(("", f"» {boot.line}"))
        if boot.last_line and boot.last_line != boot.line:
            rows.append(("latest", f"» {boot.last_line}"))
        rows.extend(("event", f"{event.stage}: {event.line}") for event in boot.events)
    if not console.exists:
        rows.append(("console", str(console.log)))
        return rows
    size = console.size_bytes
    amount = f"{size // 1024} KiB" if size >= 1024 else f"{size} bytes"
    written = f"{amount}, last output {duration(console.last_output_age_s or 0)} ago"
    rows.append(("console", f"{console.log} ({written if size else 'empty'})"))
    return rows


def status_rows(report: StatusReport) -> list[tuple[str, str]]:
    """The status report as (label, text) rows for the terminal."""
    state = report.run.state.value
    if report.run.evidence:
        state += f" ({'; '.join(report.run.evidence)})"
    rows = [("name", report.name), ("emulation", report.emulation), ("state", state)]
    rows += _live_qemu_rows(report) if report.qemu.reachable else _silent_qemu_rows(report)
    return rows + _network_rows(report) + _console_rows(report)


def _network_rows(report: StatusReport) -> list[tuple[str, str]]:
    network = report.network
    if network is None:
        return []
    launcher = "through podman-emu's launcher" if network.launcher_registered else "not registered with podman-emu"
    gvproxy = f"pid {network.gvproxy_pid}, {launcher}" if network.gvproxy_pid else f"not running ({launcher})"
    rows = [("gvproxy", gvproxy), ("API forward", network.forward_text)]
    if network.problem:
        rows.append(("problem", network.problem))
    if network.recovery:
        rows.append(("recover", network.recovery))
    return rows


def print_status(report: StatusReport, *, as_json: bool) -> None:
    if as_json:
        print_json(report.to_json())
        return
    from rich.text import Text

    console = out()
    for label, text in status_rows(report):
        console.print(Text(f"{label:>12}  ", style="bold") + Text(text))
