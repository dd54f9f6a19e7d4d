"""Start-up cost of the CLI: which modules each command imports (timings are in
benchmarks/cli_latency.py; imports are what can be checked deterministically)."""

import subprocess
import sys

from testing.fixtures import REPO
from testing.podman_home import Sandbox

HELP_HEAVY = ("markdown_it", "rich.markdown", "pygments", "pydantic", "jsonpatch", "qemu.qmp", "httpx", "asyncio")
LIST_HEAVY = ("markdown_it", "rich.markdown", "qemu.qmp", "asyncio", "httpx", "zstandard", "matplotlib")


def imported_modules(code: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Run `code` in a fresh interpreter, return the modules it imported and what it printed."""
    wrapper = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + ' '.join(sorted(sys.modules)) + '\\n'))\n" + code
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    line = next(line for line in result.stderr.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:]), result.stdout


def run_main(*args: str, preload: str = "") -> str:
    argv = ["podman-emu", *args]
    return f"import sys\n{preload}\nsys.argv = {argv!r}\nfrom podman_emu.cli import main\nmain()\n"


def test_help_imports_no_heavy_module_and_prints_the_same() -> None:
    modules, fast = imported_modules(run_main("--help"))
    assert not {name for name in modules if name.split(".")[0] in HELP_HEAVY or name in HELP_HEAVY}
    # The reference: typer's renderer imported the ordinary way, with every module it wants.
    _, reference = imported_modules(run_main("--help", preload="import rich.markdown, rich.traceback"))
    assert fast == reference
    assert "Usage: podman-emu" in fast and "status" in fast and "logs" in fast
    _, sub_help = imported_modules(run_main("status", "--help"))
    assert "--json" in sub_help


def test_the_deferred_renderer_classes_are_the_real_ones_when_used() -> None:
    # main() ends with SystemExit, so the check runs from an exit hook.
    check = (
        "import atexit\n"
        "def check():\n"
        "    import typer.rich_utils as r, rich.markdown, rich.traceback\n"
        "    assert type(r.Markdown('*x*')) is rich.markdown.Markdown\n"
        "    assert r.Traceback.from_exception.__self__ is rich.traceback.Traceback\n"
        "    print('REAL')\n"
        "atexit.register(check)\n"
    )
    _, out = imported_modules(check + run_main("--help"))
    assert out.rstrip().endswith("REAL")


def test_list_imports_no_heavy_module(podman_home: Sandbox) -> None:
    import os

    podman_home.install("podman-4.3-linux-amd64.json", "m")
    env = {**os.environ, **podman_home.env()}
    modules, out = imported_modules(run_main("list"), env)
    assert "m" in out
    assert "pydantic" in modules  # list validates every config
    assert not {name for name in modules if name.split(".")[0] in LIST_HEAVY or name in LIST_HEAVY}
