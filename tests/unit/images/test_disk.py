"""The pure-Python qcow2 reader against qemu-img: any range read through it equals the raw bytes that
qemu-img converted, for every cluster size, with and without compressed clusters."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from podman_emu.images.disk import Qcow2Disk, UnreadableLayout
from testing.images import run

SIZE = 4 << 20


@settings(max_examples=25, deadline=None)
@given(
    extents=st.lists(
        st.tuples(st.integers(min_value=0, max_value=SIZE - 1), st.binary(min_size=1, max_size=70_000)),
        max_size=6,
    ),
    cluster_size=st.sampled_from([512, 4096, 65536, 2 << 20]),
    compressed=st.booleans(),
    compression_type=st.sampled_from(["zlib", "zstd"]),
    reads=st.lists(
        st.tuples(st.integers(min_value=0, max_value=SIZE - 1), st.integers(min_value=0, max_value=300_000)),
        min_size=1,
        max_size=8,
    ),
)
def test_reads_match_the_raw_disk(
    extents: list[tuple[int, bytes]],
    cluster_size: int,
    compressed: bool,
    compression_type: str,
    reads: list[tuple[int, int]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch, "disk.raw")
        with raw.open("wb") as handle:
            handle.truncate(SIZE)
            for offset, data in extents:
                handle.seek(offset)
                handle.write(data[: SIZE - offset])
        qcow2 = Path(scratch, "disk.qcow2")
        options = f"cluster_size={cluster_size},compression_type={compression_type}"
        compress_flag = ["-c"] if compressed else []
        run("qemu-img", "convert", *compress_flag, "-f", "raw", "-O", "qcow2", "-o", options, raw, qcow2)
        content = raw.read_bytes()
        fd = os.open(qcow2, os.O_RDONLY)
        try:
            disk = Qcow2Disk(fd)
            assert disk.size == SIZE
            for offset, length in reads:
                length = min(length, SIZE - offset)
                assert disk.read(offset, length) == content[offset : offset + length]
            try:
                disk.read(SIZE - 1, 2)
            except UnreadableLayout:
                pass
            else:
                raise AssertionError("a read past the end must be refused")
        finally:
            os.close(fd)
