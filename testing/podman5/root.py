"""The Debian trixie amd64 root that runs podman 5.4.2, and sessions inside it as a user made for
the session.

Why a root: the host is Debian 12 (podman 4.3.1); podman 5.4.2 and qemu 10 need trixie's
userland. Why not plain chroot for the user's commands: rootless podman needs a user namespace,
and the kernel refuses CLONE_NEWUSER to a chrooted process ("cannot clone: Operation not
permitted"). So each user command gets a private mount namespace in which the root is
pivot_root'ed to `/`, then drops to the user with setpriv. Root-side setup (useradd, pip) uses
chroot.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit

from testing.fixtures import REPO
from testing.podman_user import (
    Result,
    kill_leftovers,
    kill_pid,
    pid_alive,
    proc_argv,
    proc_uid,
    read_pid_file,
    run_with_timeout,
)

from . import packages

DEFAULT_CACHE = Path("/var/cache/podman-emu-tests")
MANIFEST = ".podman5-root.json"
# Bump when the build steps below change in a way the package list does not show.
BUILD_REVISION = 1
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MMDEBSTRAP_TIMEOUT = 1800
OLD_ROOT = ".oldroot"
# Host CA bundle, for pip inside the root (this host may sit behind a TLS-inspecting proxy).
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# uids tried for the session user: none of them may have a host account or a running process,
# so that "every process of this uid" is exactly what the session started.
UID_RANGE = range(3100, 3200)


class RootError(RuntimeError):
    """Building or entering the root failed; the message names the command and its output."""


def _run(argv: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise RootError(f"{argv[0]} did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise RootError(f"{' '.join(argv)} failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def python_requirements() -> list[str]:
    """podman-emu's runtime dependencies (pyproject.toml) plus what installing it without build
    isolation needs."""
    project = tomlkit.parse((REPO / "pyproject.toml").read_text()).unwrap()
    build = project["build-system"]["requires"]
    return sorted(str(r) for r in [*project["project"]["dependencies"], *build])


def cache_key() -> str:
    digest = hashlib.sha256()
    material = {"revision": BUILD_REVISION, **packages.key_material(python_requirements())}
    digest.update(json.dumps(material, sort_keys=True).encode())
    return digest.hexdigest()


@dataclass
class Podman5Root:
    path: Path
    key: str
    cached: bool
    build_seconds: float
    phases: dict[str, float]
    versions: dict[str, str]

    def host_path(self, inside: str | Path) -> Path:
        """Where a path of the root is seen from the host."""
        return self.path / Path(inside).relative_to("/")

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "key": self.key,
            "cached": self.cached,
            "build_seconds": round(self.build_seconds, 1),
            "phases": {k: round(v, 1) for k, v in self.phases.items()},
            "versions": self.versions,
        }


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    with path.open("a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(target: Path, *, cached: bool) -> Podman5Root:
    data = json.loads((target / MANIFEST).read_text())
    return Podman5Root(
        path=target,
        key=data["key"],
        cached=cached,
        build_seconds=float(data["build_seconds"]),
        phases={k: float(v) for k, v in data["phases"].items()},
        versions=dict(data["versions"]),
    )


def build_root(cache_dir: Path = DEFAULT_CACHE, *, log: Callable[[str], None] | None = None) -> Podman5Root:
    """The root for this package list: from the cache, or built (root only; ~1-2 min cold)."""
    say = log or (lambda _msg: None)
    if os.geteuid() != 0:
        raise RootError("building the podman 5 root needs root (mmdebstrap, chroot)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    target = cache_dir / f"podman5-root-{key[:16]}"
    with _flock(cache_dir / ".podman5-root.lock"):
        if (target / MANIFEST).is_file():
            say(f"podman 5 root cached at {target}")
            return _load(target, cached=True)
        if shutil.which("mmdebstrap") is None:
            raise RootError("mmdebstrap is missing: apt-get install mmdebstrap")
        work = cache_dir / f".podman5-root-build-{os.getpid()}"
        _remove_tree(work)
        try:
            _build(work, key, say)
            _remove_tree(target)
            work.rename(target)
        finally:
            _remove_tree(work)
    return _load(target, cached=False)


def _remove_tree(path: Path) -> None:
    if not path.exists():
        return
    for mount in reversed(_mounts_under(path)):
        subprocess.run(["umount", "-l", mount], capture_output=True, check=False, timeout=60)
    shutil.rmtree(path, ignore_errors=True)


def _build(tree: Path, key: str, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    phases: dict[str, float] = {}
    t = time.monotonic()
    say(f"mmdebstrap {packages.SUITE} {packages.ARCH} into {tree} ...")
    _run(
        [
            "mmdebstrap",
            "--mode=root",
            "--format=directory",
            f"--arch={packages.ARCH}",
            "--variant=apt",
            '--aptopt=Acquire::Retries "3"',
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            f"--include={','.join(packages.ROOT_PACKAGES)}",
            packages.SUITE,
            str(tree),
            packages.MIRROR,
        ],
        timeout=MMDEBSTRAP_TIMEOUT,
    )
    phases["mmdebstrap"] = time.monotonic() - t
    say(f"mmdebstrap done in {phases['mmdebstrap']:.1f} s")

    helper_dir = tree / packages.HELPER_DIR
    helper_dir.mkdir(parents=True, exist_ok=True)
    for name, target in packages.HELPER_LINKS.items():
        if not (tree / target.lstrip("/")).is_file():
            raise RootError(f"{target} is missing in the root")
        (helper_dir / name).symlink_to(target)
    (tree / OLD_ROOT).mkdir(exist_ok=True)

    t = time.monotonic()
    say("venv with podman-emu's dependencies ...")
    with _chroot_mounts(tree):
        shutil.copyfile("/etc/resolv.conf", tree / "etc/resolv.conf")
        shutil.copyfile(HOST_CA, tree / "tmp/host-ca.pem")
        _chroot(tree, ["python3", "-m", "venv", f"/{packages.VENV}"], timeout=300)
        _chroot(
            tree,
            [f"/{packages.VENV}/bin/pip", "install", "-q", *python_requirements()],
            timeout=900,
            env={"PIP_CERT": "/tmp/host-ca.pem", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )
        (tree / "tmp/host-ca.pem").unlink()
        versions = {
            "podman": _chroot(tree, ["podman", "--version"]).split()[-1],
            "qemu-system-aarch64": _chroot(tree, ["qemu-system-aarch64", "--version"]).split()[3],
            "gvproxy": _dpkg_version(tree, "gvproxy"),
            "virtiofsd": _dpkg_version(tree, "virtiofsd"),
            "python3": _chroot(tree, ["python3", "--version"]).split()[-1],
        }
    phases["venv"] = time.monotonic() - t
    manifest = {
        "key": key,
        "build_seconds": round(time.monotonic() - started, 1),
        "phases": {k: round(v, 1) for k, v in phases.items()},
        "versions": versions,
        "packages": list(packages.ROOT_PACKAGES),
    }
    (tree / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    say(f"podman 5 root built in {manifest['build_seconds']} s: {versions}")


def _dpkg_version(tree: Path, package: str) -> str:
    return _run(["dpkg-query", f"--admindir={tree / 'var/lib/dpkg'}", "-W", "-f=${Version}", package]).strip()


def _chroot(tree: Path, argv: Sequence[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    base = {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", **(env or {})}
    return _run(["chroot", str(tree), "env", "-i", *(f"{k}={v}" for k, v in base.items()), *argv], timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Mounts.


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, in mount order (unmount in reverse)."""
    prefix = str(path.resolve())
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


class _Mounts:
    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.made: list[Path] = []

    def mount(self, source: str, inside: str, *options: str) -> None:
        point = self.tree / inside.lstrip("/")
        point.mkdir(parents=True, exist_ok=True)
        _run(["mount", *options, source, str(point)])
        self.made.append(point)

    def bind_ro(self, host: Path, inside: str) -> None:
        self.mount(str(host), inside, "--bind")
        _run(["mount", "-o", "remount,bind,ro", str(self.tree / inside.lstrip("/"))])

    def unmount_all(self) -> list[str]:
        problems = []
        for point in reversed(self.made):
            proc = subprocess.run(["umount", "-R", str(point)], capture_output=True, text=True, check=False, timeout=60)
            if proc.returncode != 0:
                lazy = subprocess.run(["umount", "-R", "-l", str(point)], capture_output=True, text=True, check=False)
                problems.append(f"{point}: {proc.stderr.strip()} (lazy unmount: rc {lazy.returncode})")
        self.made.clear()
        left = _mounts_under(self.tree)
        if left:
            problems.append(f"still mounted: {left}")
        return problems


@contextlib.contextmanager
def _chroot_mounts(tree: Path) -> Iterator[_Mounts]:
    mounts = _Mounts(tree)
    try:
        mounts.mount("/proc", "/proc", "--bind")
        mounts.mount("/dev", "/dev", "--bind")
        mounts.mount("/dev/pts", "/dev/pts", "--bind")
        mounts.mount("tmpfs", "/dev/shm", "-t", "tmpfs", "-o", "mode=1777")
        mounts.mount("tmpfs", "/tmp", "-t", "tmpfs", "-o", "mode=1777")
        yield mounts
    finally:
        problems = mounts.unmount_all()
        if problems:
            raise RootError("unmounting failed: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# A session: the root mounted, a user, podman-emu installed, commands with timeouts.

# Runs as root in a private mount namespace: the root becomes `/`, the host's tree is detached,
# then the user command is exec'ed (through setpriv) from the user's home.
PIVOT_SCRIPT = f"""set -e
R=$1; WD=$2; shift 2
mount --rbind "$R" "$R"
cd "$R"
pivot_root . {OLD_ROOT}
cd /
umount -l /{OLD_ROOT}
mount --make-rshared /
cd "$WD"
exec "$@"
"""


@dataclass
class RootSession:
    """A user inside the mounted root. Paths given to commands are the root's own; `host()`
    turns them into host paths."""

    root: Podman5Root
    name: str
    uid: int
    gid: int
    log_dir: Path
    machines: list[str] = field(default_factory=list)

    @property
    def home(self) -> str:
        return f"/home/{self.name}"

    @property
    def runtime_dir(self) -> str:
        return f"/run/user/{self.uid}"

    @property
    def venv(self) -> str:
        return f"/{packages.VENV}"

    def host(self, inside: str | Path) -> Path:
        return self.root.host_path(inside)

    @property
    def config_dir(self) -> Path:
        """podman 5's qemu machine configs, as the host sees them."""
        return self.host(f"{self.home}/.config/containers/podman/machine/qemu")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "HOME": self.home,
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin",
            "XDG_RUNTIME_DIR": self.runtime_dir,
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PODMAN_IGNORE_CGROUPSV1_WARNING": "1",
            **(extra or {}),
        }

    def wrapped(self, argv: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        """The host command line that runs argv as the user inside the root."""
        return [
            "unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", PIVOT_SCRIPT, "pivot", str(self.root.path), self.home,
            "setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
            "env", "-i", *(f"{k}={v}" for k, v in self.env(env).items()), *argv,
        ]  # fmt: skip

    def spawn(self, argv: Sequence[str], *, output: Path) -> subprocess.Popen[bytes]:
        """argv as the user, in the background (its own session), stdout+stderr to `output`
        on the host. End it with testing.podman_user.stop_process_group()."""
        with output.open("wb") as fh:
            return subprocess.Popen(
                self.wrapped(argv),
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Result:
        """argv as the user in the root, in its own process group; on timeout the group is killed."""
        result = run_with_timeout(self.wrapped(argv, env), timeout=timeout)
        result.argv = list(argv)
        self._log(result)
        return result

    def run_as_root(self, argv: Sequence[str], *, timeout: float = 120) -> Result:
        env = [f"{k}={v}" for k, v in {"PATH": ROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8"}.items()]
        result = run_with_timeout(["chroot", str(self.root.path), "env", "-i", *env, *argv], timeout=timeout)
        result.argv = ["(root)", *argv]
        self._log(result)
        return result

    def _log(self, result: Result) -> None:
        with (self.log_dir / "commands.log").open("a") as fh:
            fh.write(result.describe() + "\n\n")

    def podman(self, *args: str, timeout: float = 60) -> Result:
        return self.run(["podman", *args], timeout=timeout)

    def podman_emu(self, *args: str, timeout: float = 120) -> Result:
        return self.run(["podman-emu", *args], timeout=timeout, env={"NO_COLOR": "1"})

    def machine_json(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.config_dir / f"{name}.json").read_text())
        return data

    def pid_files(self) -> list[Path]:
        """qemu's (`<rt>/podman/NAME_vm.pid`, from each machine's config) and gvproxy's pid files."""
        found = [self.host(f"{self.runtime_dir}/podman/gvproxy.pid")]
        for config in self.config_dir.glob("*.json") if self.config_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                found.append(self.host(json.loads(config.read_text())["QEMUHypervisor"]["QEMUPidPath"]["Path"]))
        return found

    def machine_pids(self) -> dict[str, int]:
        pids = {}
        for path in self.pid_files():
            pid = read_pid_file(path)
            if pid is not None and pid_alive(pid) and proc_uid(pid) == self.uid:
                pids[path.name] = pid
        return pids

    def own_pids(self) -> list[int]:
        return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and proc_uid(int(e.name)) == self.uid]

    def processes(self, comm_prefix: str) -> dict[int, list[str]]:
        """The user's processes whose name starts with comm_prefix, with their argv."""
        found = {}
        for pid in self.own_pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip().startswith(comm_prefix):
                    found[pid] = proc_argv(pid)
        return found

    def kill_everything(self) -> list[str]:
        """qemu and gvproxy by their pid files, then every process of the session's uid (podman's
        pause process, virtiofsd, ssh): the uid was chosen unused, so they are all ours."""
        notes = []
        for name, pid in self.machine_pids().items():
            if kill_pid(pid, uid=self.uid):
                notes.append(f"killed {name} pid {pid}")
        return notes + kill_leftovers(self.own_pids, self.uid, argv_chars=160)


def _free_uid(tree: Path) -> int:
    used_in_root = {int(line.split(":")[2]) for line in (tree / "etc/passwd").read_text().splitlines() if line}
    running = {proc_uid(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit()}
    for uid in UID_RANGE:
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        if uid not in used_in_root and uid not in running:
            return uid
    raise RootError(f"no free uid in {UID_RANGE}")


def _install_podman_emu(session: RootSession) -> None:
    """Copy the checkout's package (not its build products) into the root's tmpfs /tmp, and
    pip-install it into the root's venv: what a user's `pip install` gives, with the root's
    python 3.13. Installed without build isolation or index (setuptools is in the venv)."""
    src = session.host("/tmp/podman-emu-src")
    shutil.copytree(REPO / "podman_emu", src / "podman_emu", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    pip = [f"{session.venv}/bin/pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    result = session.run_as_root([*pip, "--force-reinstall", "/tmp/podman-emu-src"], timeout=300)
    if result.returncode != 0:
        raise RootError("pip install of podman-emu into the root failed\n" + result.describe())
    shutil.rmtree(src, ignore_errors=True)


@contextlib.contextmanager
def enter(
    root: Podman5Root,
    log_dir: Path,
    *,
    name: str = "p5user",
    binds: Sequence[Path] = (),
    install_podman_emu: bool = True,
    log: Callable[[str], None] | None = None,
) -> Iterator[RootSession]:
    """Mount the root, make `name` inside it (an unused uid), install podman-emu; on exit kill
    what the user still runs, remove the user and podman-emu again, unmount everything (also
    after a failure). The checkout (REPO) and every path in `binds` are visible read-only at
    their own paths. One session per root at a time (a lock)."""
    say = log or (lambda _msg: None)
    tree = root.path
    log_dir.mkdir(parents=True, exist_ok=True)
    with _flock(tree.parent / f".{tree.name}.session.lock"):
        stale = _mounts_under(tree)
        if stale:
            # A session killed without its cleanup: nothing else may use this root now (lock).
            say(f"unmounting a previous session's mounts: {stale}")
            for point in reversed(stale):
                subprocess.run(["umount", "-R", "-l", point], capture_output=True, check=False)
        mounts = _Mounts(tree)
        session: RootSession | None = None
        try:
            mounts.mount("/proc", "/proc", "--bind")
            mounts.mount("/sys", "/sys", "--rbind")
            _run(["mount", "--make-rslave", str(tree / "sys")])
            mounts.mount("/dev", "/dev", "--bind")
            mounts.mount("/dev/pts", "/dev/pts", "--bind")
            mounts.mount("tmpfs", "/dev/shm", "-t", "tmpfs", "-o", "mode=1777")
            mounts.mount("tmpfs", "/run", "-t", "tmpfs", "-o", "mode=0755")
            mounts.mount("tmpfs", "/tmp", "-t", "tmpfs", "-o", "mode=1777")
            for path in (REPO, *binds):
                mounts.bind_ro(path, str(path))
            uid = _free_uid(tree)
            if _has_user(tree, name):  # left by a session that was killed
                _chroot(tree, ["userdel", "-r", "-f", name], timeout=60)
            _chroot(tree, ["useradd", "-m", "-U", "-u", str(uid), "-s", "/bin/bash", name], timeout=60)
            for sub in ("etc/subuid", "etc/subgid"):
                lines = [ln for ln in (tree / sub).read_text().splitlines() if not ln.startswith(f"{name}:")]
                (tree / sub).write_text("\n".join([*lines, f"{name}:200000:65536"]) + "\n")
            runtime = tree / f"run/user/{uid}"
            runtime.mkdir(parents=True)
            os.chown(runtime, uid, uid)
            runtime.chmod(0o700)
            session = RootSession(root=root, name=name, uid=uid, gid=uid, log_dir=log_dir)
            if install_podman_emu:
                _install_podman_emu(session)
            say(f"[podman5 root] {tree} user {name} uid {uid}, logs in {log_dir}")
            yield session
        finally:
            notes: list[str] = []
            if session is not None:
                notes += session.kill_everything()
                with contextlib.suppress(OSError):
                    gvlog = session.host(f"{session.runtime_dir}/podman/gvproxy.log")
                    if gvlog.is_file():
                        shutil.copy2(gvlog, log_dir / "gvproxy.log")
                if install_podman_emu:
                    subprocess.run(
                        ["chroot", str(tree), f"{session.venv}/bin/pip", "uninstall", "-q", "-y", "podman-emu"],
                        capture_output=True,
                        check=False,
                        timeout=120,
                    )
            if _has_user(tree, name):
                subprocess.run(["chroot", str(tree), "userdel", "-r", "-f", name], capture_output=True, check=False)
            for sub in ("etc/subuid", "etc/subgid"):
                with contextlib.suppress(OSError):
                    lines = [ln for ln in (tree / sub).read_text().splitlines() if not ln.startswith(f"{name}:")]
                    (tree / sub).write_text("".join(f"{ln}\n" for ln in lines))
            notes += mounts.unmount_all()
            if notes:
                (log_dir / "teardown.log").write_text("\n".join(notes) + "\n")
                say("[podman5 teardown] " + "; ".join(notes))


def _has_user(tree: Path, name: str) -> bool:
    return any(line.startswith(f"{name}:") for line in (tree / "etc/passwd").read_text().splitlines())
