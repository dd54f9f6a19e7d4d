"""The typer app: parse, call one function, render its result (cli/render.py), all behind the
error boundary (cli/guard.py). Decisions live in the modules it calls.

Each command imports its modules when it runs, for start-up speed: `podman-emu --help` and
shell completion load none of them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import typer

from podman_emu import __version__
from podman_emu.cli import render, show_list
from podman_emu.cli.guard import guarded
from podman_emu.cli.help_speedup import load_help_renderer
from podman_emu.errors import ExitCode, UsageError

EXIT_CODES = (
    f"Exit codes: {ExitCode.OK} done; {ExitCode.REFUSED} refused or failed, nothing changed; "
    f"{ExitCode.USAGE} usage error; {ExitCode.INTERNAL} internal error (a bug; the message names a log); "
    f"{ExitCode.INTERRUPTED} interrupted."
)

app = typer.Typer(
    name="podman-emu",
    help="Run a podman 4.x or 5.x (qemu) machine as a fully emulated aarch64 VM on an x86_64 host, and revert it.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _complete_machine(incomplete: str) -> list[str]:
    from podman_emu.podman.machines import machine_names

    return [name for name in machine_names() if name.startswith(incomplete)]


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
    configure_logging(verbose)


NameArgument = typer.Argument(..., help="Machine name (as in `podman machine list`).", autocompletion=_complete_machine)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


@app.command("list")
def list_command(as_json: bool = JsonOption) -> None:
    """Every machine: layout, state, native or emulated."""
    guarded(lambda: show_list(as_json), as_json=as_json)


@app.command("inspect")
def inspect_command(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """The validated config and its emulation state."""
    from podman_emu.report.inventory import inspect_machine

    guarded(lambda: render.print_inspect(inspect_machine(name), as_json=as_json), as_json=as_json)


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
    """Rewrite the machine's qemu command into a fully emulated aarch64 one.

    Also registers podman-emu's gvproxy launcher, so slow emulated first boots can finish."""
    from podman_emu.conversion.convert import ConvertRequest, convert_machine

    def warn(message: str) -> None:
        if not as_json:  # under --json the warnings are part of the output
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
    guarded(lambda: render.print_convert(convert_machine(request, warn), as_json=as_json), as_json=as_json)


@app.command("revert")
def revert_command(
    name: str = NameArgument,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the diff; write nothing."),
    as_json: bool = JsonOption,
    delete_disk: bool = typer.Option(False, "--delete-disk", help="Also delete the aarch64 disk."),
) -> None:
    """Put the machine back to its native config (keeps later cpus/memory changes).

    With the last emulated machine, the gvproxy launcher and its drop-in go too."""
    from podman_emu.conversion.revert import revert_machine

    def revert() -> None:
        render.print_revert(revert_machine(name, delete_disk=delete_disk, dry_run=dry_run), as_json=as_json)

    guarded(revert, as_json=as_json)


@app.command("doctor")
def doctor_command(
    name: str = typer.Argument(None, help="Also check this machine.", autocompletion=_complete_machine),
    as_json: bool = JsonOption,
) -> None:
    """Can this host run an emulated machine? What blocks it, and how to fix it."""
    from podman_emu.report.doctor import run_doctor

    def doctor() -> bool:
        report = run_doctor(name)
        render.print_doctor(report, as_json=as_json)
        return report.ok

    if not guarded(doctor, as_json=as_json):
        raise SystemExit(ExitCode.REFUSED)


@app.command("cleanup")
def cleanup_command(
    name: str = typer.Argument(..., help="A machine podman removed after podman-emu converted it."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed."),
) -> None:
    """Remove what a converted machine left behind after `podman machine rm`."""
    from podman_emu.conversion.leftovers import cleanup_leftovers

    guarded(lambda: render.print_cleanup(cleanup_leftovers(name, dry_run=dry_run), dry_run=dry_run))


@app.command("images")
def images_command(as_json: bool = JsonOption) -> None:
    """The cached aarch64 images: stream, release, size, checksums."""
    from podman_emu.images.stream import images_dir, list_cached_images

    guarded(lambda: render.print_images(list_cached_images(), images_dir(), as_json=as_json), as_json=as_json)


@app.command("logs")
def logs_command(
    name: str = NameArgument,
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output (across restarts)."),
    lines: int | None = typer.Option(None, "--lines", "-n", min=0, help="Only the last LINES lines (default: all)."),
) -> None:
    """The machine's serial console: firmware, boot loader, kernel and init output."""
    from podman_emu.observe.follow import machine_console, show_console

    def show() -> None:
        console = machine_console(name)
        render.prepare_console_output()
        # Ctrl-C is how `logs -f` ends: a normal exit, not an error.
        with contextlib.suppress(KeyboardInterrupt):
            show_console(
                console.log,
                render.console_text,
                lines=lines,
                follow=follow,
                notice=render.console_notice,
                own_log=console.own_log,
            )

    # `podman-emu logs NAME | head`: the reader leaves, and the boundary stops quietly, as tail does.
    guarded(show)


@app.command("status")
def status_command(name: str = NameArgument, as_json: bool = JsonOption) -> None:
    """Ask the machine's qemu what it is (CPU, accelerator, memory, uptime) and how far it booted."""
    from podman_emu.observe.qmp_status import machine_status

    guarded(lambda: render.print_status(machine_status(name), as_json=as_json), as_json=as_json)


def run(arguments: list[str], *, as_json: bool) -> None:
    """The typer app on `arguments`. Under --json, click's own usage errors become podman-emu's,
    so the boundary prints them as a JSON envelope too."""
    if not arguments or "--help" in arguments or "-h" in arguments:
        load_help_renderer()
    if not as_json:
        app(args=arguments, prog_name="podman-emu")
        return
    try:
        code = app(args=arguments, prog_name="podman-emu", standalone_mode=False)
    except typer.TyperException as exc:  # typer's own click: bad option, missing argument, …
        raise UsageError(exc.format_message(), hint="`podman-emu COMMAND --help` lists the options.") from None
    except typer.Abort:
        raise KeyboardInterrupt from None
    raise SystemExit(code or ExitCode.OK)
