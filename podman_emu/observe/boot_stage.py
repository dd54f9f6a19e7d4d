"""How far did the boot get? The stages and events a console log shows, read from its end."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from podman_emu.observe.console_log import log_files, read_tail_bytes
from podman_emu.observe.sanitize import compiled, sanitize

# How much of the end of the log `last_boot` reads: one FCOS boot logs about 100–200 KiB.
PROGRESS_WINDOW_BYTES = 512 * 1024

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

    def to_json(self) -> dict[str, object]:
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
    keywords, firmware_start, kernel_start = compiled(KEYWORDS), compiled(_FIRMWARE_START), compiled(_KERNEL_START)
    stage_patterns = [(stage, compiled(pattern)) for stage, pattern in STAGE_PATTERNS]
    event_patterns = [(event, compiled(pattern)) for event, pattern in EVENT_PATTERNS]
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
