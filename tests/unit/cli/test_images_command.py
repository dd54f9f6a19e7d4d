"""convert --stream / --image with compressed images, end to end through the CLI, against a real
HTTP server on loopback."""

import hashlib
import json
import lzma
from pathlib import Path

import pytest
from typer.testing import CliRunner

from podman_emu.cli.app import app
from podman_emu.images.formats import sniff_disk
from testing.images import Behaviour, make_disk, serve, synthetic_pe, to_qcow2, unused_port_url
from testing.podman_home import Sandbox

pytestmark = pytest.mark.usefixtures("qemu_aarch64")
IMAGE = "/prod/streams/testing/builds/41.1/aarch64/fedora-coreos-41.1-qemu.aarch64.qcow2.xz"


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def aarch64_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(qcow2, qcow2.xz) of a GPT disk whose ESP holds EFI/BOOT/BOOTAA64.EFI (a PE header with
    machine 0xAA64: the arch check reads only headers)."""
    base = tmp_path_factory.mktemp("aarch64")
    raw = make_disk(base / "a.raw", files={"EFI/BOOT/BOOTAA64.EFI": synthetic_pe(0xAA64)})
    qcow2 = to_qcow2(raw, base / "a.qcow2").read_bytes()
    return qcow2, lzma.compress(qcow2, preset=0)


def stream_files(qcow2: bytes, xz: bytes) -> dict[str, bytes]:
    disk = {
        "location": IMAGE,
        "sha256": hashlib.sha256(xz).hexdigest(),
        "uncompressed-sha256": hashlib.sha256(qcow2).hexdigest(),
    }
    document = {
        "stream": "testing",
        "architectures": {
            "aarch64": {"artifacts": {"qemu": {"release": "41.1", "formats": {"qcow2.xz": {"disk": disk}}}}}
        },
    }
    return {"/streams/testing.json": json.dumps(document).encode(), IMAGE: xz}


def test_convert_from_a_stream_then_offline_from_the_cache(
    podman_home: Sandbox, aarch64_image: tuple[bytes, bytes]
) -> None:
    qcow2, xz = aarch64_image
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    behaviour = Behaviour(files=stream_files(qcow2, xz))
    with serve(behaviour) as base:
        code, out, err = cli(
            "convert", "m", "--stream", "testing", "--stream-url", f"{base}/streams/testing.json", "--json"
        )
    assert code == 0, err
    result = json.loads(out)
    assert result["arch_check"]["arch"] == "aarch64"
    disk = Path(json.loads(config.read_bytes())["ImagePath"]["Path"])
    assert sniff_disk(disk).compression is None and sniff_disk(disk).container == "qcow2"
    code, out, _ = cli("images", "--json")
    [cached] = json.loads(out)
    assert cached["stream"] == "testing" and cached["release"] == "41.1"

    assert cli("revert", "m", "--delete-disk")[0] == 0
    code, out, err = cli("convert", "m", "--stream", "testing", "--stream-url", unused_port_url())
    assert code == 0, err
    assert "using the cached testing image 41.1" in err


def test_a_corrupt_download_never_reaches_the_machine(podman_home: Sandbox, aarch64_image: tuple[bytes, bytes]) -> None:
    qcow2, xz = aarch64_image
    config = podman_home.install("podman-4.9-linux-amd64.json", "m")
    before = config.read_bytes()
    files = stream_files(qcow2, xz)
    files[IMAGE] = xz[:-100] + bytes(100)
    with serve(Behaviour(files=files)) as base:
        code, _, err = cli("convert", "m", "--stream", "testing", "--stream-url", f"{base}/streams/testing.json")
    assert code == 1 and ("sha256" in err or "does not decompress" in err), err
    assert config.read_bytes() == before
    assert sorted(p.name for p in podman_home.data_dir.iterdir()) == [
        Path(json.loads(before)["ImagePath"]["Path"]).name
    ]


def test_compressed_local_image_with_checksum(
    podman_home: Sandbox, aarch64_image: tuple[bytes, bytes], tmp_path: Path
) -> None:
    _, xz = aarch64_image
    image = tmp_path / "fcos.qcow2.xz"
    image.write_bytes(xz)
    podman_home.install("podman-4.3-linux-amd64.json", "m")
    code, _, err = cli("convert", "m", "--image", str(image), "--sha256", "0" * 64)
    assert code == 1 and "sha256" in err
    code, out, err = cli("convert", "m", "--image", str(image), "--sha256", hashlib.sha256(xz).hexdigest(), "--json")
    assert code == 0, err
    assert json.loads(out)["disk_format"] == "qcow2 (xz)"
