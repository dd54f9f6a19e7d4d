"""The real-guest builder's cheap parts: its cache key and the busybox tarball's layout. The build
itself needs root and minutes; the e2e suite runs it."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

import testing.realguest
from testing.realguest import cache_key, packages, write_busybox_tar

SOURCES = Path(testing.realguest.__file__).parent


def copy_sources(dest: Path) -> Path:
    dest.mkdir()
    for source in SOURCES.glob("*.py"):
        shutil.copyfile(source, dest / source.name)
    return dest


def test_the_key_is_a_function_of_the_sources(tmp_path: Path) -> None:
    copy = copy_sources(tmp_path / "src")
    assert cache_key(copy) == cache_key(SOURCES)
    guestfiles = copy / "guestfiles.py"
    guestfiles.write_text(guestfiles.read_text() + "\n# one more line\n")
    assert cache_key(copy) != cache_key(SOURCES)


def test_a_new_source_file_changes_the_key(tmp_path: Path) -> None:
    copy = copy_sources(tmp_path / "src")
    (copy / "extra.py").write_text("")
    assert cache_key(copy) != cache_key(SOURCES)


def test_the_package_list_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = cache_key()
    monkeypatch.setattr(packages, "GUEST_PACKAGES", (*packages.GUEST_PACKAGES, "strace"))
    assert cache_key() != before


def test_the_busybox_tarball_is_a_rootfs_podman_can_import(tmp_path: Path) -> None:
    binary = tmp_path / "busybox"
    binary.write_bytes(b"\x7fELF fake busybox")
    tar_path = write_busybox_tar(binary, tmp_path / "busybox-arm64.tar")
    with tarfile.open(tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {
            "bin",
            "bin/busybox",
            *(f"bin/{a}" for a in ("sh", "uname", "cat", "wget", "echo", "ls")),
        }
        assert members["bin"].isdir()
        busybox = members["bin/busybox"]
        assert busybox.isfile() and busybox.mode == 0o755
        extracted = tar.extractfile(busybox)
        assert extracted is not None and extracted.read() == binary.read_bytes()
        for name, member in members.items():
            assert (member.uid, member.gid) == (0, 0)
            if name not in ("bin", "bin/busybox"):
                assert member.issym() and member.linkname == "busybox"


def test_the_busybox_tarball_is_reproducible(tmp_path: Path) -> None:
    binary = tmp_path / "busybox"
    binary.write_bytes(b"same bytes")
    first = write_busybox_tar(binary, tmp_path / "a.tar").read_bytes()
    second = write_busybox_tar(binary, tmp_path / "b.tar").read_bytes()
    assert first == second
