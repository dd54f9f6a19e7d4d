"""The one atomic writer, private directories and the locks."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from podman_emu import fsutil
from podman_emu.errors import ImageError, MachineBusy, UnsafeDirectory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_temp_name_is_a_dot_file_with_the_marker_and_never_json(tmp_path: Path) -> None:
    temp = fsutil.temp_name(tmp_path / "m.json")
    assert temp.parent == tmp_path
    assert temp.name.startswith(".") and fsutil.TEMP_MARKER in temp.name
    assert not temp.name.endswith(".json")
    assert fsutil.temp_name(tmp_path / "m.json") == temp  # the same on every call in a process


def test_a_rewrite_keeps_mode_and_content_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_bytes(b"old")
    target.chmod(0o640)
    fsutil.atomic_write(target, b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o640
    assert os.listdir(tmp_path) == ["m.json"]


def test_a_new_file_gets_podmans_mode_or_the_one_asked_for(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)
    try:
        fsutil.atomic_write(tmp_path / "new.json", b"x")
        fsutil.atomic_write(tmp_path / "private", b"x", mode=0o600)
    finally:
        os.umask(old_umask)
    assert mode(tmp_path / "new.json") == fsutil.NEW_FILE_MODE
    assert mode(tmp_path / "private") == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="keeping another owner needs root")
def test_as_root_a_rewrite_keeps_the_owner(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_bytes(b"old")
    os.chown(target, 12345, 23456)
    fsutil.atomic_write(target, b"new")
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (12345, 23456)


def test_a_failure_while_writing_leaves_the_target_and_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), fsutil.replace_atomically(target) as output:
        output.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.json"]


def test_a_refusal_right_before_the_rename_leaves_the_target(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    target.write_bytes(b"old")

    def changed() -> None:
        raise MachineBusy("changed meanwhile")

    with pytest.raises(MachineBusy):
        fsutil.atomic_write(target, b"new", before_rename=changed)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["m.json"]


def test_a_link_planted_at_the_temp_name_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    fsutil.temp_name(target).symlink_to(victim)
    fsutil.atomic_write(target, b"new")
    assert victim.read_bytes() == b"keep me"
    assert target.read_bytes() == b"new" and not target.is_symlink()


def test_private_dir_creates_0700_whatever_the_umask_and_keeps_an_existing_dirs_mode(tmp_path: Path) -> None:
    old_umask = os.umask(0o000)
    try:
        made = fsutil.private_dir(tmp_path / "missing" / "parents" / "state")
    finally:
        os.umask(old_umask)
    assert mode(made) == 0o700
    assert mode(tmp_path / "missing") == 0o700 and mode(tmp_path / "missing" / "parents") == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    fsutil.private_dir(loose)
    assert mode(loose) == 0o755


@pytest.mark.parametrize("bits", [0o1777, 0o777, 0o770])
def test_private_dir_refuses_a_dir_others_can_write_into(tmp_path: Path, bits: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(bits)
    with pytest.raises(UnsafeDirectory, match="other users"):
        fsutil.private_dir(shared)
    with pytest.raises(UnsafeDirectory):
        fsutil.private_dir(shared / "journals", root=shared)
    assert mode(shared) == bits and not (shared / "journals").exists()
    fsutil.write_cache(shared / "cache.json", b"{}")  # a cache there is skipped, not an error
    assert not (shared / "cache.json").exists() and fsutil.read_cache(shared / "cache.json") is None


def test_private_dir_leaves_a_parent_that_existed_as_it_was(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    fsutil.private_dir(shared / "podman-emu")
    assert mode(shared) == 0o755


def test_write_private_and_an_unwritable_cache(tmp_path: Path) -> None:
    fsutil.write_private(tmp_path / "state" / "journal.json", b"{}")
    assert mode(tmp_path / "state" / "journal.json") == 0o600
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    fsutil.write_cache(blocker / "cache.json", b"{}")  # best effort: no exception


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
{take}
print("held", flush=True)
time.sleep(30)
"""


def hold(path: Path, take: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK.format(take=take), str(path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_podmans_fcntl_lock_is_waited_for_then_refused(tmp_path: Path) -> None:
    lock = tmp_path / "m.lock"
    holder = hold(lock, "fcntl.lockf(fd, fcntl.LOCK_EX)")
    try:
        started = time.monotonic()
        with (
            pytest.raises(MachineBusy, match="locked by another process"),
            fsutil.locked(lock, create=False, what="machine 'm'", wait_s=0.5),
        ):
            pass
        assert 0.5 <= time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    with fsutil.locked(lock, create=False, what="machine 'm'", wait_s=0.5):
        pass  # free again once the holder is gone


def test_a_flock_says_once_that_it_waits_and_raises_the_callers_error(tmp_path: Path) -> None:
    lock = tmp_path / "image.lock"
    holder = hold(lock, "fcntl.flock(fd, fcntl.LOCK_EX)")
    heard: list[str] = []
    try:
        with (
            pytest.raises(ImageError, match="the download"),
            fsutil.flocked(
                lock, what="the download", wait_s=0.3, create=True, error=ImageError, hint="wait", on_wait=heard.append
            ),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert len(heard) == 1 and "waiting up to" in heard[0]


def test_a_directory_flock_excludes_another_holder_in_this_process(tmp_path: Path) -> None:
    with fsutil.flocked(tmp_path, what="the journal dir"):
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)


def test_stale_temp_files_are_found_by_their_marker(tmp_path: Path) -> None:
    left = fsutil.temp_name(tmp_path / "m.json")
    left.write_bytes(b"")
    (tmp_path / "m.json").write_bytes(b"{}")
    assert fsutil.stale_temp_files(tmp_path) == [left]
    assert fsutil.stale_temp_files(tmp_path / "absent") == []
    assert fsutil.remove_quietly(left) and not fsutil.remove_quietly(left)
