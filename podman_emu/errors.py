"""One exception family for every expected failure, and the exit codes the CLI ends with.

Each error carries what happened (message), what to do about it (hint), a stable kebab-case
`code` (scripts read it from the `--json` error envelope) and an exit code. Errors are turned into
output only at the CLI's one boundary (cli/guard.py), so library code never prints and never
exits.

    PodmanEmuError           refused             exit 1  (the root: nothing was changed)
     ├── UsageError          usage               exit 2  (the command line itself is wrong)
     ├── MachineNotFound     machine-not-found   exit 1
     ├── ConfigInvalid       config-invalid      exit 1
     ├── UnsupportedLayout   unsupported-layout  exit 1
     ├── MachineBusy         machine-busy        exit 1
     ├── HostNotReady        host-not-ready      exit 1
     ├── ConversionStateError conversion-state   exit 1
     ├── ImageError          image-error         exit 1
     ├── IoFailed            io-failed           exit 1  (the hint says what was changed)
     │    └── StagingFailed  staging-failed      exit 1
     ├── NoConsoleLog        no-console-log      exit 1
     └── UnsafeDirectory     unsafe-directory    exit 1

Anything else that escapes a command is a bug: the boundary reports it as `internal-error` with
ExitCode.INTERNAL, and Ctrl-C as `interrupted` with ExitCode.INTERRUPTED.
"""

from __future__ import annotations

import enum
import errno
import os


class ExitCode(enum.IntEnum):
    OK = 0
    REFUSED = 1  # refused or failed, and nothing was changed; the message says why
    USAGE = 2  # click's own code for a bad command line, kept for ours
    INTERNAL = 3  # a bug in podman-emu (pre-commit uses 3 for the same)
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class PodmanEmuError(Exception):
    """An expected failure: nothing was changed, and the user is told why and what to do."""

    code = "refused"
    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(PodmanEmuError):
    """The command line itself is wrong (bad option value, unknown CPU model, …)."""

    code = "usage"
    exit_code = ExitCode.USAGE


class MachineNotFound(PodmanEmuError):
    code = "machine-not-found"


class ConfigInvalid(PodmanEmuError):
    """The machine's JSON cannot be read, parsed or validated."""

    code = "config-invalid"


class UnsupportedLayout(PodmanEmuError):
    """A config podman-emu recognises but cannot convert (podman 5.x)."""

    code = "unsupported-layout"


class MachineBusy(PodmanEmuError):
    """The machine is running or starting, or another process holds a lock podman-emu needs."""

    code = "machine-busy"


class HostNotReady(PodmanEmuError):
    """The host lacks something an emulated machine needs (qemu, firmware, qemu-img), or a host
    program did not answer."""

    code = "host-not-ready"


class ConversionStateError(PodmanEmuError):
    """Converting a converted machine, reverting a native one, or a journal that does not match."""

    code = "conversion-state"


class ImageError(PodmanEmuError):
    """A disk image that cannot be used: unreadable, wrong format, wrong arch, bad checksum."""

    code = "image-error"


class NoConsoleLog(PodmanEmuError):
    """The machine has no console log podman-emu owns."""

    code = "no-console-log"


class IoFailed(PodmanEmuError):
    """The file system refused a read or write: full, read-only, or not permitted. The hint says
    what had been changed by then (usually nothing) and how to go on."""

    code = "io-failed"

    @classmethod
    def of(cls, exc: OSError, doing: str, path: object = None, *, outcome: str = "Nothing was changed.") -> IoFailed:
        """`doing` + `path`: what failed ("write", "/x/m.json"); `outcome`: what was done by then."""
        target = str(path if path is not None else exc.filename or "a file")
        reason = (exc.strerror or str(exc)).lower()
        where = os.path.dirname(target) or target
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            advice = f"Free space on the file system holding {where} (`df -h {where}`), then run the command again."
        elif exc.errno == errno.EROFS:
            advice = f"{where} is on a read-only file system: remount it read-write, then run the command again."
        elif exc.errno in (errno.EACCES, errno.EPERM):
            advice = f"Run podman-emu as the user who owns the machine, and check the permissions of {where}."
        else:
            advice = f"Check the file system holding {where}, then run the command again."
        return cls(f"could not {doing} {target}: {reason}", hint=f"{outcome} {advice}")


class StagingFailed(IoFailed):
    """The files a conversion creates could not be prepared (no space, no permission)."""

    code = "staging-failed"


class UnsafeDirectory(PodmanEmuError):
    """A directory podman-emu would keep its own files in, but other users can write into."""

    code = "unsafe-directory"
