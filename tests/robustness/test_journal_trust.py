"""The journal is checked before it is trusted, and it belongs to one machine.

A damaged journal (its copy of the original no longer matching its digest, bad JSON, fields of the
wrong type or missing, a directory or an unreadable file in its place) is refused by `revert` and
`convert` with the reason and what to do, and nothing is written; `list` and `inspect` still work
and show the other machines. A journal left by a machine that was removed and created again under
the same name is never applied to the new machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustness.harness import (
    LONG,
    CliResult,
    Sandbox,
    assert_clean_refusal,
    assert_success,
    diff_snapshots,
    invoke,
    needs_root,
    nobody,
    own_by,
    run_cli,
    snapshot,
)

FIXTURE = "podman-4.9-linux-amd64.json"
MACHINE, OTHER = "trusted", "bystander"
# 500 damaged journals take about 2 minutes here; 1500 (6 minutes) found nothing more.
EXAMPLES = 300 if LONG else 120
COUNTS: dict[str, int] = {}
FIELDS = [
    "machine",
    "config_path",
    "status",
    "original_b64",
    "original_sha256",
    "converted_sha256",
    "native_cmdline",
    "native_image_path",
    "created",
    "options",
    "timestamp",
    "schema",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Converted:
    """One converted machine beside a native bystander; each example restores its files."""

    def __init__(self, box: Sandbox, disk: Path) -> None:
        self.box = box
        self.config = box.install(FIXTURE, name=MACHINE)
        box.install(FIXTURE, name=OTHER)
        assert_success(invoke(box, "convert", MACHINE, "--image", str(disk)))
        [self.journal] = (box.state_dir / "journals").glob("*.json")
        self.journal_bytes = self.journal.read_bytes()
        self.record: dict[str, Any] = json.loads(self.journal_bytes)
        self.config_bytes = self.config.read_bytes()
        self.saved = {
            item["path"]: Path(item["path"]).read_bytes()
            for item in self.record["created"]
            if os.path.isfile(item["path"])
        }

    def reset(self, journal: Callable[[Path], object]) -> None:
        for path, data in self.saved.items():
            if not os.path.isfile(path):
                Path(path).write_bytes(data)
        self.config.write_bytes(self.config_bytes)
        if self.journal.is_dir() and not self.journal.is_symlink():
            shutil.rmtree(self.journal)
        else:
            self.journal.unlink(missing_ok=True)
        journal(self.journal)

    def state(self) -> Any:
        return snapshot(self.box.root, ignore=(self.box.cache_dir,))


@pytest.fixture
def converted(box: Sandbox, aarch64_disk: Path) -> Iterator[Converted]:
    yield Converted(box, aarch64_disk)


def _write(record: dict[str, Any]) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(json.dumps(record).encode())


@st.composite
def damaged_records(draw: st.DrawFn, record: dict[str, Any]) -> tuple[str, Callable[[Path], object]]:
    damaged = json.loads(json.dumps(record))
    kind = draw(
        st.sampled_from(
            [
                "other original",
                "edited original",
                "wrong type",
                "missing",
                "bad created",
                "bad json",
                "consistent but not a config",
            ]
        )
    )
    original = base64.b64decode(record["original_b64"])
    if kind == "other original":
        # A journal whose copy of the original is valid base64 of other bytes: the digest tells.
        data = draw(st.sampled_from([original[: len(original) // 2], original + b" ", b"{", b""]) | st.binary())
        damaged["original_b64"] = _b64(data)
    elif kind == "edited original":
        position = draw(st.integers(0, len(record["original_b64"]) - 1))
        text = record["original_b64"]
        replacement = draw(st.sampled_from("AZaz09+/=!é"))
        damaged["original_b64"] = text[:position] + replacement + text[position + 1 :]
        if damaged["original_b64"] == text:
            damaged["original_sha256"] = "0" * 64
    elif kind == "wrong type":
        field = draw(st.sampled_from(FIELDS))
        value = draw(JSON_VALUES.filter(lambda v: type(v) is not type(record[field])))
        damaged[field] = value
        kind = f"wrong type: {field}={value!r}"
    elif kind == "missing":
        damaged.pop(draw(st.sampled_from([f for f in FIELDS if f not in ("options", "timestamp")])))
    elif kind == "bad created":
        index = draw(st.integers(0, len(record["created"]) - 1))
        key = draw(st.sampled_from(["role", "path", "sha256", "detail", None]))
        item = damaged["created"][index]
        if key is None:
            damaged["created"][index] = draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict)))
        elif key in ("role", "path"):
            item[key] = draw(st.sampled_from(["", "bogus", "relative/path", 7, None]))
        elif key == "detail":
            item[key] = draw(st.sampled_from([7, ["x"], {"a": 1}, None]))
        else:
            item[key] = draw(st.sampled_from([7, ["x"], {"a": 1}, "0" * 63]) | st.text(min_size=1, max_size=6))
    elif kind == "bad json":
        raw = json.dumps(record).encode()
        cut = draw(st.integers(0, len(raw) - 1))
        return kind, lambda path: path.write_bytes(raw[:cut])
    else:
        # Digest recomputed to match: still not the machine's config, so still refused.
        data = draw(st.sampled_from([b"{", b"[]", b'{"Name": "trusted"}', b"null", b'{"CmdLine": 3}']))
        damaged["original_b64"], damaged["original_sha256"] = _b64(data), _sha(data)
    return kind, _write(damaged)


def _check_refused(converted: Converted, result: CliResult) -> None:
    assert_clean_refusal(result, "journal")
    assert result.stderr.count("\n") >= 1


def _check_list_shows_everyone(converted: Converted) -> None:
    listing = invoke(converted.box, "list", "--json")
    assert listing.crashed is None and listing.exit_code == 0, listing.output
    names = {row["name"] for row in json.loads(listing.stdout)}
    assert {MACHINE, OTHER} <= names, listing.output
    inspected = invoke(converted.box, "inspect", MACHINE)
    assert inspected.crashed is None and "Traceback" not in inspected.output
    assert inspected.exit_code in (0, 1) and "internal error" not in inspected.output, inspected.output


def test_a_damaged_journal_is_refused_and_nothing_is_written(converted: Converted) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(damage=damaged_records(converted.record))
    def check(damage: tuple[str, Callable[[Path], object]]) -> None:
        kind, write = damage
        COUNTS[kind.split(":")[0]] = COUNTS.get(kind.split(":")[0], 0) + 1
        converted.reset(write)
        before = converted.state()
        for command in (["revert", MACHINE], ["revert", MACHINE, "--delete-disk"], ["convert", MACHINE]):
            result = invoke(converted.box, *command)
            _check_refused(converted, result)
            assert not diff_snapshots(before, converted.state(), strict=True), (kind, command, result.output)
        _check_list_shows_everyone(converted)

    check()
    print(f"damaged journals: {sum(COUNTS.values())} cases {dict(sorted(COUNTS.items()))}")


def _directory(path: Path) -> None:
    path.mkdir()


def _dangling_loop(path: Path) -> None:
    path.symlink_to(path.name)


@pytest.mark.parametrize("make", [_directory, _dangling_loop], ids=["directory", "symlink-loop"])
def test_a_journal_that_is_not_a_file_is_refused(converted: Converted, make: Callable[[Path], object]) -> None:
    converted.reset(make)
    before = converted.state()
    for command in (["revert", MACHINE], ["convert", MACHINE]):
        result = invoke(converted.box, *command)
        _check_refused(converted, result)
        assert str(converted.journal) in result.stderr
        assert not diff_snapshots(before, converted.state(), strict=True)
    _check_list_shows_everyone(converted)
    doctor = invoke(converted.box, "doctor")
    assert doctor.crashed is None and "Traceback" not in doctor.output and "internal error" not in doctor.output


@needs_root
def test_an_unreadable_journal_is_refused_as_its_owner(converted: Converted) -> None:
    """Root reads mode 0000 files, so this runs as `nobody` in a sandbox nobody owns."""
    user = nobody()
    converted.reset(lambda path: path.write_bytes(converted.journal_bytes))
    own_by(converted.box.root, user)
    converted.journal.chmod(0o000)
    before = converted.state()
    for command in (["revert", MACHINE], ["convert", MACHINE]):
        result = run_cli(converted.box, *command, as_user=user)
        assert_clean_refusal(result, "journal", "permission denied")
        assert not diff_snapshots(before, converted.state(), strict=True)
    listing = run_cli(converted.box, "list", "--json", as_user=user)
    assert listing.exit_code == 0, listing.output
    assert {MACHINE, OTHER} <= {row["name"] for row in json.loads(listing.stdout)}
