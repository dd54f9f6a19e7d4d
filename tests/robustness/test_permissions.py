"""Permissions and ownership, and where podman-emu writes.

- The converted file keeps its mode and owner: as root on a file another uid owns, and as the
  owning user (`nobody` here) under any umask.
- podman-emu's journal and state are private: 0700 directories, 0600 files, whatever the umask
  and even when the directory already existed with looser bits.
- podman-emu writes nowhere but podman's machine dirs and its own state and cache dirs: every
  file-changing system call of real runs (strace -f, children such as qemu-img and the qemu
  probes included) is checked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from robustness.harness import (
    LONG,
    Sandbox,
    assert_success,
    base_env,
    invoke,
    needs_root,
    nobody,
    own_by,
    podman_emu_argv,
    read_journal,
    run_cli,
)
from testing.users import run_as

FIXTURE = "podman-4.9-linux-amd64.json"
STRACE = shutil.which("strace")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@needs_root
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664], ids=["0600", "0640", "0664"])
def test_root_keeps_group_and_mode(box: Sandbox, aarch64_disk: Path, mode: int) -> None:
    config = box.install(FIXTURE, name="m")
    os.chown(config, 0, 23456)
    config.chmod(mode)
    assert_success(invoke(box, "convert", "m", "--image", str(aarch64_disk)))
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 23456, mode)
    assert json.loads(config.read_bytes())["CmdLine"][0].endswith("qemu-system-aarch64")
    assert_success(invoke(box, "revert", "m"))
    info = config.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 23456, mode)


@needs_root
def test_root_refuses_another_users_machine(box: Sandbox, aarch64_disk: Path) -> None:
    """The new disk, vars file and journal would belong to root: the owner could neither start
    nor revert the machine."""
    config = box.install(FIXTURE, name="m")
    os.chown(config, 12345, 23456)
    before = config.read_bytes()
    result = invoke(box, "convert", "m", "--image", str(aarch64_disk))
    assert result.exit_code == 2 and "belongs to uid 12345" in result.output, result.output
    assert config.read_bytes() == before and config.stat().st_uid == 12345


def _private(box: Sandbox, existing: tuple[Path, ...] = ()) -> list[str]:
    """Everything in podman-emu's state and cache dirs that others could read, but for the
    directories that `existing` names (made before podman-emu ran, so their modes are not its)."""
    loose = []
    for root in (box.state_dir, box.cache_dir):
        for path in [root, *root.rglob("*")] if root.exists() else []:
            if path.is_symlink() or path in existing:
                continue
            # The gvproxy launcher is run by podman: executable, still the owner's alone.
            wanted = 0o700 if path.is_dir() or path.parent.name == "bin" else 0o600
            # The console log is qemu's file (it creates it with its own umask); it sits in a
            # private directory, which is what keeps it private.
            if path.suffix == ".log" or path.name.endswith(".log.1"):
                continue
            if path.parent == box.cache_dir and path.is_file():
                continue  # the qemu probe cache: facts about the host, not about a machine
            if _mode(path) & ~wanted:
                loose.append(f"{path} {oct(_mode(path))}")
    return loose


# Every mode under every umask in the long run; one umask per mode in the fast run.
OWNER_CASES = [
    (mode, umask)
    for index, mode in enumerate((0o600, 0o640, 0o664))
    for umask_index, umask in enumerate((0o000, 0o022, 0o077))
    if LONG or index == umask_index
]


@needs_root
@pytest.mark.parametrize(("mode", "umask"), OWNER_CASES, ids=[f"{m:04o}-umask-{u:03o}" for m, u in OWNER_CASES])
def test_the_owner_keeps_mode_and_podman_emu_stays_private(
    warm: Sandbox, aarch64_disk: Path, umask: int, mode: int
) -> None:
    user = nobody()
    box = Sandbox.create()
    try:
        config = box.install(FIXTURE, name="m")
        config.chmod(mode)
        existing: tuple[Path, ...] = ()
        if umask == 0o022:
            # A state dir the user made earlier with ordinary bits keeps them: no one else can
            # write into it, and its mode is the user's choice.
            existing = (box.state_dir, box.state_dir / "journals")
            (box.state_dir / "journals").mkdir(parents=True)
            os.chmod(box.state_dir, 0o755)
            os.chmod(box.state_dir / "journals", 0o755)
        dir_mode = 0o755 if existing else 0o700
        own_by(box.root, user)

        def run(*args: str) -> None:
            completed = run_as(user, podman_emu_argv(*args), env=base_env(box), cwd=box.cwd, timeout=120, umask=umask)
            assert completed.returncode == 0, completed.stderr

        run("convert", "m", "--image", str(aarch64_disk))
        info = config.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, user.pw_gid, mode)
        journal = box.state_dir / "journals"
        assert _mode(box.state_dir) == dir_mode and _mode(journal) == dir_mode
        journal_files = list(journal.glob("*.json"))
        assert len(journal_files) == 1 and _mode(journal_files[0]) == 0o600
        assert not _private(box, existing), _private(box, existing)
        # Everything podman-emu made belongs to the user who ran it.
        for path in [*box.state_dir.rglob("*"), *box.data_dir.iterdir()]:
            assert path.lstat().st_uid == user.pw_uid, path
        run("revert", "m")
        info = config.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, user.pw_gid, mode)
        assert not _private(box, existing), _private(box, existing)
    finally:
        box.remove()


# --------------------------------------------------------------------------------------------
# Where podman-emu writes

# System calls that create, change or remove a file system entry or its contents.
WRITING_CALLS = (
    "open,openat,openat2,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,"
    "chmod,fchmod,fchmodat,chown,fchown,lchown,fchownat,truncate,ftruncate,link,linkat,symlink,"
    "symlinkat,utime,utimes,utimensat,futimesat,mknod,mknodat,write,pwrite64,writev,pwritev,"
    "sendfile,copy_file_range,fallocate"
)
_CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s*(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")
_FD_PATH = re.compile(r"^-?\w+<(.*)>$")


def _split_args(text: str) -> list[str]:
    """strace's argument list, split on top-level commas (quotes and <...> respected)."""
    args, current, depth, quoted, escaped = [], [], 0, False, False
    for char in text:
        if quoted:
            current.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "<[{":
            depth += 1
        elif char in ">]}":
            depth -= 1
        elif char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    args.append("".join(current).strip())
    return args


def _unquote(arg: str) -> str:
    text = arg[1:-1] if arg.startswith('"') else arg
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1").decode("utf-8")


def _fd(arg: str) -> str | None:
    match = _FD_PATH.match(arg)
    return match.group(1) if match else None


def written_paths(trace: str) -> list[tuple[str, str]]:
    """(system call, absolute path) of every successful call that changed the file system."""
    found = []
    for line in trace.splitlines():
        match = _CALL.match(line)
        if not match or match.group(4) in ("?",) or int(match.group(4)) < 0:
            continue
        call, args = match.group(2), _split_args(match.group(3))
        paths: list[str] = []
        if call in ("open", "creat"):
            if call == "creat" or re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND", args[1]):
                paths.append(_unquote(args[0]))
        elif call in ("openat", "openat2"):
            if re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND", args[2]):
                paths.append(_join(args[0], args[1]))
        elif call in ("renameat", "renameat2", "linkat"):
            paths += [_join(args[0], args[1]), _join(args[2], args[3])]
        elif call in ("unlinkat", "mkdirat", "fchmodat", "fchownat", "utimensat", "mknodat", "futimesat"):
            if args[1] != "NULL":
                paths.append(_join(args[0], args[1]))
            elif _fd(args[0]):
                paths.append(_fd(args[0]) or "")
        elif call in ("rename", "link", "symlink"):
            paths += [_unquote(args[0]) if call != "symlink" else "", _unquote(args[1])]
        elif call == "symlinkat":
            paths.append(_join(args[1], args[2]))
        elif call in ("unlink", "mkdir", "rmdir", "chmod", "chown", "lchown", "truncate", "utime", "utimes", "mknod"):
            paths.append(_unquote(args[0]))
        elif call in ("sendfile", "copy_file_range"):
            target = _fd(args[0]) if call == "sendfile" else _fd(args[2])
            paths.append(target or "")
        else:  # fd-based: fchmod, fchown, ftruncate, fallocate, write, pwrite64, writev, pwritev
            paths.append(_fd(args[0]) or "")
        found += [(call, path) for path in paths if path.startswith("/")]
    return found


def _join(dirfd: str, name: str) -> str:
    name = _unquote(name)
    if name.startswith("/"):
        return name
    base = _fd(dirfd)
    return os.path.join(base, name) if base else name


# Device files a process may open for writing without changing anything on disk.
DEVICES = ("/dev/null", "/dev/tty", "/dev/pts/", "/dev/urandom", "/dev/random", "/dev/ptmx")


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_writes_only_in_podmans_machine_dirs_and_its_own(warm: Sandbox, aarch64_disk: Path) -> None:
    """A fresh sandbox (no state dir yet): every command, traced. The long run starts with a
    cold qemu probe cache, so the probes (several qemu runs) are traced too."""
    box = Sandbox.create()
    try:
        if not LONG:
            box.seed_cache(warm)
        box.install(FIXTURE, name="m")
        # containers.conf.d: the one place outside its own dirs where convert writes (the drop-in
        # that registers the gvproxy launcher); revert removes it again.
        dropins = box.home / ".config" / "containers" / "containers.conf.d"
        allowed = [box.config_dir, box.data_dir, box.state_dir, box.cache_dir, dropins]
        trace_file = box.root.parent / (box.root.name + ".strace")
        everything: list[tuple[str, str]] = []
        commands = [
            ["list"],
            ["inspect", "m"],
            ["doctor", "m"],
            ["convert", "m", "--image", str(aarch64_disk)],
            ["status", "m"],
            ["logs", "m"],
            ["revert", "m", "--delete-disk"],
        ]
        if not LONG:  # the commands that write, and one that only reads
            commands = [command for command in commands if command[0] in ("list", "convert", "revert")]
        for command in commands:
            assert STRACE is not None
            strace = [STRACE, "-f", "-qq", "-y", "-s", "4096", "-e", f"trace={WRITING_CALLS}", "-o", str(trace_file)]
            completed = subprocess.run(
                [*strace, *podman_emu_argv(*command)],
                env=base_env(box),
                cwd=box.cwd,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert completed.returncode in (0, 1), completed.stderr
            if command[0] in ("convert", "revert"):
                assert completed.returncode == 0, completed.stderr
            trace = trace_file.read_text(errors="replace")
            trace_file.unlink()
            writes = written_paths(trace)
            everything += writes
            outside = sorted(
                {
                    f"{call} {path}"
                    for call, path in writes
                    if not any(path == str(d) or path.startswith(str(d) + "/") for d in allowed)
                    and not path.startswith(DEVICES)
                }
            )
            assert not outside, f"`podman-emu {' '.join(command)}` wrote outside its dirs: {outside}"
        # The trace did see the writes it should: the config, the journal, the staged disk.
        seen = {path for _, path in everything}
        assert str(box.config("m")) in seen
        assert any(path.startswith(str(box.state_dir / "journals")) for path in seen)
        assert any("m_aarch64.qcow2" in path for path in seen)
        assert any(path.startswith(str(dropins)) for path in seen)
        assert read_journal(box) is None and not dropins.exists()
    finally:
        box.remove()


def test_the_trace_parser_sees_writes_outside(tmp_path: Path) -> None:
    """The check above can fail: a write to a file outside the allowed dirs is reported."""
    if STRACE is None:
        pytest.skip("strace is not installed")
    target = tmp_path / "elsewhere dir" / "x,y.txt"
    target.parent.mkdir()
    trace_file = tmp_path / "trace"
    script = f"import os; open({str(target)!r}, 'w').write('x'); os.rename({str(target)!r}, {str(target)!r} + '.2')"
    subprocess.run(
        [STRACE, "-f", "-qq", "-y", "-e", f"trace={WRITING_CALLS}", "-o", str(trace_file), "python3", "-c", script],
        check=True,
        timeout=60,
    )
    paths = {path for _, path in written_paths(trace_file.read_text())}
    assert str(target) in paths and str(target) + ".2" in paths


def test_run_cli_as_nobody_is_really_nobody(box: Sandbox) -> None:
    """The non-root runs above are really another user (guards the permission tests)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    user = nobody()
    own_by(box.root, user)
    probe = box.cwd / "probe"
    result = run_cli(box, "list", as_user=user)
    assert result.exit_code == 0, result.output
    subprocess.run(["touch", str(probe)], check=True, user=user.pw_uid, group=user.pw_gid, timeout=30)
    assert probe.stat().st_uid == user.pw_uid
