"""End-to-end scaffolding: a throwaway user, the gvproxy stand-in, the test guest, timed phases.

podman machine refuses to run as root, so every podman and podman-emu command runs as a user made
for this session (`useradd -m`), with its own XDG_RUNTIME_DIR since there is no logind here.
podman 4.3.1 waits for the guest with no timeout in `start` and `stop`, so every command runs
under a timeout that kills its whole process group, and teardown kills whatever the machines' pid
files name plus any process left owned by the throwaway user, before the user is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testing.guest import AAVMF_CODE, AAVMF_VARS, GuestImage, GuestToolMissing, build_guest_image, check_host
from testing.podman_user import PodmanUser, PodmanUserError, throwaway_podman_user
from testing.tools import unavailable
from testing.users import USER_PATH

from .support import PHASES, phase

E2E_DIR = Path(__file__).resolve().parent
PODMAN_DEFAULT_HELPER_DIRS = [
    "/usr/local/libexec/podman",
    "/usr/local/lib/podman",
    "/usr/libexec/podman",
    "/usr/lib/podman",
]
# Tool -> Debian package that provides it.
REQUIRED_TOOLS = {
    "podman": "podman",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-img": "qemu-utils",
    "runuser": "util-linux",
    "useradd": "passwd",
    "userdel": "passwd",
}


# ---------------------------------------------------------------------------------------------
# Reporting and step ordering.


LOGS_ENV = "PODMAN_EMU_E2E_LOGS"
_LOG_DIR: list[Path] = []


def session_log_dir() -> Path:
    """Commands, console logs and the stand-in's log of this run. Outside pytest's basetemp, which
    other pytest runs of the same user prune; removed after a passing run unless LOGS_ENV names it."""
    if not _LOG_DIR:
        chosen = os.environ.get(LOGS_ENV)
        if chosen:
            path = Path(chosen)
            path.mkdir(parents=True, exist_ok=True)
        else:
            path = Path(tempfile.mkdtemp(prefix="podman-emu-e2e-logs-"))
        _LOG_DIR.append(path)
    return _LOG_DIR[0]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _LOG_DIR and exitstatus == 0 and not os.environ.get(LOGS_ENV):
        shutil.rmtree(_LOG_DIR[0], ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _LOG_DIR and _LOG_DIR[0].exists():
        terminalreporter.write_line(f"podman-emu e2e logs kept in {_LOG_DIR[0]}")
    if not PHASES:
        return
    terminalreporter.section("podman-emu e2e phase timings")
    for name, seconds, note in PHASES:
        terminalreporter.write_line(f"{name:<52} {seconds:8.2f}s  {note}")
    out = os.environ.get("PODMAN_EMU_E2E_TIMINGS")
    if out:
        Path(out).write_text(
            json.dumps([{"phase": n, "seconds": round(s, 3), "note": t} for n, s, t in PHASES], indent=1) + "\n"
        )


# ---------------------------------------------------------------------------------------------
# Scenario steps depend on each other: once one fails, the later ones are skipped, not failed.


FAILED_STEPS: list[str] = []


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    if (
        call.when in ("setup", "call")
        and call.excinfo is not None
        and item.get_closest_marker("e2e_step")
        and not call.excinfo.errisinstance(pytest.skip.Exception)
    ):
        FAILED_STEPS.append(item.name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("e2e_step") and FAILED_STEPS:
        pytest.skip(f"an earlier scenario step failed: {FAILED_STEPS[0]}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e_step: a step of the ordered e2e scenario")


def _check_prerequisites() -> None:
    if sys.platform != "linux":
        unavailable("needs Linux")
    if os.geteuid() != 0:
        unavailable("needs root, to create the throwaway user podman machine must run as (run it as root)")
    missing = {tool: pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool, path=USER_PATH) is None}
    if missing:
        unavailable(f"missing {', '.join(sorted(missing))}: apt-get install {' '.join(sorted(set(missing.values())))}")
    for firmware in (AAVMF_CODE, AAVMF_VARS):
        if not firmware.is_file():
            unavailable(f"missing {firmware}: apt-get install qemu-efi-aarch64")
    try:
        check_host()
    except GuestToolMissing as exc:
        unavailable(f"cannot build the aarch64 test guest: {exc}")


@pytest.fixture(scope="session")
def e2e_prerequisites() -> None:
    _check_prerequisites()


@pytest.fixture(scope="session")
def guest_image(e2e_prerequisites: None) -> GuestImage:
    """The bootable aarch64 test disk, built once and cached between runs."""
    with phase("disk build") as info:
        try:
            image = build_guest_image(log=print)
        except GuestToolMissing as exc:
            unavailable(f"cannot build the aarch64 test guest: {exc}")
        info["note"] = (
            f"cached {image.directory.name}"
            if image.cached
            else "built: " + ", ".join(f"{k} {v:.1f}s" for k, v in image.timings.items())
        )
    return image


@pytest.fixture(scope="session")
def e2e_user(e2e_prerequisites: None) -> Iterator[PodmanUser]:
    """A user whose podman runs the gvproxy stand-in (the busybox guest has no sshd)."""
    with _throwaway_e2e_user(with_standin=True) as user:
        yield user


@pytest.fixture(scope="session")
def real_user(e2e_prerequisites: None) -> Iterator[PodmanUser]:
    """A user with podman's own configuration: the real gvproxy, no containers.conf of ours."""
    with _throwaway_e2e_user(with_standin=False, prefix="pemr") as user:
        yield user


@contextlib.contextmanager
def _throwaway_e2e_user(*, with_standin: bool, prefix: str = "pemu") -> Iterator[PodmanUser]:
    try:
        with throwaway_podman_user(
            session_log_dir(), prefix=prefix, prepare_home=_install_standin if with_standin else None
        ) as user:
            yield user
    except PodmanUserError as exc:
        pytest.fail(str(exc), pytrace=False)


def _install_standin(home: Path, helper_dir: Path, uid: int, gid: int) -> None:
    # The stand-in must be readable by the user wherever the clone lives, so it is copied.
    helper_dir.mkdir()
    shutil.copy2(E2E_DIR / "gvproxy_standin.py", helper_dir / "gvproxy_standin.py")
    wrapper = helper_dir / "gvproxy"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/python3 {helper_dir / "gvproxy_standin.py"} "$@"\n')
    wrapper.chmod(0o755)
    conf_dir = home / ".config" / "containers"
    conf_dir.mkdir(parents=True)
    dirs = ", ".join(json.dumps(d) for d in [str(helper_dir), *PODMAN_DEFAULT_HELPER_DIRS])
    (conf_dir / "containers.conf").write_text(f"[engine]\nhelper_binaries_dir = [{dirs}]\n")
    for path in [home / ".config", *home.joinpath(".config").rglob("*"), helper_dir, *helper_dir.iterdir()]:
        os.chown(path, uid, gid)
