"""The one way podman-emu runs another program (qemu probes, qemu-img, podman --version).

Every run has a timeout, turns "cannot start" and "no answer in time" into the exception family
(never an OSError or a TimeoutExpired escaping to the user), and is logged at debug level:
`podman-emu --verbose …` or PODMAN_EMU_DEBUG=1 shows each command line and how it ended.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Sequence

from podman_emu.errors import HostNotReady, PodmanEmuError

log = logging.getLogger("podman_emu.proc")


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    error: type[PodmanEmuError] = HostNotReady,
    missing_hint: str | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to completion and return its result, whatever its exit status (the caller
    knows what a failure means). `what` names the step in messages ("probing qemu"); the program
    that cannot be started at all raises `error` with `missing_hint`."""
    command = [str(part) for part in argv]
    log.debug("running %s", shlex.join(command))
    started = time.monotonic()
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log.debug("%s gave no answer within %.0f s; killed", command[0], timeout)
        raise error(
            f"{what}: {command[0]} gave no answer within {timeout:.0f} s",
            hint=f"Check that it works on its own (`{shlex.join(command)}`); another program may be holding it up.",
        ) from None
    except OSError as exc:
        log.debug("%s could not be started: %s", command[0], exc)
        raise error(f"{what}: cannot run {command[0]}: {exc.strerror or exc}", hint=missing_hint) from None
    log.debug("%s exited %d after %.2f s", command[0], result.returncode, time.monotonic() - started)
    return result
