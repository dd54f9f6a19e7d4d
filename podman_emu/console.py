"""The emulated machine's serial console log: a file podman-emu owns, qemu appends to.

qemu opens it with append=on, so earlier boots stay readable. qemu cannot bound a file, so
podman-emu does whenever it runs (`list`, `status`, `logs`): past the limit, the log moves to
`NAME.log.1` (replacing the previous one) and a fresh file starts. A running qemu keeps writing
into the moved file until its next start, so readers always take `.log.1` then `.log`, in that
order, which is also the order in which they were written.

Firmware, boot loaders and systemd write raw control characters and ANSI/VT100 sequences to the
console (clear screen, cursor moves, colours, window titles). `Sanitizer` turns that into plain
text that is safe to print on any terminal; `boot_progress` reads it to say how far a boot got.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podman_emu import locations

CONSOLE_LIMIT_BYTES = 8 * 1024 * 1024
# How much of the end of the log `boot_progress` reads: one FCOS boot logs about 100–200 KiB.
PROGRESS_WINDOW_BYTES = 512 * 1024


def console_dir() -> Path:
    return locations.state_dir() / "consoles"


def console_log_path(config_path: Path) -> Path:
    digest = hashlib.sha256(str(config_path.absolute()).encode()).hexdigest()[:12]
    return console_dir() / f"{config_path.stem}-{digest}.log"


def rotated_path(log: Path) -> Path:
    return log.with_name(log.name + ".1")


def rotate_if_large(log: Path, limit: int | None = None) -> bool:
    try:
        if log.stat().st_size <= (CONSOLE_LIMIT_BYTES if limit is None else limit):
            return False
        os.replace(log, rotated_path(log))
    except OSError:
        return False
    return True


def configured_log(argv: Sequence[str]) -> str | None:
    """The console log path in a machine's qemu command line, if podman-emu attached one."""
    from podman_emu.plan import CONSOLE_CHARDEV_ID
    from podman_emu.qemu.argv import suboption

    for index, element in enumerate(argv[:-1]):
        if element == "-chardev" and suboption(argv[index + 1], "id") == CONSOLE_CHARDEV_ID:
            return suboption(argv[index + 1], "path")
    return None


def log_files(log: Path) -> list[Path]:
    """The existing files of a console log, oldest first."""
    return [path for path in (rotated_path(log), log) if path.is_file()]


# --- Making console output printable -------------------------------------------------------------

# Plain text up to and including its line end: most of a console log, handled in one step.
_PLAIN_RUN = r"[^\x00-\x1f\x7f-\x9f]*(?:\r*\n)?"
_MAX_SEQUENCE = 64  # a CSI longer than this is garbage, not a sequence: give the text back
_MAX_STRING = 4096  # OSC/DCS payloads (window titles, …)

_NORMAL, _ESC, _CSI, _STRING, _STRING_ESC, _ESC_INTERMEDIATE = range(6)


class Sanitizer:
    """Streaming bytes -> printable text. Feed it chunks as they arrive; sequences split across
    chunks are handled. What comes out contains no control character except newline and tab:

    * CR LF and lone CR become one newline (UEFI writes CR LF; progress output overwrites lines);
    * cursor positioning and screen clears (GRUB's and the firmware's menus) become a line break,
      so text drawn at different places does not run together;
    * every other escape sequence (colours, modes, titles, charsets) and control character is
      dropped, as are C1 controls; invalid UTF-8 becomes U+FFFD.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._plain_run = _compiled(_PLAIN_RUN)
        self._state = _NORMAL
        self._sequence: list[str] = []
        self._pending_cr = False
        self._at_line_start = True

    def feed(self, data: bytes) -> str:
        return self._process(self._decoder.decode(data))

    def flush(self) -> str:
        """End of input: whatever is held back (a lone CR, an unfinished sequence) is settled."""
        text = self._process(self._decoder.decode(b"", final=True))
        if self._pending_cr:
            self._pending_cr = False
            self._at_line_start = True
            text += "\n"
        self._state = _NORMAL
        self._sequence = []
        return text

    def _process(self, text: str) -> str:
        out: list[str] = []
        index = 0
        length = len(text)
        while index < length:
            if self._state == _NORMAL and not self._pending_cr:
                match = self._plain_run.match(text, index)
                if match is not None and match.end() > index:
                    run = match.group()
                    if run[-1] == "\n":
                        out.append(run.rstrip("\r\n") + "\n")
                        self._at_line_start = True
                    else:
                        out.append(run)
                        self._at_line_start = False
                    index = match.end()
                    continue
            self._char(text[index], out)
            index += 1
        return "".join(out)

    def _newline(self, out: list[str]) -> None:
        out.append("\n")
        self._at_line_start = True

    def _char(self, char: str, out: list[str]) -> None:
        state = self._state
        code = ord(char)
        if state == _NORMAL:
            if self._pending_cr:
                self._pending_cr = False
                if char == "\r":
                    self._pending_cr = True
                    return
                self._newline(out)
                if char == "\n":
                    return
            if char == "\n":
                self._newline(out)
            elif char == "\r":
                self._pending_cr = True
            elif char == "\t":
                out.append(char)
                self._at_line_start = False
            elif char == "\x1b":
                self._state = _ESC
            elif code < 0x20 or 0x7F <= code <= 0x9F:
                pass  # BEL, BS, SO/SI, NUL, DEL, C1 controls: nothing a log reader wants
            else:
                out.append(char)
                self._at_line_start = False
        elif state == _ESC:
            if char == "[":
                self._state = _CSI
                self._sequence = []
            elif char in "]PX^_":
                self._state = _STRING
                self._sequence = []
            elif 0x20 <= code <= 0x2F:
                self._state = _ESC_INTERMEDIATE
            elif 0x30 <= code <= 0x7E:
                self._state = _NORMAL  # a two-character sequence (ESC 7, ESC c, ESC =, …)
            elif char == "\x1b":
                pass
            else:
                self._state = _NORMAL
                self._char(char, out)
        elif state == _CSI:
            if 0x20 <= code <= 0x3F and len(self._sequence) < _MAX_SEQUENCE:
                self._sequence.append(char)
            elif 0x40 <= code <= 0x7E:
                self._state = _NORMAL
                if char in "HfJ" and not self._at_line_start:
                    self._newline(out)
            else:
                # Not a CSI after all: drop the introducer, keep the rest as text.
                self._state = _NORMAL
                for held in self._sequence:
                    self._char(held, out)
                self._sequence = []
                self._char(char, out)
        elif state == _STRING:
            if char == "\x07":
                self._state = _NORMAL
            elif char == "\x1b":
                self._state = _STRING_ESC
            elif len(self._sequence) >= _MAX_STRING:
                self._state = _NORMAL
            else:
                self._sequence.append(char)
        elif state == _STRING_ESC:
            # ESC \ ends the string; any other ESC x also ends it (and x starts over).
            self._state = _NORMAL
            if char != "\\":
                self._state = _ESC
                self._char(char, out)
        elif state == _ESC_INTERMEDIATE:
            if 0x20 <= code <= 0x2F:
                pass
            else:
                self._state = _NORMAL
                if not 0x30 <= code <= 0x7E:
                    self._char(char, out)


def sanitize(data: bytes) -> str:
    sanitizer = Sanitizer()
    return sanitizer.feed(data) + sanitizer.flush()


# --- Reading the log ---------------------------------------------------------------------------


def read_tail_bytes(paths: Sequence[Path], max_bytes: int) -> tuple[bytes, bool]:
    """The last `max_bytes` of the concatenation of `paths` (oldest first); True if that is all."""
    chunks: list[bytes] = []
    remaining = max_bytes
    for index, path in enumerate(reversed(paths)):
        if remaining <= 0:
            older = list(reversed(paths))[index:]
            return b"".join(reversed(chunks)), not any(p.is_file() and p.stat().st_size for p in older)
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                start = max(0, size - remaining)
                handle.seek(start)
                data = handle.read(remaining)
        except OSError:
            continue
        chunks.append(data)
        remaining -= len(data)
        if start > 0:
            return b"".join(reversed(chunks)), False
    return b"".join(reversed(chunks)), True


# --- How far did the boot get? -----------------------------------------------------------------

STAGES = ("firmware", "bootloader", "kernel", "init", "ready")

STAGE_DESCRIPTIONS = {
    "firmware": "UEFI firmware is starting (about 1–7 s under TCG)",
    "bootloader": "the firmware started the boot loader (GRUB/systemd-boot), which loads the kernel",
    "kernel": "the Linux kernel is booting",
    "init": "user space is starting (initramfs, Ignition, systemd); podman waits for the guest's Ready",
    "ready": "the guest sent Ready to podman",
}

# Text that shows a stage, from edk2 (ArmVirtQemu/AAVMF), GRUB, systemd-boot, Linux, systemd and
# Fedora CoreOS (podman's ready unit is `ready.service`, which has no Description, so systemd
# names it), and the markers of podman-emu's test guest.
STAGE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("firmware", r"UEFI firmware \(version|BdsDxe: loading|Press ESCAPE for boot options"),
    ("bootloader", r"BdsDxe: starting Boot|GNU GRUB|Welcome to GRUB|Booting `|^Loading Linux"),
    ("kernel", r"EFI stub: Booting Linux Kernel|Booting Linux on physical CPU|Linux version \d"),
    (
        "init",
        (
            r"Run /\S+ as init process|systemd\[1\]: |Welcome to (?!GRUB).+!|ignition\[\d+\]: |Switching root"
            r"|PODMAN-EMU-GUEST INIT-START"
        ),
    ),
    ("ready", r"(?:Started|Finished) ready\.service|PODMAN-EMU-GUEST READY-SENT"),
)
_FIRMWARE_START = r"UEFI firmware \(version"
_KERNEL_START = r"Booting Linux on physical CPU"

# Things worth telling a user whatever the stage.
EVENT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("powered off", r"reboot: Power down|reboot: System halted"),
    ("rebooting", r"reboot: Restarting system"),
    ("kernel panic", r"Kernel panic - not syncing"),
    ("emergency mode", r"Entering emergency mode|You are in emergency mode|Reached target .*Emergency"),
    ("Ignition failed", r"Ignition failed|ignition\[\d+\]: .*failed"),
    ("firmware exception", r"Synchronous Exception at"),
)
# A cheap first look at every line (literal words, several times faster than the patterns
# themselves): each pattern above contains one of these words, so lines without any are skipped.
KEYWORDS = (
    r"UEFI|BdsDxe|ESCAPE|GRUB|Booting|Loading Linux|EFI stub|Linux version|init process|systemd|Welcome|gnition"
    r"|Switching|PODMAN-EMU|ready\.service|reboot:|panic|mergency|Exception"
)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # Compiled on first use: `list` imports this module but rarely reads a log.
    return re.compile(pattern)


_MAX_LINE = 300


@dataclass(frozen=True)
class StageHit:
    stage: str
    line: str


@dataclass
class BootProgress:
    """The last boot in a console log: the stages it reached, each with the first line that
    showed it, and notable events (power-off, panic, …)."""

    reached: list[StageHit] = field(default_factory=list)
    events: list[StageHit] = field(default_factory=list)
    last_line: str | None = None  # the newest non-empty line: where the boot is right now
    boots: int = 0  # boots that start in the part of the log that was read
    start_seen: bool = False  # False: the boot started before the part that was read

    @property
    def stage(self) -> str | None:
        return self.reached[-1].stage if self.reached else None

    @property
    def line(self) -> str | None:
        return self.reached[-1].line if self.reached else None

    def as_dict(self) -> dict[str, object]:
        return {
            "stage": self.stage,
            "description": STAGE_DESCRIPTIONS.get(self.stage or ""),
            "line": self.line,
            "last_line": self.last_line,
            "stages": [{"stage": hit.stage, "line": hit.line} for hit in self.reached],
            "events": [{"event": hit.stage, "line": hit.line} for hit in self.events],
            "boots_in_window": self.boots,
            "boot_start_seen": self.start_seen,
        }


def _clip(line: str) -> str:
    line = line.strip()
    return line if len(line) <= _MAX_LINE else line[: _MAX_LINE - 1] + "…"


def boot_progress(lines: Iterator[str] | Sequence[str]) -> BootProgress:
    """Scan sanitized console lines, oldest first. A boot starts at the firmware banner, or at
    the kernel banner when nothing came before it or the previous boot got past the kernel
    (boots without firmware, `-kernel`)."""
    keywords, firmware_start, kernel_start = _compiled(KEYWORDS), _compiled(_FIRMWARE_START), _compiled(_KERNEL_START)
    stage_patterns = [(stage, _compiled(pattern)) for stage, pattern in STAGE_PATTERNS]
    event_patterns = [(event, _compiled(pattern)) for event, pattern in EVENT_PATTERNS]
    current = BootProgress()
    boots = 0
    kernel_rank = STAGES.index("kernel")
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if not keywords.search(line):
            current.last_line = line
            continue
        rank = STAGES.index(current.stage) if current.stage else -1
        if firmware_start.search(line) or (kernel_start.search(line) and (rank < 0 or rank > kernel_rank)):
            boots += 1
            current = BootProgress(start_seen=True)
            rank = -1
        for stage, pattern in stage_patterns:
            if STAGES.index(stage) > rank and pattern.search(line):
                current.reached.append(StageHit(stage, _clip(line)))
                break
        for event, pattern in event_patterns:
            if pattern.search(line):
                current.events.append(StageHit(event, _clip(line)))
                break
        current.last_line = line
    current.boots = boots
    if current.last_line is not None:
        current.last_line = _clip(current.last_line)
    return current


def last_boot(log: Path, window: int = PROGRESS_WINDOW_BYTES) -> BootProgress:
    data, _complete = read_tail_bytes(log_files(log), window)
    return boot_progress(sanitize(data).splitlines())
