"""The shared test helpers: independent of the code they judge, and the one missing-tool policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testing import tools
from testing.fixtures import REPO
from testing.oracles import go_string_body
from testing.podman_home import Sandbox


def test_the_oracles_and_sandboxes_never_import_podman_emu() -> None:
    code = (
        "import sys, testing.oracles, testing.fixtures, testing.podman_home, testing.qemu, testing.users\n"
        "print(sorted(name for name in sys.modules if name.startswith('podman_emu')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"


def test_go_escaping_is_gos() -> None:
    assert go_string_body('a<b>&"\\\u2028\b') == 'a\\u003cb\\u003e\\u0026\\"\\\\\\u2028\\u0008'


def test_relocation_escapes_the_new_home_the_way_go_writes_it() -> None:
    box = Sandbox.create(home_name="Zoë <co> & ltd")
    try:
        config = box.install("podman-4.9-linux-amd64.json", "m")
        data = config.read_bytes()
        assert b"\\u003cco\\u003e \\u0026 ltd" in data and b"<co>" not in data
        assert json.loads(data)["IdentityPath"].startswith(str(box.home))
    finally:
        box.remove()


def test_a_missing_tool_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tools, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="no-such-tool"):
        tools.require_tool("no-such-tool", debian="nothing")
    monkeypatch.setattr(tools, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install nothing"):
        tools.require_tool("no-such-tool", debian="nothing")
    assert tools.require_tool("sh", debian="dash").endswith("/sh")
