"""Hostile input: mutated configs, garbage, odd files. Never a traceback, never a changed byte.

Every case runs `convert`, `revert`, `inspect` and `list` against one machine file. A refusal
must exit 1 with "Error: ..." naming the problem, and leave the whole sandbox (podman's dirs,
podman-emu's state and cache, the working directory) exactly as it was, down to inodes and
mtimes. A document podman accepts must convert and revert back to the very same bytes.

Most cases run in-process through the real click command (fast); a sample runs through real
`python -m podman_emu` processes, and unreadable files are tried as the user `nobody`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustness.harness import (
    LONG,
    TMPFS,
    CliResult,
    Sandbox,
    assert_clean_refusal,
    assert_success,
    diff_snapshots,
    invoke,
    long_run,
    manifest,
    needs_root,
    nobody,
    own_by,
    podman_bytes,
    read_journal,
    run_cli,
    snapshot,
)
from robustness.mutations import Base, Case, encode, invalid_case, not_json_case, valid_odd_case

MACHINE = "hostile"
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,  # each run explores afresh; failures print the reproducing example
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
}
# Examples per test: (fast run, long run). The long figures add up to more than 10 000 cases.
EXAMPLES = {
    "invalid": (250, 8000),
    "not_json": (80, 1600),
    "valid": (20, 500),
    "subprocess": (2, 40),
}
COUNTS: dict[str, int] = {}


def examples(kind: str) -> int:
    return EXAMPLES[kind][1 if LONG else 0]


class Arena:
    """One sandbox reused by every example of a test: each example resets the machine file and
    podman-emu's state, keeping the warm qemu probe cache."""

    def __init__(self, warm: Sandbox, disk: Path) -> None:
        self.box = Sandbox.create(base=TMPFS)
        self.box.seed_cache(warm)
        self.disk = disk
        self.bases = []
        for entry in manifest():
            data = self.box.relocate((Path(__file__).parents[2] / "fixtures" / "configs" / entry["file"]).read_bytes())
            self.bases.append(Base(entry["file"], data, json.loads(data), entry["layout"], entry["trailing_newline"]))
        self.native_disks = {
            Path(b.content["ImagePath"] if isinstance(b.content["ImagePath"], str) else b.content["ImagePath"]["Path"])
            for b in self.bases
        }

    @property
    def config(self) -> Path:
        return self.box.config(MACHINE)

    def reset(self, setup: Callable[[Path], object]) -> None:
        for directory in (self.box.config_dir, self.box.data_dir, self.box.cwd):
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
        shutil.rmtree(self.box.state_dir, ignore_errors=True)
        # A case that failed after an accepted convert leaves the start-helper drop-in, which
        # every later convert would rightly refuse to overwrite.
        shutil.rmtree(self.box.home / ".config" / "containers" / "containers.conf.d", ignore_errors=True)
        for disk in self.native_disks:
            disk.parent.mkdir(parents=True, exist_ok=True)
            disk.write_bytes(b"native disk stand-in\n")
        setup(self.config)


@pytest.fixture
def arena(warm: Sandbox, aarch64_disk: Path) -> Iterator[Arena]:
    made = Arena(warm, aarch64_disk)
    try:
        yield made
    finally:
        made.box.remove()


def _named(result: CliResult, names: tuple[str, ...], config: Path) -> None:
    """The refusal names the problem: the file, and (when known) one of the keys at fault."""
    assert_clean_refusal(result, exit_codes=(1,))
    if names:
        assert any(name in result.stderr for name in names), f"none of {names} named in:\n{result.stderr}"
    else:
        assert str(config) in result.stderr or config.name in result.stderr, result.stderr


def check_case(arena: Arena, case: Case, run: Callable[..., CliResult] = invoke) -> str:
    """Run every command on `case` and hold podman-emu to the case's expectation."""
    arena.reset(lambda path: path.write_bytes(case.data))
    return check_prepared(arena, case.label, case.expect, case.names, run, case.data)


def check_prepared(
    arena: Arena,
    label: str,
    expect: str,
    names: tuple[str, ...],
    run: Callable[..., CliResult] = invoke,
    data: bytes | None = None,
) -> str:
    box = arena.box
    roots = (box.root,)
    before = snapshot(*roots, ignore=(box.cache_dir,))
    try:
        read_only = (["inspect", MACHINE], ["list"], ["list", "--json"], ["status", MACHINE], ["logs", MACHINE])
        for command in (*read_only, ["revert", MACHINE]):
            result = run(box, *command)
            assert result.crashed is None and "Traceback" not in result.output, result.output
            assert "unexpected internal error" not in result.output, result.output
            if command[0] == "list":
                assert result.exit_code == 0, result.output
            elif result.exit_code != 0:
                assert_clean_refusal(result)
            changes = diff_snapshots(
                before, snapshot(*roots, ignore=(box.cache_dir,)), strict=True, own_dirs=box.state_dir
            )
            assert not changes, f"`{' '.join(command)}` changed files: {changes}"
        result = run(box, "convert", MACHINE, "--image", str(arena.disk))
        if result.exit_code != 0 or expect == "refuse":
            assert expect != "accept", f"a valid document was refused:\n{result.output}"
            _named(result, names, arena.config)
            changes = diff_snapshots(
                before, snapshot(*roots, ignore=(box.cache_dir,)), strict=True, own_dirs=box.state_dir
            )
            assert not changes, f"refused convert changed files: {changes}"
            return "refused"
        assert_success(result)
        # Accepted: the config is converted, and revert must give back exactly these bytes.
        journal = read_journal(box)
        assert journal is not None and journal["status"] == "converted"
        assert_success(run(box, "revert", MACHINE, "--delete-disk"))
        if data is not None:
            assert arena.config.read_bytes() == data, "revert is not byte-identical"
        podman_dirs = (box.config_dir, box.data_dir, box.cwd)
        changes = diff_snapshots(
            {p: e for p, e in before.items() if p.startswith(tuple(map(str, podman_dirs)))},
            snapshot(*podman_dirs),
        )
        assert not changes, f"convert + revert left changes: {changes}"
        return "accepted"
    except AssertionError as exc:
        raise AssertionError(f"case {label!r} (expect {expect}): {exc}") from None


def _count(kind: str, outcome: str) -> None:
    COUNTS[kind] = COUNTS.get(kind, 0) + 1
    COUNTS[f"{kind}:{outcome}"] = COUNTS.get(f"{kind}:{outcome}", 0) + 1


def _bases(arena: Arena) -> list[Base]:
    return arena.bases


def test_invalid_configs_are_refused_untouched(arena: Arena) -> None:
    @settings(max_examples=examples("invalid"), **SETTINGS)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(invalid_case(arena.bases))
        _count("invalid", check_case(arena, case))

    run()
    print(f"invalid configs: {COUNTS}")
    assert COUNTS["invalid"] >= examples("invalid")


def test_not_json_is_refused_untouched(arena: Arena) -> None:
    @settings(max_examples=examples("not_json"), **SETTINGS)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(not_json_case(arena.bases))
        _count("not_json", check_case(arena, case))

    run()
    assert COUNTS["not_json"] >= examples("not_json")


def test_odd_but_valid_configs_convert_and_revert_exactly(arena: Arena) -> None:
    @settings(max_examples=examples("valid"), **SETTINGS)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(valid_odd_case(arena.bases))
        _count("valid", check_case(arena, case))

    run()
    assert COUNTS["valid"] >= examples("valid")
    assert COUNTS.get("valid:refused", 0) == 0


def test_hostile_cases_through_real_processes(arena: Arena) -> None:
    """The same properties with `python -m podman_emu` as a user runs it."""

    @settings(max_examples=examples("subprocess"), **SETTINGS)
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(st.one_of(invalid_case(arena.bases), not_json_case(arena.bases)))
        _count("subprocess", check_case(arena, case, run=run_cli))

    run()
    assert COUNTS["subprocess"] >= examples("subprocess")


# --------------------------------------------------------------------------------------------
# Files that are not files


def _fixture_bytes(arena: Arena) -> bytes:
    return next(b for b in arena.bases if b.fixture == "podman-4.9-linux-amd64.json").data


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    # A bound unix socket file (the listener is closed: connect would be refused).
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))


def _symlink_cycle(path: Path) -> None:
    path.symlink_to("other.lnk")
    (path.parent / "other.lnk").symlink_to(path.name)


SPECIAL_FILES: dict[str, tuple[Callable[[Path], object], tuple[str, ...]]] = {
    "directory": (lambda p: p.mkdir(), ("not a regular file",)),
    "symlink to itself": (lambda p: p.symlink_to(p.name), ("loop",)),
    "symlink cycle": (_symlink_cycle, ("loop",)),
    "dangling symlink": (lambda p: p.symlink_to("/nonexistent/podman.json"), ("no machine config", "symbolic link")),
    "symlink to a directory": (lambda p: p.symlink_to("/"), ("not a regular file",)),
    "symlink to /dev/zero": (lambda p: p.symlink_to("/dev/zero"), ("not a regular file",)),
    "symlink to /dev/null": (lambda p: p.symlink_to("/dev/null"), ("not a regular file",)),
    "fifo": (_fifo, ("not a regular file",)),
    "unix socket": (_socket, ("cannot open", "not a regular file")),
    "empty file": (lambda p: p.write_bytes(b""), ("not valid JSON",)),
    "larger than 16 MiB": (
        lambda p: p.write_bytes(b'{"x": [' + b"0," * (8 * 1024 * 1024 + 1) + b"0]}"),
        ("16 MiB",),
    ),
}


@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES))
def test_special_files_are_refused_untouched(arena: Arena, kind: str) -> None:
    setup, names = SPECIAL_FILES[kind]
    arena.reset(setup)
    outcome = check_prepared(arena, kind, "refuse", names)
    assert outcome == "refused"


def test_a_symlinked_config_keeps_its_link(arena: Arena) -> None:
    """A link to a valid config elsewhere (dotfile managers do that) is converted and reverted
    where it points: the link stays a link, the real file gets the exact bytes, and no temp file
    is left beside either."""
    elsewhere = arena.box.root / "dotfiles" / "machine.json"
    original = _fixture_bytes(arena)

    def setup(path: Path) -> None:
        elsewhere.parent.mkdir(exist_ok=True)
        elsewhere.write_bytes(original)
        path.symlink_to(elsewhere)

    arena.reset(setup)
    assert check_prepared(arena, "symlink to a valid config", "accept", (), data=None) == "accepted"
    assert arena.config.is_symlink() and os.readlink(arena.config) == str(elsewhere)
    assert elsewhere.read_bytes() == original
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["machine.json"]


@pytest.mark.parametrize("kind", sorted(SPECIAL_FILES) if LONG else ["fifo"])
def test_special_files_through_real_processes(arena: Arena, kind: str) -> None:
    setup, names = SPECIAL_FILES[kind]
    arena.reset(setup)
    assert check_prepared(arena, kind, "refuse", names, run=run_cli) == "refused"


@needs_root
@pytest.mark.parametrize("owner", ["root", "nobody"])
def test_unreadable_config_as_nobody(warm: Sandbox, aarch64_disk: Path, owner: str) -> None:
    """Root reads every file, so the permission case runs as `nobody`, in a home nobody owns,
    on a config nobody cannot read (owned by root 0600, or by nobody with mode 0000)."""
    user = nobody()
    box = Sandbox.create()
    try:
        box.seed_cache(warm)
        config = box.install("podman-4.9-linux-amd64.json", name=MACHINE)
        own_by(box.root, user)
        if owner == "root":
            os.chown(config, 0, 0)
            config.chmod(0o600)
        else:
            config.chmod(0o000)
        before = snapshot(box.root, ignore=(box.cache_dir,))
        for command in (["convert", MACHINE, "--image", str(aarch64_disk)], ["revert", MACHINE], ["inspect", MACHINE]):
            result = run_cli(box, *command, as_user=user)
            assert_clean_refusal(result, "permission denied")
            assert str(config) in result.stderr
            assert not diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True)
        listing = run_cli(box, "list", as_user=user)
        assert listing.exit_code == 0 and "permission denied" in listing.output, listing.output
        assert not diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True)
    finally:
        box.remove()


# Sizes: the long run uses the full figures (the core diffs and patches
# the whole argv, which takes seconds at 200 000 elements); the fast run a fiftieth.
_SCALE = 1 if LONG else 50


@pytest.mark.parametrize(
    ("label", "build"),
    [
        ("1M-element unknown array", lambda c: c.__setitem__("Blob", list(range(1_000_000 // _SCALE)))),
        ("200k CmdLine elements", lambda c: c["CmdLine"].extend(["-device", "virtio-rng-pci"] * (100_000 // _SCALE))),
        ("20k mounts", lambda c: c.__setitem__("Mounts", (c["Mounts"] or []) * (20_000 // _SCALE))),
    ],
)
def test_huge_arrays_within_the_size_limit_round_trip(
    arena: Arena, label: str, build: Callable[[dict[str, Any]], object]
) -> None:
    base = next(b for b in arena.bases if b.fixture == "podman-4.9-linux-amd64.json")
    content = json.loads(base.data)
    build(content)
    data = podman_bytes(content, trailing_newline=True)
    assert len(data) < 16 * 1024 * 1024
    arena.reset(lambda path: path.write_bytes(data))
    assert check_prepared(arena, label, "accept", (), data=data) == "accepted"


def _edit(fixture: str, change: Callable[[dict[str, Any]], object]) -> Callable[[Arena], bytes]:
    def build(arena: Arena) -> bytes:
        base = next(b for b in arena.bases if b.fixture == fixture)
        content = json.loads(base.data)
        change(content)
        return encode(content, base.trailing_newline)

    return build


def _append_text(arena: Arena, fixture: str, text: bytes) -> bytes:
    data = next(b for b in arena.bases if b.fixture == fixture).data
    return data.rstrip().removesuffix(b"}").rstrip() + b",\n " + text + b"\n}"


V2, V1 = "podman-4.9-linux-amd64.json", "podman-3.4-linux-amd64.json"
# Each of these was found by the property tests above and fixed in the core; they stay here as
# fixed cases so every run checks them, whatever hypothesis draws.
REGRESSIONS: dict[str, tuple[Callable[[Arena], bytes], tuple[str, ...]]] = {
    # crashed with UnicodeEncodeError while writing the journal
    "lone surrogate in CmdLine": (_edit(V2, lambda c: c["CmdLine"].extend(["-name", "\ud800"])), ("CmdLine",)),
    "lone surrogate in ImagePath": (
        _edit(V1, lambda c: c.__setitem__("ImagePath", c["ImagePath"] + "\udc80")),
        ("ImagePath",),
    ),
    # RecursionError in deepcopy / pydantic "Maximum serialization depth exceeded"
    "900 levels of nesting": (lambda a: _append_text(a, V2, b'"x": ' + b"[" * 900 + b"]" * 900), ("nested",)),
    # ValueError: embedded null byte
    "NUL in Name": (_edit(V2, lambda c: c.__setitem__("Name", "a\x00b")), ("Name",)),
    "NUL in ImagePath": (_edit(V2, lambda c: c["ImagePath"].__setitem__("Path", "/x\x00y/d.qcow2")), ("ImagePath",)),
    # wrote the vars file and the disk outside podman's data dir / into the current directory
    "Name escaping the data dir": (
        _edit(V2, lambda c: c.__setitem__("Name", "../../../../../../../../../tmp/x")),
        ("Name",),
    ),
    "relative ImagePath": (_edit(V1, lambda c: c.__setitem__("ImagePath", "disk.qcow2")), ("ImagePath",)),
    # accepted: podman reads the later spelling (the native argv), podman-emu edited the other one
    "CmdLine and cmdline": (_edit(V2, lambda c: c.__setitem__("cmdline", list(c["CmdLine"]))), ("cmdline",)),
    "ImagePath and IMAGEPATH": (_edit(V2, lambda c: c.__setitem__("IMAGEPATH", dict(c["ImagePath"]))), ("IMAGEPATH",)),
    # accepted although Go's decoder rejects these (uint64 / int overflow)
    "CPUs = 2**64": (_edit(V2, lambda c: c.__setitem__("CPUs", 2**64)), ("CPUs",)),
    "Port = 2**63": (_edit(V2, lambda c: c.__setitem__("Port", 2**63)), ("Port",)),
    "UID = -2**63 - 1": (_edit(V2, lambda c: c.__setitem__("UID", -(2**63) - 1)), ("UID",)),
    # list, inspect, status and doctor crashed with ArgvSyntaxError
    "stray element in CmdLine": (_edit(V2, lambda c: c["CmdLine"].insert(1, "foo")), ("CmdLine",)),
}


@pytest.mark.parametrize("label", sorted(REGRESSIONS))
def test_fuzzing_finds_stay_fixed(arena: Arena, label: str) -> None:
    build, names = REGRESSIONS[label]
    data = build(arena)
    arena.reset(lambda path: path.write_bytes(data))
    assert check_prepared(arena, label, "refuse", names, data=data) == "refused"
    # Nothing was written anywhere else on the machine either (the Name case aimed at /tmp).
    assert not Path("/tmp/x_ovmf_vars.fd").exists()


def test_refusals_are_detected_when_a_file_changes(arena: Arena) -> None:
    """The strict snapshot sees a rewrite with identical bytes (new inode): proof the
    "nothing changed" checks above can fail."""
    arena.reset(lambda path: path.write_bytes(_fixture_bytes(arena)))
    before = snapshot(arena.box.root)
    data = arena.config.read_bytes()
    arena.config.unlink()
    arena.config.write_bytes(data)
    assert diff_snapshots(before, snapshot(arena.box.root), strict=True)
    assert not diff_snapshots(before, snapshot(arena.box.root), strict=False)
    assert stat.S_ISREG(arena.config.lstat().st_mode)


@long_run
@pytest.mark.long
def test_case_total_reaches_ten_thousand() -> None:
    """Runs after the hypothesis tests above (file order): the issue's figure."""
    total = sum(COUNTS.get(kind, 0) for kind in EXAMPLES)
    print(f"hostile cases: {total} {COUNTS}")
    assert total >= 10_000
