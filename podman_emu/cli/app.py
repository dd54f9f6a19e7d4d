"""The command line: parse, call one function, render. Decisions live in the modules it calls.

Heavy modules are imported inside the commands so `podman-emu --help` and completion stay fast.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from podman_emu import __version__
from podman_emu.cli.help_speedup import load_help_renderer
from podman_emu.errors import ExitCode, PodmanEmuError

app = typer.Typer(
    name="podman-emu",
    help="Run a podman 4.x machine as a fully emulated aarch64 VM on an x86_64 host, and revert it.",
    epilog="Exit codes: 0 done; 1 refused or failed, nothing changed; 2 usage error.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")


def _complete_machine(incomplete: str) -> list[str]:
    from podman_emu.podman.machines import machine_names

    return [name for name in machine_names() if name.startswith(incomplete)]


def _run(action: Callable[[], T]) -> T:
    """Every expected failure becomes a message, a hint and an exit code; never a traceback."""
    from podman_emu.cli import render

    try:
        return action()
    except PodmanEmuError as error:
        render.error(error.message, error.hint)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        render.error("interrupted", "Nothing was changed unless the output said so.")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:
        if os.environ.get("PODMAN_EMU_DEBUG"):
            raise
        render.error(
            f"unexpected internal error: {type(exc).__name__}: {exc}",
            "No machine file was changed unless the output said so. Run again with PODMAN_EMU_DEBUG=1 "
            "for details and report it.",
        )
        raise typer.Exit(ExitCode.REFUSED) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"podman-emu {__version__}")
        raise typer.Exit()


def configure_logging(verbose: bool) -> None:
    """`--verbose` (or PODMAN_EMU_DEBUG=1) shows podman-emu's debug log on stderr: every external
    command it runs (proc.run) and how it ended."""
    # qemu.qmp logs connection failures at WARNING/ERROR; status reports them in its own words.
    logging.getLogger("qemu.qmp").addHandler(logging.NullHandler())
    logging.getLogger("qemu.qmp").propagate = False
    if verbose or os.environ.get("PODMAN_EMU_DEBUG"):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("podman-emu: %(message)s"))
        logger = logging.getLogger("podman_emu")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show every external command podman-emu runs."),
) -> None:
    """Exit codes: 0 done; 1 refused or failed, nothing changed; 2 usage error."""
    configure_logging(verbose)


NameArgument = typer.Argument(..., help="Machine name (as in `podman machine list`).", autocompletion=_complete_machine)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


@app.command("list")
def list_command(as_json: bool = JsonOption) -> None:
    """Every machine: layout, state, native or emulated."""
    from podman_emu.cli.render import print_machine_list

    _run(lambda: print_machine_list(as_json))


@app.command("inspect")
def inspect_command(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """The validated config and its emulation state."""
    from podman_emu.cli import render
    from podman_emu.report.inventory import inspect_machine

    report = _run(lambda: inspect_machine(name))
    if as_json:
        render.print_json(report)
        return
    console = render.out()
    keys = ["name", "config", "layout", "podman", "emulation", "state", "qemu", "cpu", "cpus", "memory_mib",
            "disk_gib", "image", "console_log"]  # fmt: skip
    for key in keys:
        console.print(f"[bold]{key:>12}[/bold]  {report.get(key)}")
    for line in report["state_evidence"]:
        console.print(f"{'':>12}  {line}")
    journal = report.get("journal")
    if journal:
        console.print(
            f"[bold]{'journal':>12}[/bold]  {journal['path']} ({journal['status']}, {journal['converted_at']})"
        )
        console.print(f"[bold]{'native':>12}[/bold]  {journal['native_qemu']}  {journal['native_image']}")
        for item in journal["created"]:
            console.print(f"{'':>12}  created {item['role']}: {item['path']}")
    console.print(f"[bold]{'command':>12}[/bold]  {render.shell_command(report['cmdline'])}")


@app.command("convert")
def convert_command(
    name: str = NameArgument,
    image: str = typer.Option(None, "--image", help="aarch64 disk: qcow2 or raw, plain or .xz/.gz/.zst."),
    sha256: str = typer.Option(None, "--sha256", help="Expected sha256 of the --image file."),
    stream: str = typer.Option(None, "--stream", help="Fetch the Fedora CoreOS aarch64 image: stable, testing, next."),
    stream_url: str = typer.Option(None, "--stream-url", help="Stream metadata URL (mirrors, tests)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; write nothing."),
    as_json: bool = JsonOption,
    qemu: str = typer.Option(None, "--qemu", help="Path of qemu-system-aarch64."),
    firmware: str = typer.Option(None, "--firmware", help="aarch64 UEFI code image (64 MiB pflash)."),
    vars_template: str = typer.Option(None, "--vars-template", help="UEFI vars template for --firmware."),
    cpu: str = typer.Option(None, "--cpu", help="CPU model (checked against the qemu's -cpu help)."),
    force: bool = typer.Option(False, "--force", help="Use a disk even if it looks like x86_64."),
) -> None:
    """Rewrite the machine's qemu command into a fully emulated aarch64 one."""
    from podman_emu.cli import render
    from podman_emu.conversion.convert import ConvertRequest, convert_machine

    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if not as_json:
            render.warning(message)

    request = ConvertRequest(
        name=name,
        image=image,
        sha256=sha256,
        stream=stream,
        stream_url=stream_url,
        qemu=qemu,
        firmware=firmware,
        vars_template=vars_template,
        cpu=cpu,
        force=force,
        dry_run=dry_run,
        progress=not as_json and sys.stderr.isatty(),
    )
    outcome = _run(lambda: convert_machine(request, warn))
    plan = outcome.plan
    if as_json:
        files = [{"role": f.role, "path": f.destination, "source": f.source, "detail": f.detail} for f in plan.files]
        render.print_json(
            _plan_json(
                plan,
                outcome.applied,
                files=files,
                argv_before=plan.argv_before,
                argv_after=plan.argv_after,
                cpu=outcome.profile.cpu,
                firmware=outcome.firmware.code,
                disk_format=outcome.disk_format.describe(),
                arch_check={"arch": outcome.arch.arch, "reason": outcome.arch.reason},
                warnings=warnings,
            )
        )
        return
    if not _show_plan(plan, outcome.applied):
        return
    console = render.out()
    console.print(
        f"[green]Converted {plan.machine!r}[/green] to an emulated aarch64 machine (-cpu {outcome.profile.cpu})."
    )
    console.print(
        f"Start it with `podman machine start {plan.machine}`; watch the boot with `podman-emu logs -f {plan.machine}`."
    )
    console.print(f"Undo with `podman-emu revert {plan.machine}`.")


def _plan_json(plan: Any, applied: bool, **details: Any) -> dict[str, Any]:
    return {"machine": plan.machine, "applied": applied, "patch": plan.patch, "notes": plan.notes, **details}


def _show_plan(plan: Any, applied: bool) -> bool:
    """Print the diff and the file actions; False (after saying so) for a dry run."""
    from podman_emu.cli import render

    console = render.out()
    console.print(render.argv_diff(plan.argv_before, plan.argv_after))
    console.print(render.json_diff(plan.before, plan.after, f"{plan.machine}.json"))
    for action in plan.files:
        console.print(f"[bold]create[/bold] {action.destination}  ({action.detail})")
    for path in plan.removals:
        console.print(f"[bold]remove[/bold] {path}")
    for note in plan.notes:
        console.print(f"[dim]note:[/dim] {note}")
    if not applied:
        console.print("[yellow]Dry run: nothing was written.[/yellow]")
    return applied


@app.command("revert")
def revert_command(
    name: str = NameArgument,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; write nothing."),
    as_json: bool = JsonOption,
    delete_disk: bool = typer.Option(False, "--delete-disk", help="Also delete the aarch64 disk."),
) -> None:
    """Put the machine back to its native config (keeps later cpus/memory changes)."""
    from podman_emu.cli import render
    from podman_emu.conversion.revert import revert_machine

    outcome = _run(lambda: revert_machine(name, delete_disk=delete_disk, dry_run=dry_run))
    plan = outcome.plan
    if as_json:
        render.print_json(
            _plan_json(
                plan,
                outcome.applied,
                byte_identical_to_original=outcome.byte_identical,
                removed=outcome.removed if outcome.applied else plan.removals,
                kept=outcome.kept,
            )
        )
        return
    if not _show_plan(plan, outcome.applied):
        return
    console = render.out()
    same = " (byte-identical to the original)" if outcome.byte_identical else ""
    console.print(f"[green]Reverted {plan.machine!r}[/green] to its native config{same}.")
    for path in outcome.kept:
        console.print(f"Kept the aarch64 disk {path} (remove it with --delete-disk next time, or by hand).")


@app.command("doctor")
def doctor_command(
    name: str = typer.Argument(None, help="Also check this machine.", autocompletion=_complete_machine),
    as_json: bool = JsonOption,
) -> None:
    """Can this host run an emulated machine? What blocks it, and how to fix it."""
    from podman_emu.cli import render
    from podman_emu.report.doctor import run_doctor

    report = _run(lambda: run_doctor(name))
    if as_json:
        render.print_json(report)
    else:
        console = render.out()
        marks = {
            "ok": "[green]ok[/green]  ",
            "warn": "[yellow]warn[/yellow]",
            "fail": "[red]FAIL[/red]",
            "info": "info",
        }
        for check in report["checks"]:
            console.print(f"{marks[check['level']]}  [bold]{check['topic']}[/bold]: {check['detail']}")
            if check["fix"] and check["level"] != "ok":
                console.print(f"        fix: {check['fix']}")
        for leftover in report["leftovers"]:
            console.print(f"[yellow]leftover[/yellow] from removed machine {leftover['machine']!r}:")
            for file in [*leftover["files"], leftover["journal"]]:
                console.print(f"        {file}")
            console.print(f"        remove with: {leftover['command']}")
    if not report["ok"]:
        raise typer.Exit(ExitCode.REFUSED)


@app.command("cleanup")
def cleanup_command(
    name: str = typer.Argument(..., help="A machine podman removed after podman-emu converted it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed."),
) -> None:
    """Remove what a converted machine left behind after `podman machine rm`."""
    from podman_emu.cli import render
    from podman_emu.conversion.leftovers import cleanup_leftovers

    leftover = _run(lambda: cleanup_leftovers(name, dry_run=dry_run))
    verb = "would remove" if dry_run else "removed"
    for file in [*leftover.files, leftover.journal]:
        render.out().print(f"{verb} {file}")


@app.command("images")
def images_command(as_json: bool = JsonOption) -> None:
    """The cached aarch64 images: stream, release, size, checksums."""
    from podman_emu.cli import render
    from podman_emu.images.stream import images_dir, list_cached_images

    cached = _run(list_cached_images)
    if as_json:
        render.print_json([entry.to_json() for entry in cached])
        return
    if not cached:
        render.out().print(
            f"No cached images in {images_dir()} (`podman-emu convert NAME --stream testing` fetches one)."
        )
        return
    render.out().print(
        render.table(
            ["STREAM", "RELEASE", "SIZE", "SHA256", "FETCHED", "PATH"],
            (
                [e.stream, e.release, f"{e.size / 2**20:.0f} MiB", e.sha256[:16] + "…", e.fetched, str(e.path)]
                for e in cached
            ),
        )
    )


@app.command("logs")
def logs_command(
    name: str = NameArgument,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output (across restarts)."),
    lines: int | None = typer.Option(None, "--lines", "-n", min=0, help="Only the last LINES lines (default: all)."),
) -> None:
    """The machine's serial console: firmware, boot loader, kernel and init output."""
    from podman_emu.observe.follow import machine_console, show_console

    console = _run(lambda: machine_console(name))
    # Console text is sanitized already; an unencodable character must not end the stream.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def notice(message: str) -> None:
        sys.stderr.write(f"podman-emu: {message}\n")

    def show() -> None:
        try:
            show_console(console.log, write, lines=lines, follow=follow, notice=notice)
        except KeyboardInterrupt:
            pass  # Ctrl-C is how `logs -f` ends: a normal exit, not an error
        except BrokenPipeError:
            # `podman-emu logs NAME | head`: the reader left; stop quietly, as `tail` does.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    _run(show)


@app.command("status")
def status_command(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """Ask the machine's qemu what it is (CPU, accelerator, memory, uptime) and how far it booted."""
    from podman_emu.cli import render
    from podman_emu.observe.qmp_status import describe, machine_status

    report = _run(lambda: machine_status(name))
    if as_json:
        render.print_json(report)
        return
    from rich.text import Text

    console = render.out()
    for label, text in describe(report):
        console.print(Text(f"{label:>12}  ", style="bold") + Text(text))


def main() -> None:
    arguments = sys.argv[1:]
    if not arguments or "--help" in arguments or "-h" in arguments:
        load_help_renderer()
    app(prog_name="podman-emu")
