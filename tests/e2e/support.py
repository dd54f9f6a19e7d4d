"""Timed phases of the end-to-end suite, shown in the terminal summary by conftest.

Kept apart from conftest.py so the test modules can import them by name; the throwaway user and
commands with hard timeouts are in testing.podman_user (the benchmarks use them too).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

# Phase timings, shown in the terminal summary by conftest.

PHASES: list[tuple[str, float, str]] = []


@contextlib.contextmanager
def phase(name: str, note: str = "") -> Iterator[dict[str, str]]:
    """Time a step of the scenario. `extra["note"]` may be set inside the block."""
    extra = {"note": note}
    start = time.monotonic()
    try:
        yield extra
    finally:
        elapsed = time.monotonic() - start
        PHASES.append((name, elapsed, extra["note"]))
        print(f"[e2e phase] {name}: {elapsed:.2f}s {extra['note']}".rstrip())


def record_phase(name: str, seconds: float, note: str = "") -> None:
    PHASES.append((name, seconds, note))
    print(f"[e2e phase] {name}: {seconds:.2f}s {note}".rstrip())
