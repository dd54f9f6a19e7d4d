"""The emulated machine's serial console log: a file podman-emu owns, qemu appends to.

qemu opens it with append=on, so earlier boots stay readable. qemu cannot bound a file, so
podman-emu does whenever it runs: past the limit, the log moves to `NAME.log.1` (replacing the
previous one) and a fresh file starts. A running qemu keeps writing into the moved file until
its next start, so at most two files of bounded size exist.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from podman_emu import locations

CONSOLE_LIMIT_BYTES = 8 * 1024 * 1024


def console_dir() -> Path:
    return locations.state_dir() / "consoles"


def console_log_path(config_path: Path) -> Path:
    digest = hashlib.sha256(str(config_path.absolute()).encode()).hexdigest()[:12]
    return console_dir() / f"{config_path.stem}-{digest}.log"


def rotate_if_large(log: Path, limit: int = CONSOLE_LIMIT_BYTES) -> bool:
    try:
        if log.stat().st_size <= limit:
            return False
        os.replace(log, log.with_name(log.name + ".1"))
    except OSError:
        return False
    return True
