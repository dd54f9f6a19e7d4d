"""`list` validates a config once per content: the cache of bytes that validated, and its key."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from podman_emu.podman import list_cache
from testing.podman_home import Sandbox

PACKAGE = Path(list_cache.__file__).resolve().parent.parent
PROBE = (
    "import sys; from podman_emu.report.inventory import list_machines; rows = list_machines(); "
    "print(getattr(rows.rows[0], 'error', 'ok'), 'pydantic' in sys.modules)"
)


def listing(box: Sandbox) -> str:
    env = {**os.environ, **box.env()}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True).stdout


def test_list_revalidates_only_changed_configs(podman_home: Sandbox) -> None:
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    assert listing(podman_home).split() == ["ok", "True"]
    assert listing(podman_home).split() == ["ok", "False"], "unchanged bytes are not validated again"
    config.write_bytes(config.read_bytes().replace(b'"Memory": 2048', b'"Memory": 2048.5'))
    changed = listing(podman_home)
    assert "'Memory'" in changed and changed.split()[-1] == "True"


def test_a_cache_from_other_code_is_not_trusted(podman_home: Sandbox) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "m")
    listing(podman_home)
    cache = podman_home.cache_dir / "validated-configs.json"
    cached = json.loads(cache.read_text())
    assert cached["fingerprint"] == list_cache.fingerprint()
    cache.write_text(json.dumps({**cached, "fingerprint": "from another version"}))
    assert listing(podman_home).split() == ["ok", "True"]


def _podman_emu_imports(module: str) -> set[str]:
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("podman_emu"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                as_module = PACKAGE.parent / (candidate.replace(".", "/") + ".py")
                names.add(candidate if as_module.exists() else node.module)
    return {name for name in names if name != "podman_emu"}


def test_the_fingerprint_covers_every_module_that_decides_validity() -> None:
    seen: set[str] = set()
    pending = ["podman_emu.podman.schema"]
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(_podman_emu_imports(module))
    files = {name.removeprefix("podman_emu.").replace(".", "/") + ".py" for name in seen}
    assert files <= set(list_cache.VALIDATING_MODULES), files - set(list_cache.VALIDATING_MODULES)
