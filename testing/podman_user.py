"""A throwaway user running the real podman and podman-emu, for the end-to-end suite and the
benchmarks: commands under hard timeouts that kill their whole process group, and a teardown
that kills whatever the machines' pid files name plus every process the user still owns.

podman machine refuses root, so commands run through `runuser` as a user made for the run
(`useradd -m`), with its own XDG_RUNTIME_DIR (no logind here); podman-emu runs from a copy of
the package the user can read. podman 4.3.1 waits for the guest with no timeout of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.fixtures import REPO
from testing.podman_home import PodmanLayout
from testing.users import ThrowawayUser, login_env


class PodmanUserError(RuntimeError):
    """The throwaway user could not be set up; the message says why."""


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    # (seconds since launch, "out"/"err", line) for every output line, to time what podman prints.
    lines: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def line_time(self, text: str) -> float | None:
        return next((t for t, _, line in self.lines if text in line), None)

    def describe(self) -> str:
        state = "TIMED OUT" if self.timed_out else f"exit {self.returncode}"
        return (
            f"$ {' '.join(self.argv)}\n[{state} after {self.seconds:.1f}s]\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def run_with_timeout(
    argv: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Result:
    """Run argv in its own process group; on timeout SIGTERM, then SIGKILL, that whole group.

    Anything it launched in the same group (podman starts qemu and gvproxy without a new
    session) goes too, which is what a hung `podman machine start` needs."""
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    lines: list[tuple[float, str, str]] = []
    lock = threading.Lock()

    def pump(stream: Any, tag: str) -> None:
        for raw in iter(stream.readline, b""):
            with lock:
                lines.append((time.monotonic() - start, tag, raw.decode(errors="replace")))
        stream.close()

    pumps = [
        threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True),
    ]
    for thread in pumps:
        thread.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_process_group(proc)
    # A child left in the background (qemu after `podman machine start`) may hold the pipes open.
    for thread in pumps:
        thread.join(timeout=2)
    with lock:
        captured = list(lines)
    return Result(
        argv,
        proc.returncode if proc.returncode is not None else -9,
        "".join(line for _, tag, line in captured if tag == "out"),
        "".join(line for _, tag, line in captured if tag == "err"),
        time.monotonic() - start,
        timed_out,
        captured,
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return Path(f"/proc/{pid}").exists() and "zombie" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    except OSError:
        pass
    return ""


def proc_uid(pid: int) -> int | None:
    try:
        return Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return None


def proc_argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0")[:-1]]


def kill_pid(pid: int, *, uid: int, grace: float = 3.0) -> bool:
    """SIGTERM then SIGKILL one process, but only if it still belongs to `uid` (a recycled pid
    must never hit somebody else's process). True if it was alive."""
    if proc_uid(pid) != uid or not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid) and proc_uid(pid) == uid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


def stop_process_group(proc: subprocess.Popen[Any]) -> None:
    """End a Popen started with start_new_session=True: SIGTERM, then SIGKILL, its group."""
    for sig, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def kill_leftovers(own_pids: Callable[[], list[int]], uid: int, *, argv_chars: int = 200) -> list[str]:
    """End every process a throwaway user still runs (podman's pause process, ssh, virtiofsd, a
    stray stand-in), by pid and only while it is still `uid`'s, in up to three rounds: killing
    one may start another (podman reaps and re-execs). What was killed, for the logs."""
    notes: list[str] = []
    for _ in range(3):
        left = [pid for pid in own_pids() if pid_alive(pid)]
        if not left:
            break
        for pid in left:
            notes.append(f"killed leftover pid {pid}: {' '.join(proc_argv(pid))[:argv_chars]}")
            kill_pid(pid, uid=uid, grace=1.0)
    return notes


def read_pid_file(path: str | Path) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class PodmanUser:
    """A throwaway user with real podman: every command under a hard timeout, logged."""

    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    helper_dir: Path
    emu_src: Path
    python: str
    log_dir: Path
    machines: list[str] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return PodmanLayout(self.home).config_dir

    @property
    def state_dir(self) -> Path:
        # Not a sandbox override: e2e checks podman-emu's real default (platformdirs).
        return self.home / ".local" / "state" / "podman-emu"

    def env(self, extra: dict[str, str] | None = None) -> list[str]:
        values = {
            **login_env(self.name, self.home, self.runtime_dir),
            "TERM": "dumb",
            "GVPROXY_STANDIN_LOG": str(self.runtime_dir / "gvproxy-standin.log"),
            # podman passes its environment on to gvproxy, so stand-in switches reach it this way.
            **{k: v for k, v in os.environ.items() if k.startswith("GVPROXY_STANDIN_") and k != "GVPROXY_STANDIN_LOG"},
            **(extra or {}),
        }
        return [f"{k}={v}" for k, v in values.items()]

    def run(self, argv: list[str], *, timeout: float, env: dict[str, str] | None = None) -> Result:
        wrapped = ["runuser", "-u", self.name, "--", "env", "-i", *self.env(env), *argv]
        # From the user's home: `python -m` puts the working directory first on sys.path, and the
        # suite's own directory (a checkout) must not shadow the copied package.
        result = run_with_timeout(wrapped, timeout=timeout, cwd=self.home)
        result.argv = argv
        with (self.log_dir / "commands.log").open("a") as fh:
            fh.write(result.describe() + "\n\n")
        return result

    def podman(self, *args: str, timeout: float = 60) -> Result:
        return self.run(["podman", *args], timeout=timeout)

    def podman_emu(self, *args: str, timeout: float = 120) -> Result:
        return self.run(
            [self.python, "-m", "podman_emu", *args],
            timeout=timeout,
            env={"PYTHONPATH": str(self.emu_src), "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"},
        )

    def machine_json(self, name: str) -> dict[str, Any]:
        content: dict[str, Any] = json.loads((self.config_dir / f"{name}.json").read_text())
        return content

    def machine_pids(self, name: str) -> dict[str, int | None]:
        """Pids named by the machine's pid files: qemu (VMPidFilePath) and gvproxy (PidFilePath)."""
        path = self.config_dir / f"{name}.json"
        pids: dict[str, int | None] = {"qemu": None, "gvproxy": None}
        try:
            content = json.loads(path.read_text())
        except (OSError, ValueError):
            return pids
        for role, key in (("qemu", "VMPidFilePath"), ("gvproxy", "PidFilePath")):
            value = content.get(key)
            if isinstance(value, dict):
                value = value.get("Path")
            if value:
                pids[role] = read_pid_file(value)
        return pids

    def kill_machine(self, name: str) -> list[str]:
        """Kill the machine's qemu and gvproxy stand-in by the pids in its pid files."""
        killed = []
        for role, pid in self.machine_pids(name).items():
            if pid is not None and kill_pid(pid, uid=self.uid):
                killed.append(f"{role}:{pid}")
        return killed

    def own_pids(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and proc_uid(int(entry.name)) == self.uid:
                pids.append(int(entry.name))
        return pids


@contextlib.contextmanager
def throwaway_podman_user(
    log_dir: Path, *, prefix: str = "pemu", prepare_home: Callable[[Path, Path, int, int], None] | None = None
) -> Iterator[PodmanUser]:
    """A new user for one run, removed afterwards with everything it still runs. `prepare_home`
    (home, helper_dir, uid, gid) sets up the home before the first command (the e2e stand-in)."""
    try:
        throwaway = ThrowawayUser.create(prefix=prefix)
    except subprocess.CalledProcessError as exc:
        raise PodmanUserError(f"useradd failed: {exc.stderr!r}") from exc
    user: PodmanUser | None = None
    emu_src: Path | None = None
    try:
        entry = throwaway.account
        home = throwaway.home
        helper_dir = home / "podman-emu-e2e-helpers"
        if prepare_home is not None:
            prepare_home(home, helper_dir, entry.pw_uid, entry.pw_gid)
        # podman-emu runs as the user from a copy of the package the user can read.
        emu_src = Path(tempfile.mkdtemp(prefix="podman-emu-e2e-src-"))
        emu_src.chmod(0o755)
        shutil.copytree(
            REPO / "podman_emu", emu_src / "podman_emu", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        for path in [emu_src, *emu_src.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        user = PodmanUser(
            name=throwaway.name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            home=home,
            runtime_dir=throwaway.runtime_dir,
            helper_dir=helper_dir,
            emu_src=emu_src,
            python=sys.executable,
            log_dir=log_dir,
        )
        probe = user.run(
            [sys.executable, "-c", "import typer, pydantic, jsonpatch, podman_emu; print(podman_emu.__file__)"],
            timeout=60,
            env={"PYTHONPATH": str(emu_src), "PYTHONDONTWRITEBYTECODE": "1"},
        )
        if probe.returncode != 0:
            raise PodmanUserError(
                f"the test user cannot run {sys.executable} with podman-emu's dependencies; run it from a "
                "world-readable venv (.ci/run makes /opt/podman-emu-venv with chmod -R a+rX)\n" + probe.describe()
            )
        if not probe.stdout.strip().startswith(str(emu_src)):
            raise PodmanUserError(f"podman-emu imported from elsewhere: {probe.stdout}")
        print(f"[podman user] {throwaway.name} uid={entry.pw_uid} home={home} logs={log_dir}")
        yield user
    finally:
        _teardown_user(throwaway, user, emu_src, log_dir)


def _teardown_user(throwaway: ThrowawayUser, user: PodmanUser | None, emu_src: Path | None, log_dir: Path) -> None:
    notes: list[str] = []
    if user is not None:
        if user.config_dir.is_dir():
            for config in user.config_dir.glob("*.json"):
                killed = user.kill_machine(config.stem)
                if killed:
                    notes.append(f"killed {config.stem}: {', '.join(killed)}")
        # Anything else the user still runs was started by this suite (podman, ssh, a stray
        # stand-in from a failed start): end it by pid so userdel can proceed.
        notes += kill_leftovers(user.own_pids, user.uid)
        # Keep the user's logs for a failed run's diagnosis.
        for src in [user.runtime_dir / "gvproxy-standin.log", *user.state_dir.glob("consoles/*.log")]:
            with contextlib.suppress(OSError):
                shutil.copy2(src, log_dir / src.name)
    if notes:
        (log_dir / "teardown.log").write_text("\n".join(notes) + "\n")
        print("[e2e teardown] " + "; ".join(notes))
    throwaway.remove()
    if emu_src is not None:
        shutil.rmtree(emu_src, ignore_errors=True)
