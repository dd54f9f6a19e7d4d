"""`podman-emu logs`: a converted machine's serial console, as text that is safe to print, and
following it the way `tail -F` does.

The log is two files (console_log.py): `NAME.log.1` then `NAME.log`. Following keeps reading the
file it has open until a new `NAME.log` appears (qemu creates it at its next start after a
rotation), finishes the old one, then switches; a file that shrinks was truncated and is read
again from its start. Every read is non-blocking and the loop polls, so it works the same on
Linux and macOS and never waits on qemu.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import (
    configured_console_log,
    console_log_path,
    is_emulated,
    machine_kind,
    native_arm64_explanation,
    rotated_path,
)
from podman_emu.conversion.routes import machine_argv
from podman_emu.errors import NoConsoleLog
from podman_emu.observe.console_log import console_log_to_read, open_log, root_refuses_reading, rotate_if_large
from podman_emu.observe.sanitize import Sanitizer
from podman_emu.podman.machines import load_machine

POLL_INTERVAL_S = 0.25
READ_CHUNK = 64 * 1024

Write = Callable[[str], None]


@dataclass(frozen=True)
class MachineConsole:
    name: str
    log: Path  # where the machine's qemu writes its console, as its CmdLine says
    emulated: bool
    own_log: Path  # the log podman-emu created for it: the only one podman-emu may rotate


def machine_console(name: str) -> MachineConsole:
    """Where machine `name` logs its console; an error that says why when it does not."""
    machine = load_machine(name)
    emulated = is_emulated(machine.document.content)
    configured = configured_console_log(machine_argv(machine))
    own = console_log_path(machine.config_path)
    if configured:
        readable = console_log_to_read(configured, own)
        if readable is None:
            raise NoConsoleLog(
                root_refuses_reading(configured),
                hint=f"Run `podman-emu logs {name}` as the machine's owner.",
            )
        return MachineConsole(name, readable, emulated, own)
    if journals.load_journal(machine.config_path) is not None and emulated:
        # Converted, but the console options were edited out of CmdLine since: the file may still
        # hold earlier boots.
        return MachineConsole(name, own, emulated, own)
    if emulated:
        raise NoConsoleLog(
            f"machine {name!r} runs qemu-system-aarch64 without podman-emu's console log",
            hint=f"It was not converted by podman-emu (or its journal is gone). `podman-emu revert {name}` "
            f"and `podman-emu convert {name}` give it one.",
        )
    if machine_kind(machine.document.content) == "native-arm64":
        raise NoConsoleLog(
            f"machine {native_arm64_explanation(name, machine.config.CmdLine)}; podman-emu only logs "
            "the console of machines it converted",
            hint="Podman itself starts machines without a serial console log.",
        )
    raise NoConsoleLog(
        f"machine {name!r} is native; podman-emu only logs the console of machines it converted",
        hint=f"`podman-emu convert {name}` makes it an emulated machine with a console log. Podman itself "
        "starts native machines without a serial console log.",
    )


def _snapshot(path: Path) -> tuple[Path, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (path, info.st_size) if stat.S_ISREG(info.st_mode) else None


def _tail_bytes(parts: list[tuple[Path, int]], count: int) -> bytes:
    """The last `count` lines of the files `parts` (oldest first, each read up to its size)."""
    collected: list[bytes] = []
    newlines = 0
    last_byte: bytes | None = None
    for path, size in reversed(parts):
        try:
            with open_log(path) as handle:
                end = size
                while end > 0 and newlines <= count:
                    start = max(0, end - READ_CHUNK)
                    handle.seek(start)
                    chunk = handle.read(end - start)
                    if last_byte is None and chunk:
                        last_byte = chunk[-1:]
                    collected.append(chunk)
                    newlines += chunk.count(b"\n")
                    end = start
        except OSError:
            continue
        if newlines > count:
            break
    data = b"".join(reversed(collected))
    wanted = count + (1 if last_byte == b"\n" else 0)
    lines = data.split(b"\n")
    return b"\n".join(lines[-wanted:]) if len(lines) > wanted else data


def _copy(path: Path, size: int, sanitizer: Sanitizer, write: Write) -> None:
    try:
        with open_log(path) as handle:
            remaining = size
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                text = sanitizer.feed(chunk)
                if text:
                    write(text)
    except OSError:
        return


class Follower:
    """Follows one console log across rotation and truncation. `step()` reads what is new."""

    def __init__(self, log: Path, write: Write, notice: Write | None = None) -> None:
        self.log = log
        self.write = write
        self.notice = notice or (lambda _message: None)
        self.sanitizer = Sanitizer()
        self.handle: BinaryIO | None = None
        self.position = 0

    def open(self) -> tuple[Path, int] | None:
        """Open the file qemu writes now, at its end. Returns it and the size it had, so what
        was before can be printed without a gap or a repeat."""
        for path in (self.log, rotated_path(self.log)):
            try:
                handle = open_log(path)
            except OSError:
                continue
            self.handle = handle
            self.position = os.fstat(handle.fileno()).st_size
            handle.seek(self.position)
            return path, self.position
        return None

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def _drain(self) -> None:
        if self.handle is None:
            return
        while True:
            chunk = self.handle.read(READ_CHUNK)
            if not chunk:
                return
            self.position += len(chunk)
            text = self.sanitizer.feed(chunk)
            if text:
                self.write(text)

    def _replaced(self) -> bool:
        """Is there a `NAME.log` that is not the file being read?"""
        try:
            current = self.log.stat()
        except OSError:
            return False
        if self.handle is None:
            return True
        mine = os.fstat(self.handle.fileno())
        return (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev)

    def step(self) -> None:
        if self.handle is not None:
            if os.fstat(self.handle.fileno()).st_size < self.position:
                self.notice(f"{self.log.name} was truncated; reading it from the start")
                self.handle.seek(0)
                self.position = 0
            self._drain()
        if self._replaced():
            self._drain()
            tail = self.sanitizer.flush()
            if tail:
                self.write(tail)
            if self.handle is not None:
                self.notice(f"{self.log.name} was started anew (machine restarted or log rotated); following it")
            self.close()
            try:
                self.handle = open_log(self.log)
            except OSError:
                return
            self.position = 0
            self._drain()

    def run(self, *, interval: float = POLL_INTERVAL_S, stop: Callable[[], bool] = lambda: False) -> None:
        try:
            while not stop():
                self.step()
                time.sleep(interval)
            self.step()
        finally:
            self.close()


def show_console(
    log: Path,
    write: Write,
    *,
    lines: int | None,
    follow: bool,
    notice: Write | None = None,
    stop: Callable[[], bool] = lambda: False,
    interval: float = POLL_INTERVAL_S,
    own_log: Path | None = None,
) -> None:
    """Print the last `lines` lines (all when None) of the console log, then, with `follow`,
    everything it gets until `stop()` is true or the user interrupts. `own_log`, the log
    podman-emu created, is rotated first when it is over the limit."""
    say = notice or (lambda _message: None)
    if own_log is not None:
        rotate_if_large(own_log)
    follower = Follower(log, write, notice)
    opened = follower.open() if follow else None
    parts: list[tuple[Path, int]] = []
    for path in (rotated_path(log), log):
        if opened is not None and path == opened[0]:
            parts.append(opened)
            break
        snapshot = _snapshot(path)
        if snapshot is not None:
            parts.append(snapshot)
    if not parts and opened is None:
        say(f"no console output yet: {log} does not exist (the machine has not started since it was converted)")
    sanitizer = Sanitizer()
    if lines is None:
        for path, size in parts:
            _copy(path, size, sanitizer, write)
    elif lines > 0:
        text = sanitizer.feed(_tail_bytes(parts, lines))
        if text:
            write(text)
    if not follow:
        rest = sanitizer.flush()
        if rest:
            write(rest)
        return
    # Carry over a half-read escape sequence or line ending into the follower.
    follower.sanitizer = sanitizer
    if opened is None:
        say(f"waiting for {log} to appear")
    follower.run(interval=interval, stop=stop)
