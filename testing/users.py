"""Other users: `nobody` for permission cases, and throwaway users made with `useradd -m` for the
real podman (`podman machine` refuses to run as root). Everything here needs root."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from testing.podman_home import PodmanLayout, Sandbox

PODMAN = shutil.which("podman")
USER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def nobody() -> pwd.struct_passwd:
    return pwd.getpwnam("nobody")


def own_by(root: Path, user: pwd.struct_passwd) -> None:
    """Give `root` and everything under it to `user` (a sandbox that user works in)."""
    for path in [root, *root.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)


def run_as(
    user: pwd.struct_passwd,
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: float,
    umask: int = -1,
) -> subprocess.CompletedProcess[str]:
    """`argv` as `user` (uid, gid, no supplementary groups), started directly: no runuser or sudo
    in between, so timings of the child are its own."""
    return subprocess.run(
        list(argv),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        user=user.pw_uid,
        group=user.pw_gid,
        extra_groups=[],
        umask=umask,
        check=False,
    )


def run_podman(
    box: Sandbox, *args: str, as_user: pwd.struct_passwd, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The installed podman's `podman machine ARGS` in `box`, as `as_user`."""
    assert PODMAN is not None, "podman is not installed"
    return run_as(as_user, [PODMAN, "machine", *args], env=env, cwd=box.cwd, timeout=timeout)


def login_env(name: str, home: Path, runtime_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """What a login gives the user, minus logind: podman needs XDG_RUNTIME_DIR set by hand here."""
    return {
        "HOME": str(home),
        "USER": name,
        "LOGNAME": name,
        "PATH": USER_PATH,
        "XDG_RUNTIME_DIR": str(runtime_dir),
        "LANG": "C.UTF-8",
        **(extra or {}),
    }


@dataclass
class ThrowawayUser:
    """A user made for one run (`useradd -m`), with the runtime dir logind would have made."""

    account: pwd.struct_passwd
    runtime_dir: Path

    @classmethod
    def create(cls, prefix: str = "pemu") -> ThrowawayUser:
        name = f"{prefix}{secrets.token_hex(4)}"
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True, timeout=60)
        account = pwd.getpwnam(name)
        runtime_dir = Path(f"/run/user/{account.pw_uid}")
        # No logind here to make the runtime dir, and podman machine needs one.
        runtime_dir.mkdir(parents=True, exist_ok=True)
        os.chown(runtime_dir, account.pw_uid, account.pw_gid)
        runtime_dir.chmod(0o700)
        return cls(account, runtime_dir)

    @property
    def name(self) -> str:
        return self.account.pw_name

    @property
    def home(self) -> Path:
        return Path(self.account.pw_dir)

    @property
    def layout(self) -> PodmanLayout:
        return PodmanLayout(self.home)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return login_env(self.name, self.home, self.runtime_dir, extra)

    def run(
        self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_as(self.account, argv, env=self.env(env), cwd=self.home, timeout=timeout)

    def remove(self) -> None:
        """userdel -r, and the runtime dir; the caller ends the user's processes first."""
        subprocess.run(["userdel", "-r", "-f", self.name], capture_output=True, timeout=60, check=False)
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
