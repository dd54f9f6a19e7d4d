"""Shared pieces of the robustness suite: sandboxes, tree snapshots, CLI runners, real qemu.

Kept independent of tests/conftest.py on purpose: these tests must judge the core with their
own oracles (their own Go-style escaping, their own idea of which files may exist), not with
helpers that share assumptions with the code under test.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures" / "configs"
QEMU_AARCH64 = shutil.which("qemu-system-aarch64")
QEMU_IMG = shutil.which("qemu-img")
PODMAN = shutil.which("podman")

LONG = os.environ.get("PODMAN_EMU_LONG") == "1"
# Long runs are opt-in: the default run must stay under a minute on a 2-core machine.
long_run = pytest.mark.skipif(not LONG, reason="long robustness run: set PODMAN_EMU_LONG=1")

needs_qemu = pytest.mark.skipif(
    QEMU_AARCH64 is None or QEMU_IMG is None,
    reason="qemu-system-aarch64 and qemu-img are needed (apt-get install qemu-system-arm qemu-utils)",
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")

TEMP_MARKER = ".podman-emu-tmp"

# Runs that kill or restore hundreds of times use a tmpfs: same rename/unlink/fsync semantics
# (a SIGKILL does not lose the page cache either), without waiting on a disk shared with other
# jobs. The rest of the suite runs on /tmp's real file system.
TMPFS = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else "/tmp"


def manifest() -> list[dict[str, Any]]:
    return json.loads((FIXTURES / "manifest.json").read_text())


def fixture_files() -> list[str]:
    return [entry["file"] for entry in manifest()]


def go_string_body(value: str) -> str:
    """The inside of a JSON string as Go's encoding/json writes it (HTML-safe escaping on).
    Written here from the Go rules, not taken from podman_emu, so it can judge the core."""
    body = json.dumps(value, ensure_ascii=False)[1:-1]
    # Python writes \b and \f; Go has no short forms for them.
    body = body.replace("\\b", "\\u0008").replace("\\f", "\\u000c")
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        body = body.replace(char, escaped)
    return body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def podman_bytes(content: Any, *, trailing_newline: bool) -> bytes:
    """A document as podman 4.x serialises it: MarshalIndent(v, "", " ") (+ "\\n" for 4.5+)."""
    text = json.dumps(content, indent=1, ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text + ("\n" if trailing_newline else "")).encode()


def _qmp_path(content: dict[str, Any]) -> str:
    address = content["QMPMonitor"]["Address"]
    return address if isinstance(address, str) else address["Path"]


def image_path_of(content: dict[str, Any]) -> str:
    value = content["ImagePath"]
    return value if isinstance(value, str) else value["Path"]


@dataclass
class Sandbox:
    """A private podman home under /tmp (short paths: a unix socket path must stay < 108 bytes).

    Everything podman-emu may touch lives under `root`: podman's config and data dirs (XDG),
    the runtime dir, podman-emu's state and cache, and the working directory the commands run
    in, so any stray relative write lands inside what the tests hash."""

    root: Path
    home_name: str = "home"

    @classmethod
    def create(cls, home_name: str = "home", prefix: str = "pemu-rb-", base: str = "/tmp") -> Sandbox:
        root = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        os.chmod(root, 0o755)  # other users (nobody) must be able to reach their home inside
        sandbox = cls(root, home_name)
        for directory in (sandbox.config_dir, sandbox.data_dir, sandbox.runtime_dir / "podman", sandbox.cwd):
            directory.mkdir(parents=True, exist_ok=True)
        return sandbox

    @property
    def home(self) -> Path:
        return self.root / self.home_name

    @property
    def config_dir(self) -> Path:
        return self.home / ".config" / "containers" / "podman" / "machine" / "qemu"

    @property
    def data_dir(self) -> Path:
        return self.home / ".local" / "share" / "containers" / "podman" / "machine" / "qemu"

    @property
    def runtime_dir(self) -> Path:
        return self.root / "run"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def env(self) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "PODMAN_EMU_STATE_DIR": str(self.state_dir),
            "PODMAN_EMU_CACHE_DIR": str(self.cache_dir),
        }

    def config(self, name: str) -> Path:
        return self.config_dir / f"{name}.json"

    def relocate(self, data: bytes) -> bytes:
        """Move a fixture's absolute paths into this sandbox, escaping the new prefix the way Go
        does, so the result is still exactly what podman would have written there."""
        content = json.loads(data)
        old_home = str(Path(content["IdentityPath"]).parent.parent)
        old_runtime = str(Path(_qmp_path(content)).parent)
        data = data.replace(
            go_string_body(old_runtime).encode(), go_string_body(str(self.runtime_dir / "podman")).encode()
        )
        return data.replace(go_string_body(old_home).encode(), go_string_body(str(self.home)).encode())

    def install(
        self, fixture: str, *, name: str | None = None, data: bytes | None = None, native_disk: bool = True
    ) -> Path:
        """Put fixture `fixture` (or the given bytes) in place as machine `name`."""
        if data is None:
            data = self.relocate((FIXTURES / fixture).read_bytes())
        content = json.loads(data)
        if name is not None and name != content["Name"]:
            data = data.replace(f'"Name": "{content["Name"]}"'.encode(), f'"Name": "{name}"'.encode())
        machine = name or content["Name"]
        target = self.config(machine)
        target.write_bytes(data)
        if native_disk:
            image = Path(image_path_of(content))
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(b"native x86_64 disk stand-in: never read by these tests\n")
        return target

    def seed_cache(self, other: Sandbox) -> None:
        """Reuse another sandbox's qemu probe results (the probe costs about a second)."""
        if other.cache_dir.exists():
            shutil.copytree(other.cache_dir, self.cache_dir, dirs_exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def sandbox(home_name: str = "home") -> Iterator[Sandbox]:
    box = Sandbox.create(home_name)
    try:
        yield box
    finally:
        box.remove()


# --------------------------------------------------------------------------------------------
# Snapshots: "no byte changed anywhere" is checked by comparing whole trees.


@dataclass(frozen=True)
class Entry:
    kind: str
    mode: int
    uid: int
    gid: int
    content: str  # sha256 of a regular file, link target of a symlink, "" otherwise
    inode: int
    mtime_ns: int

    def loose(self) -> tuple[str, int, int, int, str]:
        return (self.kind, self.mode, self.uid, self.gid, self.content)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "other"


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def snapshot(*roots: Path, ignore: tuple[Path, ...] = ()) -> dict[str, Entry]:
    """Every entry under `roots` (not following symlinks): type, mode, owner, content. Trees in
    `ignore` are left out: podman-emu's cache (qemu probes, configs already validated) may be
    written by any command, read-only ones included."""
    entries: dict[str, Entry] = {}
    skipped = {str(path) for path in ignore}

    def add(path: str) -> None:
        info = os.lstat(path)
        kind = _kind(info.st_mode)
        if kind == "file":
            content = _digest(path)
        elif kind == "symlink":
            content = os.readlink(path)
        else:
            content = ""
        # A directory's mtime moves when anything is created and removed again inside it; that
        # is caught through the entries themselves, so it is not part of the comparison.
        mtime = info.st_mtime_ns if kind != "dir" else 0
        entries[path] = Entry(kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, content, info.st_ino, mtime)

    for root in roots:
        if not os.path.lexists(root):
            continue
        add(str(root))
        for directory, dirnames, filenames in os.walk(root):
            dirnames[:] = [name for name in dirnames if os.path.join(directory, name) not in skipped]
            for name in dirnames + filenames:
                add(os.path.join(directory, name))
    return entries


def diff_snapshots(
    before: dict[str, Entry], after: dict[str, Entry], *, strict: bool = False, own_dirs: Path | None = None
) -> list[str]:
    """Human-readable differences; `strict` also counts a rewrite with the same bytes.
    `own_dirs`: podman-emu's state dir, where creating its own (empty, private) directories is
    not a change (taking its lock creates the journal dir)."""
    problems = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if (
            old is None
            and new is not None
            and new.kind == "dir"
            and own_dirs is not None
            and (path == str(own_dirs) or path.startswith(str(own_dirs) + os.sep))
        ):
            continue
        if old is None:
            problems.append(f"created {path}")
        elif new is None:
            problems.append(f"removed {path}")
        elif old.loose() != new.loose():
            problems.append(f"changed {path}: {old.loose()} -> {new.loose()}")
        elif strict and (old.inode, old.mtime_ns) != (new.inode, new.mtime_ns):
            problems.append(f"rewritten {path} (same bytes, new inode or mtime)")
    return problems


# --------------------------------------------------------------------------------------------
# Running podman-emu: in-process through the real CLI app (fast), or as a real process.


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    crashed: BaseException | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


_COMMAND: Any = None


def invoke(box: Sandbox, *args: str) -> CliResult:
    """podman-emu's own CLI (the click command typer builds from `podman_emu.cli.app`), run in
    this process with the sandbox's environment and cwd. The command is built once: typer's
    CliRunner rebuilds it on every call, which would cost more than the commands themselves."""
    global _COMMAND
    if _COMMAND is None:
        from typer.main import get_command

        from podman_emu.cli.app import app

        _COMMAND = get_command(app)
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    previous = os.getcwd()
    crashed: BaseException | None = None
    os.environ.pop("PODMAN_EMU_DEBUG", None)
    os.environ.update(box.env())
    os.chdir(box.cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                _COMMAND.main(args=list(args), prog_name="podman-emu", standalone_mode=True)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception as exc:  # anything escaping the CLI is a finding, reported by the caller
                crashed, code = exc, 1
    finally:
        os.chdir(previous)
        os.environ.clear()
        os.environ.update(saved_env)
    return CliResult(code, stdout.getvalue(), stderr.getvalue(), crashed)


def base_env(box: Sandbox | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PODMAN_EMU_", "XDG_"))}
    # Python's own bytecode cache would otherwise show up as writes into the source tree.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if box is not None:
        env.update(box.env())
    return env


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def podman_emu_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "podman_emu", *args]


def run_cli(
    box: Sandbox,
    *args: str,
    timeout: float = 120,
    as_user: pwd.struct_passwd | None = None,
    env: dict[str, str] | None = None,
) -> CliResult:
    """podman-emu as a real process, as a user runs it (optionally as another user)."""
    full_env = base_env(box)
    full_env.update(env or {})
    kwargs: dict[str, Any] = {}
    if as_user is not None:
        kwargs.update(user=as_user.pw_uid, group=as_user.pw_gid, extra_groups=[])
    completed = subprocess.run(
        podman_emu_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=box.cwd,
        check=False,
        **kwargs,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def assert_clean_refusal(result: CliResult, *tokens: str, exit_codes: Sequence[int] = (1,)) -> None:
    """A refusal the way the issue demands it: the documented exit code, a message that names
    the problem, and no traceback or "internal error" fallback."""
    assert result.crashed is None, f"exception escaped the CLI: {result.crashed!r}"
    assert "Traceback" not in result.output, result.output
    assert "unexpected internal error" not in result.output, result.output
    assert result.exit_code in exit_codes, f"exit {result.exit_code}, wanted {exit_codes}:\n{result.output}"
    assert "Error: " in result.stderr, result.output
    for token in tokens:
        assert token in result.stderr, f"{token!r} not named in:\n{result.stderr}"


def assert_success(result: CliResult) -> None:
    assert result.crashed is None, f"exception escaped the CLI: {result.crashed!r}"
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------------------
# Disks and real qemu processes.


def make_aarch64_disk(directory: Path) -> Path:
    """A small qcow2 (no partitions, so the arch check only warns that it cannot tell)."""
    assert QEMU_IMG is not None
    path = directory / "blank-aarch64.qcow2"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(path), "1G"], check=True, timeout=60)
    return path


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def qmp_accepts(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def running_qemu(qmp_socket: str, argv: list[str] | None = None) -> Iterator[int]:
    """A real qemu-system-aarch64, paused (-S), serving QMP on `qmp_socket`. Yields its pid.
    Without `argv` a minimal machine; with it, the given command line, launched the way podman
    launches it (fd 3 = the network socket, `-display none` appended)."""
    assert QEMU_AARCH64 is not None
    command = argv or [
        QEMU_AARCH64,
        "-M",
        "virt",
        "-nodefaults",
        "-qmp",
        f"unix:{qmp_socket},server=on,wait=off",
    ]
    command = [*command, "-S", "-display", "none"]
    host_end, guest_end = socket.socketpair()
    os.set_inheritable(guest_end.fileno(), True)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after qemu is gone
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        # fd 3 must be listed too: the child closes unlisted fds after preexec_fn has run.
        pass_fds=(guest_end.fileno(), 3),
        preexec_fn=lambda: os.dup2(guest_end.fileno(), 3),
        start_new_session=True,
    )
    try:
        try:
            wait_for(
                lambda: process.poll() is not None or (os.path.exists(qmp_socket) and qmp_accepts(qmp_socket)),
                30,
                "qemu's QMP socket",
            )
        except AssertionError:
            log.seek(0)
            raise AssertionError(f"qemu did not come up: {log.read().decode(errors='replace')}") from None
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"qemu exited at once ({process.returncode}): {log.read().decode(errors='replace')}")
        yield process.pid
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        log.close()
        host_end.close()
        guest_end.close()
        with contextlib.suppress(OSError):
            os.unlink(qmp_socket)


def json_names(directory: Path) -> list[str]:
    """What podman 4.x would load as machines: every top-level *.json."""
    return sorted(entry.name for entry in directory.iterdir() if entry.name.endswith(".json"))


def journal_files(box: Sandbox) -> list[Path]:
    directory = box.state_dir / "journals"
    return sorted(directory.glob("*.json")) if directory.exists() else []


def read_journal(box: Sandbox) -> dict[str, Any] | None:
    files = journal_files(box)
    assert len(files) <= 1, f"more than one journal: {files}"
    return json.loads(files[0].read_bytes()) if files else None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
