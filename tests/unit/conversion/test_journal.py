"""The conversion journal: what it means for the config as it is now (pure), and its file."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from podman_emu.conversion import journal as journals
from podman_emu.conversion.artifacts import MachineKind, journal_path
from podman_emu.conversion.journal import CreatedFile, Journal, Status, emulation_status, settle_journal
from podman_emu.errors import ConversionStateError
from testing.podman_home import Sandbox

NATIVE_CMDLINE = ["/usr/bin/qemu-system-x86_64", "-m", "2048"]
ORIGINAL = json.dumps({"Name": "m", "CmdLine": NATIVE_CMDLINE, "ImagePath": "/disks/native.qcow2"}).encode()
CONVERTED, REWRITTEN = b'{"new": 1}', b'{"new": 1, "LastUp": "now"}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def journal_for(status: Status = "converting", config: str = "/home/u/.config/m.json") -> Journal:
    return Journal(
        machine="m",
        config_path=config,
        status=status,
        original_b64=base64.b64encode(ORIGINAL).decode(),
        original_sha256=sha(ORIGINAL),
        converted_sha256=sha(CONVERTED),
        native_cmdline=list(NATIVE_CMDLINE),
        native_image_path="/disks/native.qcow2",
        created=[CreatedFile("vars", "/disks/m_ovmf_vars.fd"), CreatedFile("disk", "/disks/m_aarch64.qcow2")],
    )


def test_a_converting_journal_whose_new_bytes_are_in_place_is_converted() -> None:
    settled = settle_journal(journal_for(), current_sha256=sha(CONVERTED), emulated=True)
    assert settled is not None and settled.status == "converted"


def test_a_converting_journal_whose_old_bytes_are_in_place_never_happened() -> None:
    assert settle_journal(journal_for(), current_sha256=sha(ORIGINAL), emulated=False) is None


def test_a_converting_journal_after_podman_rewrote_the_file_follows_the_command_line() -> None:
    # `podman machine list` rewrote the converted file after the crash: still emulated.
    settled = settle_journal(journal_for(), current_sha256=sha(REWRITTEN), emulated=True)
    assert settled is not None and settled.status == "converted"
    assert settle_journal(journal_for(), current_sha256=sha(REWRITTEN), emulated=False) is None


@pytest.mark.parametrize("status", ["converted", "reverting"])
def test_a_settled_journal_passes_through(status: Status) -> None:
    journal = journal_for(status)
    assert settle_journal(journal, current_sha256=sha(ORIGINAL), emulated=False) is journal
    assert settle_journal(None, current_sha256=sha(ORIGINAL), emulated=False) is None


@pytest.mark.parametrize(
    ("status", "current", "kind", "expected"),
    [
        (None, ORIGINAL, "native", "native"),
        (None, ORIGINAL, "native-arm64", "native-arm64"),
        (None, CONVERTED, "emulated", "emulated-unmanaged"),
        ("converting", ORIGINAL, "native", "native (interrupted convert)"),
        ("converting", CONVERTED, "emulated", "emulated"),
        ("converting", REWRITTEN, "native", "native (interrupted convert)"),
        ("converted", CONVERTED, "emulated", "emulated"),
        ("converted", REWRITTEN, "native", "native (podman rewrote it; stale journal)"),
        ("reverting", CONVERTED, "emulated", "emulated (interrupted revert)"),
        ("reverting", ORIGINAL, "native", "native (interrupted revert)"),
    ],
)
def test_emulation_status(status: Status | None, current: bytes, kind: MachineKind, expected: str) -> None:
    journal = journal_for(status) if status is not None else None
    assert emulation_status(journal, current_sha256=sha(current), kind=kind) == expected


def test_a_journal_round_trips_privately_keyed_by_the_config_path(podman_home: Sandbox) -> None:
    config = podman_home.config("m")
    written = journal_for("converted", str(config))
    path = journals.save_journal(written)
    assert path == journal_path(config) and path.parent == podman_home.state_dir / "journals"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = journals.load_journal(config)
    assert loaded == written and loaded.original_bytes == ORIGINAL
    assert loaded.file("disk") == CreatedFile("disk", "/disks/m_aarch64.qcow2")
    journals.delete_journal(config)
    assert journals.load_journal(config) is None


@pytest.mark.parametrize("content", [b"{", b'{"schema": 2}', b"[]", b'{"schema": 1, "machine": "m"}'])
def test_an_unreadable_journal_is_refused_with_what_to_do(podman_home: Sandbox, content: bytes) -> None:
    config = podman_home.config("m")
    path = journal_path(config)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(ConversionStateError, match=r"journal .* is damaged") as raised:
        journals.load_journal(config)
    assert raised.value.hint is not None and "doctor" in raised.value.hint
    [(listed, error)] = journals.all_journals()
    assert listed == path and isinstance(error, ConversionStateError)


def test_no_journal_dir_means_no_journals(podman_home: Sandbox) -> None:
    assert journals.all_journals() == []
    assert not (podman_home.state_dir / "journals").exists()


def test_the_journal_is_not_written_in_podmans_dir(podman_home: Sandbox) -> None:
    path = journals.save_journal(journal_for("converted", str(podman_home.config("m"))))
    assert podman_home.config_dir not in path.parents and Path(podman_home.state_dir) in path.parents


# ORIGINAL has no Created (a pre-4.1 layout); podman 4.3's migration stamps the time of its first
# rewrite, so the same machine comes back with a Created the journal never saw.
MIGRATED = {"Name": "m", "Created": "2026-12-03T11:15:00.101289554Z", "ImagePath": "/disks/native.qcow2"}


@pytest.mark.parametrize(
    ("current", "same_machine"),
    [
        (MIGRATED, True),
        ({**MIGRATED, "ImagePath": "/disks/m_aarch64.qcow2"}, True),
        ({**MIGRATED, "Created": journals.ZERO_CREATED}, True),
        ({**MIGRATED, "ImagePath": "/disks/another.qcow2"}, False),
    ],
)
def test_a_journal_of_a_config_without_created_is_told_apart_by_its_disk(
    current: dict[str, str], same_machine: bool
) -> None:
    data = json.dumps(current).encode()
    reason = journals.stranger_reason(journal_for("converted"), current, sha(data))
    assert (reason is None) is same_machine, reason


def test_a_journal_of_a_config_with_created_is_told_apart_by_it() -> None:
    stamped = json.dumps({**json.loads(ORIGINAL), "Created": "2026-12-01T08:00:00Z"}).encode()
    journal = replace(
        journal_for("converted"), original_b64=base64.b64encode(stamped).decode(), original_sha256=sha(stamped)
    )
    later = {**MIGRATED, "Created": "2026-12-02T09:00:00Z"}
    reason = journals.stranger_reason(journal, later, sha(json.dumps(later).encode()))
    assert reason is not None and "2026-12-01T08:00:00Z" in reason
    same = {**later, "Created": "2026-12-01T08:00:00Z"}
    assert journals.stranger_reason(journal, same, sha(json.dumps(same).encode())) is None
