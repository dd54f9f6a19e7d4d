"""convert / revert / list / inspect / doctor through the real CLI, on real files."""

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from testing.fixtures import FIXTURES, fixture_files
from testing.images import make_disk, synthetic_pe, to_qcow2
from testing.podman_home import Sandbox

pytestmark = pytest.mark.usefixtures("qemu_aarch64")
runner = CliRunner()


def cli(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def tree_digest(root: Path) -> dict[str, str]:
    """Every file but podman-emu's cache (the qemu probe result may be written on any run)."""
    digest = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.relative_to(root).parts[0] != "cache":
            digest[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def convert_json(disk: Path, name: str, *extra: str) -> dict[str, Any]:
    code, out, err = cli("convert", name, "--image", str(disk), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("fixture", fixture_files())
def test_convert_then_revert_is_byte_identical(
    podman_home: Sandbox, blank_aarch64_disk: Path, fixture: str, qemu_aarch64: str
) -> None:
    config = podman_home.install(fixture, "m")
    original = config.read_bytes()
    result = convert_json(blank_aarch64_disk, "m")
    assert result["applied"] is True
    converted = json.loads(config.read_bytes())
    assert result["argv_after"][0] == qemu_aarch64
    assert converted.get("CmdLine", result["argv_after"]) == result["argv_after"]  # podman 5 stores none
    assert config.read_bytes().endswith(b"\n") == original.endswith(b"\n")
    for action in result["files"]:
        if action["role"] != "console":
            assert Path(action["path"]).exists()
    code, _, err = cli("revert", "m", "--delete-disk")
    assert code == 0, err
    assert config.read_bytes() == original
    leftovers = [p.name for p in podman_home.data_dir.iterdir()]
    assert not any(name.startswith("m_") for name in leftovers), leftovers
    assert not list((podman_home.state_dir / "journals").iterdir())


def test_revert_keeps_changes_podman_made_after_the_conversion(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    config = podman_home.install("podman-4.3-linux-amd64.json", "testvm")
    convert_json(blank_aarch64_disk, "testvm")
    # What `podman machine set --cpus 3 --memory 3000` and `list` do: edit -smp/-m in place, rewrite.
    content = json.loads(config.read_bytes())
    argv = content["CmdLine"]
    argv[argv.index("-m") + 1], argv[argv.index("-smp") + 1] = "3000", "3"
    content["CPUs"], content["Memory"] = 3, 3000
    content["LastUp"] = content["Created"]
    config.write_bytes(json.dumps(content, indent=1, ensure_ascii=False).encode())
    code, _, err = cli("revert", "testvm")
    assert code == 0, err
    expected = podman_home.relocate((FIXTURES / "podman-4.3-linux-amd64-after-set.json").read_bytes())
    assert config.read_bytes() == expected


def test_dry_run_writes_nothing(podman_home: Sandbox, blank_aarch64_disk: Path, qemu_aarch64: str) -> None:
    podman_home.install("podman-4.9-darwin-amd64.json", "m")
    before = tree_digest(podman_home.root)
    code, out, _ = cli("convert", "m", "--image", str(blank_aarch64_disk), "--dry-run")
    assert code == 0
    lines = out.splitlines()
    assert f"+{qemu_aarch64}" in lines, "the qemu command diff names the aarch64 binary"
    assert f'+  "{qemu_aarch64}",' in lines, "the JSON diff names it as CmdLine[0]"
    assert "Dry run: nothing was written." in out
    assert tree_digest(podman_home.root) == before
    code, out, _ = cli("convert", "m", "--image", str(blank_aarch64_disk), "--dry-run", "--json")
    plan = json.loads(out)
    assert plan["applied"] is False and plan["patch"][0]["op"] == "test"
    assert tree_digest(podman_home.root) == before


def test_revert_dry_run_writes_nothing(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "m")
    convert_json(blank_aarch64_disk, "m")
    before = tree_digest(podman_home.root)
    code, out, _ = cli("revert", "m", "--dry-run")
    assert code == 0 and "Dry run" in out
    assert tree_digest(podman_home.root) == before


@pytest.mark.parametrize(
    ("setup", "args", "fragment"),
    [
        ("none", ["convert", "ghost", "--image", "{disk}"], "no machine config"),
        ("native", ["revert", "m"], "never converted"),
        ("native", ["convert", "m"], "needs an aarch64 disk"),
        ("native", ["convert", "m", "--image", "/nonexistent.qcow2"], "/nonexistent.qcow2"),
        ("native", ["convert", "m", "--image", "{disk}", "--cpu", "host"], "hardware accelerator"),
        ("native", ["convert", "m", "--image", "{disk}", "--qemu", "/bin/true"], "does not answer like qemu"),
        ("native", ["convert", "m", "--image", "{disk}", "--firmware", "/etc/hostname"], "pflash image must be"),
        ("converted", ["convert", "m", "--image", "{disk}"], "already converted"),
        ("starting", ["convert", "m", "--image", "{disk}"], "is starting"),
        ("podman5", ["convert", "m", "--image", "{disk}"], "podman 5.x"),
        ("broken", ["convert", "m", "--image", "{disk}"], "not valid JSON"),
    ],
)
def test_every_refusal_says_why_and_changes_nothing(
    podman_home: Sandbox, blank_aarch64_disk: Path, setup: str, args: list[str], fragment: str
) -> None:
    if setup != "none":
        config = podman_home.install("podman-4.9-linux-amd64.json", "m")
        if setup == "converted":
            convert_json(blank_aarch64_disk, "m")
        elif setup == "starting":
            config.write_bytes(config.read_bytes().replace(b'"Starting": false', b'"Starting": true'))
        elif setup == "podman5":
            # An arm64 host's 5.x machine: native already (an x86_64 one converts).
            arm64 = (FIXTURES / "podman-5.8-linux-amd64-qemu.json").read_bytes().replace(b"-amd64.", b"-arm64.")
            config.write_bytes(arm64)
        elif setup == "broken":
            config.write_bytes(config.read_bytes()[:-40])
    before = tree_digest(podman_home.root)
    code, out, err = cli(*[a.replace("{disk}", str(blank_aarch64_disk)) for a in args])
    assert code in (1, 2), (code, out, err)
    assert fragment in err, err
    assert "Traceback" not in out + err and "Hint:" in err
    assert tree_digest(podman_home.root) == before


def test_an_x86_64_disk_is_refused_unless_forced(podman_home: Sandbox, tmp_path: Path) -> None:

    raw = make_disk(tmp_path / "x86.raw", files={"EFI/BOOT/BOOTX64.EFI": synthetic_pe(0x8664)})
    disk = to_qcow2(raw, tmp_path / "x86.qcow2")
    podman_home.install("podman-4.9-linux-amd64.json", "m")
    before = tree_digest(podman_home.root)
    code, _, err = cli("convert", "m", "--image", str(disk))
    assert code == 1 and "x86_64 disk" in err
    assert tree_digest(podman_home.root) == before
    code, _, err = cli("convert", "m", "--image", str(disk), "--force")
    assert code == 0, err


def test_list_and_inspect_report_emulation_and_state(
    podman_home: Sandbox, blank_aarch64_disk: Path, qemu_aarch64: str
) -> None:
    podman_home.install("podman-4.9-linux-amd64.json", "a")
    podman_home.install("podman-3.4-darwin-amd64.json", "b")
    (podman_home.config_dir / "junk.json").write_text("{")
    convert_json(blank_aarch64_disk, "a")
    code, out, _ = cli("list", "--json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["a"]["emulation"] == "emulated" and rows["a"]["state"] == "stopped"
    assert rows["b"]["emulation"] == "native" and rows["b"]["podman"] == "3.4"
    assert "not valid JSON" in rows["junk"]["error"]
    code, out, _ = cli("inspect", "a", "--json")
    report = json.loads(out)
    assert report["journal"]["status"] == "converted"
    assert report["console_log"].endswith(".log")
    assert report["cmdline"][0] == qemu_aarch64


def test_doctor_reports_host_and_leftovers_of_a_removed_machine(podman_home: Sandbox, blank_aarch64_disk: Path) -> None:
    config = podman_home.install("podman-4.9-linux-amd64.json", "gone")
    convert_json(blank_aarch64_disk, "gone")
    native_disk = json.loads(podman_home.relocate((FIXTURES / "podman-4.9-linux-amd64.json").read_bytes()))[
        "ImagePath"
    ]["Path"]
    # `podman machine rm` deletes the JSON and the ImagePath it knows (the aarch64 disk).
    aarch64_disk = json.loads(config.read_bytes())["ImagePath"]["Path"]
    config.unlink()
    os.unlink(aarch64_disk)
    code, out, _ = cli("doctor", "--json")
    report = json.loads(out)
    assert code == 0, report
    assert {c["topic"] for c in report["checks"]} >= {"qemu", "cpu", "firmware", "qemu-img"}
    [leftover] = report["leftovers"]
    assert leftover["machine"] == "gone" and native_disk in leftover["files"]
    assert leftover["command"] == "podman-emu cleanup gone"
    code, _, _ = cli("cleanup", "gone")
    assert code == 0 and not os.path.exists(native_disk)
    assert json.loads(cli("doctor", "--json")[1])["leftovers"] == []


def test_a_symlinked_config_is_rewritten_through_the_link(
    podman_home: Sandbox, blank_aarch64_disk: Path, tmp_path: Path, qemu_aarch64: str
) -> None:
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    real = tmp_path / "dotfiles" / "m.json"
    real.parent.mkdir()
    real.write_bytes(config.read_bytes())
    config.unlink()
    config.symlink_to(real)
    original = real.read_bytes()
    convert_json(blank_aarch64_disk, "m")
    assert config.is_symlink() and json.loads(real.read_bytes())["CmdLine"][0] == qemu_aarch64
    assert cli("revert", "m")[0] == 0
    assert config.is_symlink() and real.read_bytes() == original


@pytest.mark.parametrize(
    ("fixture", "size_gib"), [("podman-3.3.1-linux-amd64.json", 1), ("podman-3.4.0-linux-amd64.json", 10)]
)
def test_the_disk_grows_to_disk_size_and_is_left_alone_without_one(
    podman_home: Sandbox, blank_aarch64_disk: Path, qemu_img: str, fixture: str, size_gib: int
) -> None:
    """podman 3.3 wrote no DiskSize: the 1 GiB source disk stays 1 GiB; 3.4.0 asks for 10 GiB."""
    from podman_emu.images.resize import virtual_size

    podman_home.install(fixture, "m")
    result = convert_json(blank_aarch64_disk, "m")
    disk = next(Path(action["path"]) for action in result["files"] if action["role"] == "disk")
    assert virtual_size(disk, qemu_img=qemu_img) == size_gib * 1024**3


def test_a_kept_aarch64_disk_of_a_removed_machine_is_named_then_reused_when_asked(
    podman_home: Sandbox, blank_aarch64_disk: Path, tmp_path: Path
) -> None:
    # A plain revert keeps NAME_aarch64.qcow2; `podman machine rm` then deletes the config and the
    # native disk, and forgets it. A new machine of that name must be convertible again.
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    convert_json(blank_aarch64_disk, "m")
    kept = Path(json.loads(config.read_bytes())["ImagePath"]["Path"])
    assert cli("revert", "m")[0] == 0 and kept.exists()
    config.unlink()
    code, _, err = cli("cleanup", "m")  # no journal is left, but the kept disk is named
    assert code == 1 and f"podman-emu convert m --image {kept}" in err and f"rm -- {kept}" in err
    podman_home.install("podman-4.9-linux-amd64.json", "m")  # `podman machine init m` again
    before = tree_digest(podman_home.root)
    code, _, err = cli("convert", "m", "--image", str(blank_aarch64_disk))
    assert code == 1 and f"{kept} already exists" in err
    assert f"podman-emu convert m --image {kept}" in err and f"rm -- {kept}" in err
    assert tree_digest(podman_home.root) == before

    # An x86_64 disk under that name is refused by the same arch check, and left as it was.
    x86 = to_qcow2(make_disk(tmp_path / "x86.raw", files={"EFI/BOOT/BOOTX64.EFI": synthetic_pe(0x8664)}), kept)
    before = tree_digest(podman_home.root)
    code, _, err = cli("convert", "m", "--image", str(x86))
    assert code == 1 and "x86_64 disk" in err and tree_digest(podman_home.root) == before

    kept.unlink()
    to_qcow2(make_disk(tmp_path / "arm.raw", files={"EFI/BOOT/BOOTAA64.EFI": synthetic_pe(0xAA64)}), kept)
    result = convert_json(kept, "m")
    assert result["applied"] is True
    assert json.loads(config.read_bytes())["ImagePath"]["Path"] == str(kept)
    info = subprocess.run(["qemu-img", "info", "--output=json", str(kept)], capture_output=True, check=True)
    assert json.loads(info.stdout)["virtual-size"] == 100 * 1024**3  # grown to DiskSize
    assert cli("revert", "m", "--delete-disk")[0] == 0 and not kept.exists()
