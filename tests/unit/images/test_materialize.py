"""materialize: streaming decompression + checksum into place, and nothing left on failure."""

from __future__ import annotations

import hashlib
import lzma
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from podman_emu.errors import ImageError
from podman_emu.images.formats import DiskFormat
from podman_emu.images.materialize import materialize
from testing.images import MIB, compress, run, sha256_file


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small qcow2 with real content (random and repetitive data written through qemu-img)."""
    base = tmp_path_factory.mktemp("materialize")
    raw = base / "content.raw"
    with raw.open("wb") as handle:
        handle.write(os.urandom(3 * MIB))
        handle.write(b"podman-emu " * 200_000)
        handle.truncate(16 * MIB)
    return run_convert(raw, base / "disk.qcow2")


def run_convert(raw: Path, out: Path) -> Path:
    run("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out)
    return out


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("compression", [None, "xz", "gz", "zst"])
def test_materialize_writes_the_decompressed_disk_and_returns_the_source_sha(
    qcow2: Path, tmp_path: Path, compression: str | None
) -> None:
    source = compress(qcow2, compression, tmp_path / "download.bin")
    destination_dir = tmp_path / "data"
    destination_dir.mkdir()
    destination = destination_dir / "machine-arm64.qcow2"
    digest = materialize(source, destination, expected_sha256=sha256_file(source).upper()).source_sha256
    assert digest == sha256_file(source)
    assert destination.read_bytes() == qcow2.read_bytes()
    assert leftovers(destination_dir) == ["machine-arm64.qcow2"]


def test_uncompressed_checksum_is_checked_in_the_same_pass(qcow2: Path, tmp_path: Path) -> None:
    source = compress(qcow2, "xz", tmp_path / "disk.xz")
    result = materialize(source, tmp_path / "ok.qcow2", expected_uncompressed_sha256=sha256_file(qcow2))
    assert result.disk_sha256 == sha256_file(qcow2)
    assert result.format == DiskFormat("qcow2", "xz")
    assert result.disk_size == qcow2.stat().st_size
    with pytest.raises(ImageError, match="uncompressed sha256 mismatch"):
        materialize(source, tmp_path / "bad.qcow2", expected_uncompressed_sha256="0" * 64)
    assert not (tmp_path / "bad.qcow2").exists()


def test_wrong_sha256_leaves_nothing_and_keeps_an_existing_destination(qcow2: Path, tmp_path: Path) -> None:
    source = compress(qcow2, "xz", tmp_path / "disk.xz")
    data = tmp_path / "data"
    data.mkdir()
    destination = data / "disk.qcow2"
    destination.write_bytes(b"previous disk")
    with pytest.raises(ImageError, match="sha256 mismatch") as caught:
        materialize(source, destination, expected_sha256="ab" * 32)
    assert caught.value.hint
    assert destination.read_bytes() == b"previous disk"
    assert leftovers(data) == ["disk.qcow2"]


@pytest.mark.parametrize("compression", ["xz", "gz", "zst"])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_or_truncated_input_leaves_nothing_behind(
    qcow2: Path, tmp_path: Path, compression: str, damage: str
) -> None:
    data = bytearray(compress(qcow2, compression, tmp_path / "good").read_bytes())
    if damage == "truncate":
        del data[len(data) * 2 // 3 :]
    else:
        # Past the headers, inside the compressed payload; every format's integrity check catches it.
        for offset in range(len(data) // 2, len(data) // 2 + 64):
            data[offset] ^= 0x55
    source = tmp_path / "damaged"
    source.write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImageError, match="corrupt or truncated"):
        materialize(source, out / "disk.qcow2")
    assert leftovers(out) == []


def test_invalid_expected_checksum_is_refused_before_copying(qcow2: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="64 hexadecimal digits"):
        materialize(qcow2, tmp_path / "x.qcow2", expected_sha256="not-a-sha")
    assert not (tmp_path / "x.qcow2").exists()


def test_missing_destination_directory_is_an_image_error(qcow2: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a directory"):
        materialize(qcow2, tmp_path / "absent" / "x.qcow2")


def test_concatenated_xz_streams_are_all_read(qcow2: Path, tmp_path: Path) -> None:
    content = qcow2.read_bytes()
    source = tmp_path / "multi.xz"
    source.write_bytes(lzma.compress(content[: 5 * MIB]) + lzma.compress(content[5 * MIB :]))
    materialize(source, tmp_path / "out.qcow2")
    assert (tmp_path / "out.qcow2").read_bytes() == content


def test_zero_runs_become_holes(tmp_path: Path) -> None:
    # A raw disk: a GPT-like first sector, 200 MiB of zeros, and a marker at the end.
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as handle:
        handle.write(bytes(510) + b"\x55\xaa")
        handle.seek(200 * MIB)
        handle.write(b"end marker")
    source = compress(raw, "zst", tmp_path / "disk.zst")
    out = tmp_path / "out.raw"
    materialize(source, out)
    assert out.stat().st_size == raw.stat().st_size
    assert sha256_file(out) == sha256_file(raw)
    assert out.stat().st_blocks * 512 < 4 * MIB  # sparse: the zeros were not written


def test_progress_is_silent_when_stderr_is_not_a_terminal(
    qcow2: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    materialize(compress(qcow2, "gz", tmp_path / "d.gz"), tmp_path / "o.qcow2", progress=True)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS is read from Linux /proc")
def test_memory_stays_bounded_on_a_highly_compressible_stream(tmp_path: Path) -> None:
    """1 GiB of zeros behind a small xz (a decompression bomb in miniature): the peak RSS of a child
    process running materialize must stay far below the output size. The peak is VmHWM from
    /proc, which belongs to the child's own address space; ru_maxrss would carry over the pytest
    parent's peak across fork and exec."""
    source = tmp_path / "zeros.xz"
    with lzma.open(source, "wb", preset=1) as handle:
        block = bytes(MIB)
        handle.write(bytes(510) + b"\x55\xaa")
        for _ in range(1024):
            handle.write(block)
    child = textwrap.dedent(
        f"""
        from pathlib import Path
        from podman_emu.images.materialize import materialize
        materialize(Path({str(source)!r}), Path({str(tmp_path / "out.raw")!r}))
        status = Path("/proc/self/status").read_text()
        print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
        """
    )
    output = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    peak_mib = int(output.strip()) / 1024  # /proc reports KiB
    assert peak_mib < 100, f"peak RSS {peak_mib:.0f} MiB"
    assert (tmp_path / "out.raw").stat().st_size == 1024 * MIB + 512


def test_written_disk_hash_matches_sha256_of_the_file(qcow2: Path, tmp_path: Path) -> None:
    result = materialize(compress(qcow2, "zst", tmp_path / "z"), tmp_path / "o", hash_output=True)
    assert result.disk_sha256 == hashlib.sha256((tmp_path / "o").read_bytes()).hexdigest()
