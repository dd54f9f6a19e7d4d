"""Random access to a disk's guest-visible bytes, for raw files and qcow2.

qcow2 is read by a small pure-Python reader rather than through qemu's tools: the arch check needs a
few kilobytes (partition table, FAT boot sector, directory entries, a PE header), and a reader that
follows the L1/L2 tables fetches exactly those clusters. The alternatives cost more: ``qemu-img
convert``/``dd`` copies data to a temporary file, ``qemu-nbd`` needs root and the nbd kernel module,
and ``qemu-io`` would mean one process and a hex-dump parse per read. The reader also works where only
a qemu binary without its tools is installed. It covers what real images use (versions 2 and 3,
any cluster size, deflate and zstd compressed clusters, zero clusters) and reports everything else
(backing files, external data files, encryption, extended L2 entries) as a reason for not deciding.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import OrderedDict
from typing import Protocol

import zstandard


class UnreadableLayout(Exception):
    """The disk's structure cannot be followed; the message is the reason shown to the user."""


class DiskReader(Protocol):
    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` guest bytes at ``offset``; UnreadableLayout past the end."""
        ...


class _LRU:
    """A tiny byte-budgeted cache: FAT walks re-read the same few clusters many times."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[int, bytes] = OrderedDict()

    def get(self, key: int) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: int, value: bytes) -> None:
        self._items[key] = value
        self._used += len(value)
        while self._used > self._budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._used -= len(old)


def _check_range(size: int, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > size:
        end = offset + length
        raise UnreadableLayout(f"a structure points past the end of the disk (byte {end} of {size})")


class RawDisk:
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.size = os.fstat(fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        _check_range(self.size, offset, length)
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise UnreadableLayout("the disk file is shorter than it claims")
        return data


_QCOW2_HEADER = struct.Struct(">4sIQIIQIIQQIIQ")
_INCOMPATIBLE_DIRTY = 1 << 0
_INCOMPATIBLE_CORRUPT = 1 << 1
_INCOMPATIBLE_DATA_FILE = 1 << 2
_INCOMPATIBLE_COMPRESSION = 1 << 3
_INCOMPATIBLE_EXTENDED_L2 = 1 << 4
_KNOWN_INCOMPATIBLE = _INCOMPATIBLE_DIRTY | _INCOMPATIBLE_CORRUPT | _INCOMPATIBLE_COMPRESSION
_OFFSET_MASK = 0x00FFFFFFFFFFFE00  # bits 9-55 of L1 and standard L2 entries
_L2_COMPRESSED = 1 << 62
_L2_ZERO = 1
_CACHE_BUDGET = 8 << 20


class Qcow2Disk:
    """Read-only qcow2 (https://www.qemu.org/docs/master/interop/qcow2.html) without a backing file."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._file_size = os.fstat(fd).st_size
        header = os.pread(fd, 112, 0)
        if len(header) < _QCOW2_HEADER.size:
            raise UnreadableLayout("the qcow2 header is truncated")
        (
            _magic,
            version,
            backing_offset,
            _backing_size,
            cluster_bits,
            size,
            crypt_method,
            l1_size,
            l1_offset,
            _refcount_offset,
            _refcount_clusters,
            _snapshots,
            _snapshots_offset,
        ) = _QCOW2_HEADER.unpack_from(header)
        if version not in (2, 3):
            raise UnreadableLayout(f"qcow2 version {version} is not supported")
        if backing_offset:
            raise UnreadableLayout("the qcow2 has a backing file, so part of its content is elsewhere")
        if crypt_method:
            raise UnreadableLayout("the qcow2 is encrypted")
        if not 9 <= cluster_bits <= 21:
            raise UnreadableLayout(f"qcow2 cluster_bits {cluster_bits} is out of range")
        incompatible = 0
        compression_type = 0
        if version == 3 and len(header) >= 104:
            incompatible = struct.unpack_from(">Q", header, 72)[0]
            header_length = struct.unpack_from(">I", header, 100)[0]
            if header_length > 104 and len(header) > 104:
                compression_type = header[104]
        if incompatible & _INCOMPATIBLE_DATA_FILE:
            raise UnreadableLayout("the qcow2 keeps its data in an external data file")
        if incompatible & _INCOMPATIBLE_EXTENDED_L2:
            raise UnreadableLayout("the qcow2 uses extended L2 entries (subclusters), which are not read")
        if incompatible & ~(_KNOWN_INCOMPATIBLE | _INCOMPATIBLE_DATA_FILE | _INCOMPATIBLE_EXTENDED_L2):
            raise UnreadableLayout(f"the qcow2 has unknown incompatible features (0x{incompatible:x})")
        if compression_type not in (0, 1):
            raise UnreadableLayout(f"qcow2 compression type {compression_type} is unknown")
        self.size: int = size
        self._cluster_bits = cluster_bits
        self._cluster_size = 1 << cluster_bits
        self._l2_entries = self._cluster_size // 8
        self._l1_size = l1_size
        self._l1_offset = l1_offset
        self._zstd = compression_type == 1
        self._l2_cache = _LRU(_CACHE_BUDGET)
        self._data_cache = _LRU(_CACHE_BUDGET)

    def _pread_exact(self, offset: int, length: int, what: str) -> bytes:
        if offset + length > self._file_size:
            raise UnreadableLayout(f"the qcow2 {what} lies past the end of the file (truncated image?)")
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise UnreadableLayout(f"short read of the qcow2 {what}")
        return data

    def _l2_entry(self, cluster_index: int) -> int:
        l1_index, l2_index = divmod(cluster_index, self._l2_entries)
        if l1_index >= self._l1_size:
            return 0
        # L1 entries are read one at a time: the table can be megabytes on a big disk, and the arch
        # check touches only a handful of them.
        raw = self._pread_exact(self._l1_offset + l1_index * 8, 8, "L1 table")
        l2_offset = struct.unpack(">Q", raw)[0] & _OFFSET_MASK
        if not l2_offset:
            return 0
        table = self._l2_cache.get(l2_offset)
        if table is None:
            table = self._pread_exact(l2_offset, self._cluster_size, "L2 table")
            self._l2_cache.put(l2_offset, table)
        entry: int = struct.unpack_from(">Q", table, l2_index * 8)[0]
        return entry

    def _cluster(self, cluster_index: int) -> bytes:
        cached = self._data_cache.get(cluster_index)
        if cached is not None:
            return cached
        entry = self._l2_entry(cluster_index)
        if entry & _L2_COMPRESSED:
            data = self._compressed_cluster(entry)
        else:
            host = entry & _OFFSET_MASK
            if entry & _L2_ZERO or not host:
                # Unallocated reads as zeros: there is no backing file (checked in __init__).
                data = bytes(self._cluster_size)
            else:
                data = self._pread_exact(host, self._cluster_size, "data cluster")
        self._data_cache.put(cluster_index, data)
        return data

    def _compressed_cluster(self, entry: int) -> bytes:
        offset_bits = 62 - (self._cluster_bits - 8)
        host = entry & ((1 << offset_bits) - 1)
        extra_sectors = (entry >> offset_bits) & ((1 << (self._cluster_bits - 8)) - 1)
        length = (extra_sectors + 1) * 512 - (host & 511)
        # The last compressed cluster may end before its final sector does.
        length = min(length, self._file_size - host)
        compressed = self._pread_exact(host, length, "compressed cluster")
        try:
            if self._zstd:
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(compressed))
                data: bytes = reader.read(self._cluster_size)
            else:
                data = zlib.decompressobj(-15).decompress(compressed, self._cluster_size)
        except (zlib.error, zstandard.ZstdError) as exc:
            raise UnreadableLayout(f"a compressed qcow2 cluster does not decompress ({exc})") from None
        if len(data) != self._cluster_size:
            raise UnreadableLayout("a compressed qcow2 cluster decompresses to the wrong size")
        return data

    def read(self, offset: int, length: int) -> bytes:
        _check_range(self.size, offset, length)
        parts: list[bytes] = []
        while length > 0:
            index, within = divmod(offset, self._cluster_size)
            step = min(length, self._cluster_size - within)
            parts.append(self._cluster(index)[within : within + step])
            offset += step
            length -= step
        return b"".join(parts)
