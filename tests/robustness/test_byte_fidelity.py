"""Byte fidelity: podman's file comes back exactly, whatever its paths and layout.

For every fixture (podman 3.4 to 4.9, V1 and 4.1+ layouts, real podman 4.3.1 files, podman 5.x
qemu configs in their one-line format, one written by the real podman 5.4.2), in a home
with an ordinary name and in one whose path has spaces, commas, `&`, `<`, `>` and non-ASCII
letters, with and without a trailing newline:
- parse -> serialise gives the same bytes (and agrees with an independent Go-style encoder);
- convert writes podman's own format, and revert gives back the very same bytes;
- a file someone reformatted (2-space indent, \\u escapes, CRLF, reordered keys) still
  reverts byte-identically;
- the real podman 4.3.1 loads what podman-emu wrote, and after podman rewrites it (`machine
  list` fills LastUp), revert keeps podman's change and writes podman's format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from podman_emu.podman.document import parse_document
from podman_emu.qemu.argv import iter_options, split_suboptions
from robustness.harness import (
    LONG,
    PODMAN,
    Sandbox,
    assert_success,
    base_env,
    fixture_files,
    invoke,
    manifest,
    needs_root,
    nobody,
    own_by,
    podman_bytes,
    read_journal,
    run_podman,
)
from testing.fixtures import runs_aarch64

ODD_HOME = "Zoë Ünïcødé & <co>, ltd"
HOMES = {"plain": "home", "odd": ODD_HOME}
NEWLINE = {entry["file"]: entry["trailing_newline"] for entry in manifest()}
LAYOUT = {entry["file"]: entry["layout"] for entry in manifest()}
# podman 5's json.Marshal never ends a file with a newline: that variant is a user's edit,
# which the reformatted-file test covers.
NEWLINE_VARIANTS = {
    fixture: (newline,) if LAYOUT[fixture] == "v5" else (newline, not newline) for fixture, newline in NEWLINE.items()
}


def go_encoding(fixture: str, content: object, newline: bool) -> bytes:
    """The bytes the podman that wrote `fixture` would write for `content`."""
    return podman_bytes(content, trailing_newline=newline, one_line=LAYOUT[fixture] == "v5")


@pytest.fixture
def homes(warm: Sandbox) -> Iterator[dict[str, Sandbox]]:
    made = {}
    for label, home_name in HOMES.items():
        made[label] = Sandbox.create(home_name=home_name)
        made[label].seed_cache(warm)
    try:
        yield made
    finally:
        for box in made.values():
            box.remove()


def _with_newline(data: bytes, newline: bool) -> bytes:
    stripped = data.rstrip(b"\n")
    return stripped + b"\n" if newline else stripped


@pytest.mark.parametrize("fixture", fixture_files())
def test_parse_then_serialise_is_identical(homes: dict[str, Sandbox], fixture: str) -> None:
    for box in homes.values():
        for newline in NEWLINE_VARIANTS[fixture]:
            data = _with_newline(_fixture(box, fixture), newline)
            document = parse_document(box.config("m"), data)
            assert document.render(document.content) == data
            assert document.is_podman_formatted
            # An encoder written from Go's rules agrees, so the check above is not circular.
            assert go_encoding(fixture, json.loads(data), newline) == data


def _fixture(box: Sandbox, fixture: str) -> bytes:
    from robustness.harness import FIXTURES

    data = box.relocate((FIXTURES / fixture).read_bytes())
    # The odd home must really be in the file, escaped the Go way.
    if box.home_name == ODD_HOME:
        assert b"\\u0026 \\u003cco\\u003e, ltd" in data
        assert "Zoë Ünïcødé".encode() in data
    return data


def convert_revert(box: Sandbox, fixture: str, data: bytes, disk: Path) -> list[str]:
    """Convert and revert `data` as machine "m"; returns the qemu command the converted machine
    runs with (podman 5: the one podman-emu's wrapper runs, as `inspect` shows it)."""
    config = box.install(fixture, name="m", data=data)
    data = config.read_bytes()  # as installed: renamed to "m", format untouched
    assert parse_document(config, data).is_podman_formatted
    assert_success(invoke(box, "convert", "m", "--image", str(disk)))
    converted = config.read_bytes()
    # podman's own format: re-encoding the parsed file the Go way gives the same bytes, and the
    # trailing newline (4.5+) or its absence (3.4-4.4, 5.x) is kept.
    assert go_encoding(fixture, json.loads(converted), data.endswith(b"\n")) == converted
    inspected = invoke(box, "inspect", "m", "--json")
    assert_success(inspected)
    argv: list[str] = json.loads(inspected.stdout)["cmdline"]
    assert json.loads(converted).get("CmdLine", argv) == argv
    assert_success(invoke(box, "revert", "m", "--delete-disk"))
    assert config.read_bytes() == data, "revert is not byte-identical"
    assert read_journal(box) is None
    return argv


# Fast run: every fixture in the odd home with its own newline, a few with the other one; the
# long run adds the plain home and every newline variant.
CASES = [
    (fixture, home, newline)
    for fixture in fixture_files()
    for home in HOMES
    for newline in NEWLINE_VARIANTS[fixture]
    if LONG
    or (home == "odd" and newline == NEWLINE[fixture])
    or (home == "odd" and fixture in ("podman-3.4-linux-amd64.json", "podman-4.9-darwin-amd64.json"))
]


@pytest.mark.parametrize(("fixture", "home", "newline"), CASES)
def test_convert_then_revert_is_identical(
    homes: dict[str, Sandbox], aarch64_disk: Path, fixture: str, home: str, newline: bool
) -> None:
    box = homes[home]
    data = _with_newline(_fixture(box, fixture), newline)
    argv = convert_revert(box, fixture, data, aarch64_disk)
    # The paths podman-emu adds are escaped for qemu: read back with qemu's rules they are
    # exactly the files created beside the native disk.
    drives = [split_suboptions(o.value) for o in iter_options(argv) if o.name == "-drive" and o.value]
    files = [part.split("=", 1)[1] for parts in drives for part in parts if part.startswith("file=")]
    assert any(f.endswith("/m_ovmf_vars.fd") and f.startswith(str(box.home)) for f in files), files
    assert any(f.endswith("/m_aarch64.qcow2") and f.startswith(str(box.home)) for f in files), files


USER_EDITS = {
    "two-space indent": lambda c: json.dumps(c, indent=2, ensure_ascii=False).encode(),
    "ascii escapes": lambda c: json.dumps(c, indent=1).encode(),
    "CRLF line ends": lambda c: json.dumps(c, indent=1, ensure_ascii=False).replace("\n", "\r\n").encode(),
    "one line": lambda c: json.dumps(c, separators=(",", ":"), ensure_ascii=False).encode(),
    "keys reordered": lambda c: json.dumps(dict(sorted(c.items())), indent=1, ensure_ascii=False).encode() + b"\n",
    "tabs and spaces": lambda c: json.dumps(c, indent="\t", ensure_ascii=False).encode() + b"\n\n",
}


@pytest.mark.parametrize("edit", sorted(USER_EDITS))
@pytest.mark.parametrize(
    "fixture",
    ["podman-4.3-linux-amd64-odd-paths.json", "podman-4.0-darwin-amd64.json", "podman-5.4.2-linux-amd64-qemu.json"],
)
def test_a_reformatted_file_still_reverts_byte_identically(
    homes: dict[str, Sandbox], aarch64_disk: Path, fixture: str, edit: str
) -> None:
    """podman reads any valid JSON; podman-emu writes podman's format but keeps the user's
    original bytes in its journal, so nothing of theirs is lost."""
    box = homes["odd"]
    data = USER_EDITS[edit](json.loads(_fixture(box, fixture)))
    config = box.install(fixture, data=data)
    name = config.stem
    assert_success(invoke(box, "convert", name, "--image", str(aarch64_disk)))
    assert runs_aarch64(json.loads(config.read_bytes()))
    assert_success(invoke(box, "revert", name, "--delete-disk"))
    assert config.read_bytes() == data


@needs_root
@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
@pytest.mark.parametrize(
    "fixture",
    [f for f in fixture_files() if LAYOUT[f] == "v2"]
    if LONG
    else ["podman-4.3-linux-amd64.json", "podman-4.9-darwin-amd64.json"],
)
def test_real_podman_reads_the_converted_file_and_revert_keeps_its_rewrite(
    warm: Sandbox, aarch64_disk: Path, fixture: str
) -> None:
    """podman 4.3.1 (as a normal user) loads the converted file; its `machine list` then rewrites
    it (LastUp := Created when zero, 4.1-4.7); revert keeps that change, restores the native
    command line and image, and writes the bytes podman itself would write."""
    import subprocess

    user = nobody()
    box = Sandbox.create(home_name=ODD_HOME)
    try:
        box.seed_cache(warm)
        config = box.install(fixture, name="m")
        original = json.loads(config.read_bytes())
        assert_success(invoke(box, "convert", "m", "--image", str(aarch64_disk)))
        # podman's dirs go to the user; podman-emu's state stays root's, who reverts below (root
        # refuses a state dir another user could plant journals in).
        for directory in (box.home, box.runtime_dir, box.cwd):
            own_by(directory, user)
        converted = config.read_bytes()

        def podman(*args: str) -> subprocess.CompletedProcess[str]:
            return run_podman(box, *args, as_user=user, env=base_env(box))

        inspected = podman("inspect", "m")
        assert inspected.returncode == 0, inspected.stderr
        assert json.loads(inspected.stdout)[0]["Image"]["ImagePath"]["Path"].endswith("/m_aarch64.qcow2")
        assert config.read_bytes() == converted, "podman machine inspect rewrote the file"
        listed = podman("list", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rewritten = json.loads(config.read_bytes())
        assert rewritten["CmdLine"] == json.loads(converted)["CmdLine"]
        podman_wrote = config.read_bytes() != converted
        assert_success(invoke(box, "revert", "m", "--delete-disk"))
        reverted = config.read_bytes()
        # podman 4.3.1 rewrites from its own struct (it drops keys of later versions and adds the
        # ones it knows); revert must give exactly that, with the native command line and disk.
        expected = dict(rewritten, CmdLine=original["CmdLine"], ImagePath=original["ImagePath"])
        assert json.loads(reverted) == expected
        if podman_wrote:
            # In podman 4.3.1's format (MarshalIndent: no trailing newline).
            assert reverted == podman_bytes(expected, trailing_newline=False)
    finally:
        box.remove()
