"""A byte progress bar on stderr (bytes, rate, ETA), and nothing at all when stderr is not a terminal:
logs and pipes get no control characters, and tests see no output."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _ignore(_: int) -> None:
    return None


@contextmanager
def byte_progress(description: str, total: int | None, *, enabled: bool, completed: int = 0) -> Iterator[Advance]:
    """Yield a function that advances the bar by a number of bytes. It may be called from any thread
    (rich's Progress takes its own lock)."""
    if not enabled or not sys.stderr.isatty():
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total, completed=completed)

        def advance(count: int) -> None:
            bar.advance(task, count)

        yield advance
