"""`cleanup` and `revert --delete-disk` delete only what podman-emu made, never a file a current
machine config names, and nothing outside podman's machine dirs and podman-emu's own dirs, even
when a path in the config or the journal holds `..` or passes through a symlink."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from robustness.harness import (
    Sandbox,
    assert_success,
    diff_snapshots,
    image_path_of,
    invoke,
    snapshot,
)

FIXTURE = "podman-4.9-linux-amd64.json"


def _podman_rm(box: Sandbox, name: str) -> None:
    """What podman 4.x `machine rm` deletes: the config and the ImagePath it names."""
    config = box.config(name)
    Path(image_path_of(json.loads(config.read_bytes()))).unlink(missing_ok=True)
    config.unlink()


def test_cleanup_keeps_a_disk_another_machine_uses(box: Sandbox, aarch64_disk: Path) -> None:
    """Two machines inited from one --image-path share their ImagePath (podman 4.3.1)."""
    box.install(FIXTURE, name="first")
    second = box.install(FIXTURE, name="second")
    shared = Path(image_path_of(json.loads(second.read_bytes())))
    assert_success(invoke(box, "convert", "first", "--image", str(aarch64_disk)))
    _podman_rm(box, "first")
    assert_success(invoke(box, "cleanup", "first"))
    assert shared.exists(), "cleanup deleted the disk of machine 'second'"
    assert not list(shared.parent.glob("first_*"))


def test_delete_disk_keeps_a_disk_another_config_names(box: Sandbox, aarch64_disk: Path) -> None:
    config = box.install(FIXTURE, name="first")
    assert_success(invoke(box, "convert", "first", "--image", str(aarch64_disk)))
    disk = Path(image_path_of(json.loads(config.read_bytes())))
    copy = box.config("copy")
    copy.write_bytes(config.read_bytes().replace(b'"Name": "first"', b'"Name": "copy"'))
    result = invoke(box, "revert", "first", "--delete-disk")
    assert_success(result)
    assert disk.exists(), "revert --delete-disk deleted a disk machine 'copy' names"
    assert str(disk) in result.output


def _outside(box: Sandbox) -> Path:
    outside = box.root / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"not podman-emu's")
    return outside


@pytest.mark.parametrize("route", ["dotdot", "symlink"])
def test_no_file_is_created_or_deleted_outside_the_machine_dirs(box: Sandbox, aarch64_disk: Path, route: str) -> None:
    outside = _outside(box)
    config = box.install(FIXTURE, name="m")
    native = image_path_of(json.loads(config.read_bytes()))
    data_dir = Path(native).parent
    if route == "dotdot":
        depth = len(data_dir.relative_to(box.root).parts)
        odd = str(data_dir / ("../" * depth) / "outside" / "native.qcow2")
    else:
        (data_dir / "elsewhere").symlink_to(outside)
        odd = str(data_dir / "elsewhere" / "native.qcow2")
    shutil.copyfile(native, outside / "native.qcow2")
    config.write_bytes(config.read_bytes().replace(json.dumps(native).encode(), json.dumps(odd).encode()))
    before = snapshot(outside)
    result = invoke(box, "convert", "m", "--image", str(aarch64_disk))
    assert not diff_snapshots(before, snapshot(outside)), result.output
    if result.exit_code == 0:
        [journal] = (box.state_dir / "journals").glob("*.json")
        record = json.loads(journal.read_bytes())
        for item in record["created"]:
            if item["role"] == "vars":
                # A journal edited (or damaged) to name a file outside: never deleted either.
                item["path"] = str(
                    data_dir / ("../" * len(data_dir.relative_to(box.root).parts)) / "outside" / "victim"
                )
        journal.write_text(json.dumps(record))
        assert_success(invoke(box, "revert", "m", "--delete-disk"))
        assert not diff_snapshots(before, snapshot(outside)), "revert deleted outside podman's dirs"
        _podman_rm(box, "m")  # podman itself deletes the ImagePath it names, wherever it is
        before = snapshot(outside)
        invoke(box, "cleanup", "m")
        assert not diff_snapshots(before, snapshot(outside)), "cleanup deleted outside podman's dirs"
    assert os.path.exists(outside / "victim")
