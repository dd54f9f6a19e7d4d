"""A journal belongs to the one machine it was written for.

`podman machine rm NAME` + `podman machine init NAME` (the usual way to reset
podman-machine-default) leaves podman-emu's journal of the old machine behind. The new machine
is told apart (its `Created` time, or for layouts without one its disk), `revert` refuses to write
the old machine's state into it, `convert` names the stale record and the command that clears it,
and once `cleanup` cleared it the new machine converts and reverts to its own bytes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from robustness.harness import (
    Sandbox,
    assert_clean_refusal,
    assert_success,
    diff_snapshots,
    image_path_of,
    invoke,
    snapshot,
)

MACHINE = "podman-machine-default"
STATUSES = ["converted", "converting", "reverting"]
LAYOUTS = {"4.9 (Created)": "podman-4.9-linux-amd64.json", "3.4 (no Created)": "podman-3.4-linux-amd64.json"}


def _reinit(box: Sandbox, fixture: str, *, same_image: bool) -> Path:
    """What `podman machine rm` + `init` leave: the converted config and its disk gone, a fresh
    config of the same name (created now) and its disk in place."""
    config = box.config(MACHINE)
    old = json.loads(config.read_bytes())
    config.unlink()
    Path(image_path_of(old)).unlink(missing_ok=True)
    data = box.relocate((Path(__file__).parents[2] / "fixtures" / "configs" / fixture).read_bytes())
    data = re.sub(rb'"Created": "[^"]*"', b'"Created": "2026-12-03T07:00:00.123456789Z"', data)
    if not same_image:
        native = image_path_of(json.loads(data))
        data = data.replace(native.encode(), native.replace(".qcow2", "-next.qcow2").encode())
    config.write_bytes(data)
    image = Path(image_path_of(json.loads(data)))
    image.write_bytes(b"the new machine's own disk")
    return config


@pytest.mark.parametrize("same_image", [True, False], ids=["same-image", "other-image"])
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_new_machine_of_the_same_name_is_not_the_journals(
    box: Sandbox, aarch64_disk: Path, layout: str, status: str, same_image: bool
) -> None:
    fixture = LAYOUTS[layout]
    if "no Created" in layout and same_image:
        pytest.skip("without Created, a new machine on the very same disk path is indistinguishable")
    box.install(fixture, name=MACHINE)
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    [journal] = (box.state_dir / "journals").glob("*.json")
    record = json.loads(journal.read_bytes())
    journal.write_text(json.dumps({**record, "status": status}))
    config = _reinit(box, fixture, same_image=same_image)
    fresh = config.read_bytes()
    image = Path(image_path_of(json.loads(fresh)))
    before = snapshot(box.root, ignore=(box.cache_dir,))

    for command in (["revert", MACHINE], ["revert", MACHINE, "--delete-disk"]):
        result = invoke(box, *command)
        assert_clean_refusal(result, "earlier machine", f"podman-emu cleanup {MACHINE}")
        assert not diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True), result.output
    refused = invoke(box, "convert", MACHINE, "--image", str(aarch64_disk))
    assert_clean_refusal(refused, "earlier machine", f"podman-emu cleanup {MACHINE}")
    assert not diff_snapshots(before, snapshot(box.root, ignore=(box.cache_dir,)), strict=True), refused.output
    listing = invoke(box, "list", "--json")
    assert_success(listing)
    [row] = [row for row in json.loads(listing.stdout) if row["name"] == MACHINE]
    assert row["emulation"].startswith("native") and "earlier machine" in row["emulation"], row

    assert_success(invoke(box, "cleanup", MACHINE))
    assert config.read_bytes() == fresh and image.read_bytes() == b"the new machine's own disk"
    assert not list((box.state_dir / "journals").glob("*.json"))
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    assert_success(invoke(box, "revert", MACHINE, "--delete-disk"))
    assert config.read_bytes() == fresh and image.read_bytes() == b"the new machine's own disk"


def test_a_journal_written_before_machine_identity_still_reverts(box: Sandbox, aarch64_disk: Path) -> None:
    """Journals already on users' disks (schema 1, as this version writes them too) keep working:
    the identity comes from the original config each journal carries."""
    config = box.install(LAYOUTS["4.9 (Created)"], name=MACHINE)
    original = config.read_bytes()
    assert_success(invoke(box, "convert", MACHINE, "--image", str(aarch64_disk)))
    [journal] = (box.state_dir / "journals").glob("*.json")
    assert json.loads(journal.read_bytes())["schema"] == 1
    assert_success(invoke(box, "revert", MACHINE))
    assert config.read_bytes() == original
