"""The one subprocess runner of the guest builder: a timeout on every call, and a failure that
shows the command and the tail of its output."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


class BuildError(RuntimeError):
    """A build or host-preparation step failed; the message names the command and its output."""


def run(argv: Sequence[str], *, timeout: float = 120, cwd: Path | None = None, input_text: str | None = None) -> str:
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, input=input_text, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{argv[0]} did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise BuildError(f"{' '.join(argv)} failed ({proc.returncode}):\n{tail}")
    return proc.stdout
