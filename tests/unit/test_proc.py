"""The one subprocess runner: always a timeout, failures in the exception family, a debug log."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import pytest

from podman_emu import proc
from podman_emu.errors import HostNotReady, ImageError


def test_a_failing_program_is_the_callers_to_judge() -> None:
    result = proc.run([sys.executable, "-c", "import sys; print('out'); sys.exit(3)"], timeout=30, what="a step")
    assert (result.returncode, result.stdout) == (3, "out\n")


def test_a_program_that_cannot_start_raises_the_callers_error_with_its_hint(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as raised:
        proc.run(
            [str(tmp_path / "missing")], timeout=30, what="qemu-img info", error=ImageError, missing_hint="install"
        )
    assert raised.value.message.startswith("qemu-img info: cannot run ")
    assert raised.value.hint == "install"


def test_a_program_that_does_not_answer_is_ended_at_the_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(HostNotReady, match="gave no answer within 1 s"):
        proc.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1.0, what="probing")
    assert time.monotonic() - started < 10


def test_every_run_is_in_the_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="podman_emu.proc"):
        proc.run([sys.executable, "-c", "pass"], timeout=30, what="a step")
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == f"running {sys.executable} -c pass"
    assert " exited 0 after " in messages[1]
