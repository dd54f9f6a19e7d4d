"""One exception family for every expected failure.

Each error carries what happened (message), what to do about it (hint) and the exit code. They are
turned into output only at the CLI edge, so library code never prints and never exits.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


class PodmanEmuError(Exception):
    """An expected failure: nothing was changed, and the user is told why and what to do."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, *, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(PodmanEmuError):
    """The command line itself is wrong (bad option value, unknown CPU model, …)."""

    exit_code = EXIT_USAGE


class MachineNotFound(PodmanEmuError):
    pass


class ConfigInvalid(PodmanEmuError):
    """The machine's JSON cannot be read, parsed or validated."""


class UnsupportedLayout(PodmanEmuError):
    """A config podman-emu recognises but cannot convert (podman 5.x)."""


class MachineBusy(PodmanEmuError):
    """The machine is running or starting, or another process holds its lock."""


class HostNotReady(PodmanEmuError):
    """The host lacks something an emulated machine needs (qemu, firmware, qemu-img)."""


class ConversionStateError(PodmanEmuError):
    """Converting a converted machine, reverting a native one, or a journal that does not match."""


class ImageError(PodmanEmuError):
    """A disk image that cannot be used: unreadable, wrong format, wrong arch, bad checksum."""
