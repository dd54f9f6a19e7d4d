"""Which CPU a disk boots on, from its EFI system partition.

UEFI firmware with fresh variables (which is what podman-emu gives a converted machine) boots the
removable-media path ``\\EFI\\BOOT\\BOOT<arch>.EFI`` of the ESP, and the firmware refuses a PE image
whose machine field is not its own. So the path plus the PE header decide what the disk boots on.
Only a few kilobytes are read (partition table, FAT boot sector, a few directory clusters, a PE
header), so a multi-GB sparse image is checked in milliseconds.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from podman_emu.errors import ImageError
from podman_emu.fsutil import open_regular
from podman_emu.images.disk import DiskReader, Qcow2Disk, RawDisk, UnreadableLayout
from podman_emu.images.formats import sniff_disk

Arch = Literal["aarch64", "x86_64"]

ESP_TYPE_GUID = uuid.UUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
_MBR_ESP = 0xEF
_MBR_GPT_PROTECTIVE = 0xEE
_MAX_GPT_ENTRIES = 1024
_MAX_DIRECTORY_BYTES = 4 << 20  # far beyond any real EFI/BOOT directory; bounds a corrupt chain
_MAX_VENDOR_LOADERS = 32
_PE_HEADER_LIMIT = 64 << 10

PE_MACHINES: dict[int, str] = {
    0x014C: "i386",
    0x01C2: "arm (thumb)",
    0x01C4: "armv7",
    0x0EBC: "EFI byte code",
    0x5064: "riscv64",
    0x6264: "loongarch64",
    0x8664: "x86_64",
    0xAA64: "aarch64",
}
_ARCH_OF_MACHINE: dict[int, Arch] = {0xAA64: "aarch64", 0x8664: "x86_64"}
# Removable-media loader names (UEFI spec §3.5.1.1) that fit FAT's 8.3 short names.
_FALLBACK_LOADERS: dict[str, str] = {
    "BOOTAA64.EFI": "aarch64",
    "BOOTX64.EFI": "x86_64",
    "BOOTIA32.EFI": "i386",
    "BOOTARM.EFI": "armv7",
}


@dataclass(frozen=True)
class ArchVerdict:
    arch: Arch | None  # None: undecidable, and ``reason`` says why
    reason: str


# --------------------------------------------------------------------------------------------------
# Partitions


@dataclass(frozen=True)
class _Partition:
    number: int
    start: int  # bytes
    size: int  # bytes


def _find_esps(disk: DiskReader) -> tuple[list[_Partition], str]:
    """ESPs from the GPT (any sector size qemu offers, 512 or 4096) or, failing that, MBR type 0xEF
    entries. The string describes the table, for reasons."""
    mbr = disk.read(0, 512)
    for sector in (512, 4096):
        if disk.size >= 2 * sector and disk.read(sector, 8) == b"EFI PART":
            return _gpt_esps(disk, sector), "GPT"
    if mbr[510:512] != b"\x55\xaa":
        raise UnreadableLayout("the disk has no partition table (no GPT header and no MBR signature)")
    esps = []
    for number in range(4):
        entry = mbr[446 + 16 * number : 446 + 16 * (number + 1)]
        kind = entry[4]
        start, count = struct.unpack_from("<II", entry, 8)
        if kind == _MBR_GPT_PROTECTIVE:
            raise UnreadableLayout("the MBR announces a GPT, but there is no GPT header")
        if kind == _MBR_ESP and count:
            esps.append(_Partition(number + 1, start * 512, count * 512))
    return esps, "MBR"


def _gpt_esps(disk: DiskReader, sector: int) -> list[_Partition]:
    header = disk.read(sector, 92)
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    if entry_size < 128 or entry_size % 8 or count > _MAX_GPT_ENTRIES:
        raise UnreadableLayout(f"the GPT header is malformed ({count} entries of {entry_size} bytes)")
    table = disk.read(entries_lba * sector, count * entry_size)
    esps = []
    for index in range(count):
        entry = table[index * entry_size : (index + 1) * entry_size]
        if uuid.UUID(bytes_le=entry[:16]) != ESP_TYPE_GUID:
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        if last >= first:
            esps.append(_Partition(index + 1, first * sector, (last - first + 1) * sector))
    return esps


# --------------------------------------------------------------------------------------------------
# FAT (12, 16 and 32; short names are enough for the loader paths)


@dataclass(frozen=True)
class _DirEntry:
    name: str  # 8.3 as "NAME.EXT", upper case
    is_dir: bool
    cluster: int
    size: int


class _Fat:
    def __init__(self, disk: DiskReader, partition: _Partition) -> None:
        self._disk = disk
        self._base = partition.start
        boot = disk.read(partition.start, 512)
        (bytes_per_sector, per_cluster, reserved, fats, root_entries, total16, _media, fat16_size) = struct.unpack_from(
            "<HBHBHHBH", boot, 11
        )
        total32, fat32_size, root_cluster = struct.unpack_from("<II4xI", boot, 32)
        if (
            bytes_per_sector not in (512, 1024, 2048, 4096)
            or per_cluster == 0
            or per_cluster & (per_cluster - 1)
            or not reserved
            or not fats
        ):
            raise UnreadableLayout(f"ESP (partition {partition.number}) is not a FAT filesystem")
        total = total16 or total32
        fat_size = fat16_size or fat32_size
        root_bytes = root_entries * 32
        root_sectors = (root_bytes + bytes_per_sector - 1) // bytes_per_sector
        first_data = reserved + fats * fat_size + root_sectors
        if not total or not fat_size or first_data >= total:
            raise UnreadableLayout(f"ESP (partition {partition.number}) has an inconsistent FAT boot sector")
        self._clusters = (total - first_data) // per_cluster
        self._bits = 12 if self._clusters < 4085 else 16 if self._clusters < 65525 else 32
        self._cluster_size = per_cluster * bytes_per_sector
        self._fat_offset = reserved * bytes_per_sector
        self._data_offset = first_data * bytes_per_sector
        self._root_offset = (reserved + fats * fat_size) * bytes_per_sector
        self._root_bytes = root_bytes
        self._root_cluster = root_cluster if self._bits == 32 else 0
        self.kind = f"FAT{self._bits}"

    def _next_cluster(self, cluster: int) -> int | None:
        value: int
        if self._bits == 12:
            pair = struct.unpack("<H", self._disk.read(self._base + self._fat_offset + cluster * 3 // 2, 2))[0]
            value = pair >> 4 if cluster & 1 else pair & 0xFFF
            end = 0xFF8
        elif self._bits == 16:
            (value,) = struct.unpack("<H", self._disk.read(self._base + self._fat_offset + cluster * 2, 2))
            end = 0xFFF8
        else:
            (raw,) = struct.unpack("<I", self._disk.read(self._base + self._fat_offset + cluster * 4, 4))
            value = raw & 0x0FFFFFFF
            end = 0x0FFFFFF8
        if value >= end:
            return None
        if not 2 <= value < self._clusters + 2:
            raise UnreadableLayout(f"the ESP's {self.kind} chain is broken (cluster {value})")
        return value

    def _chain(self, first: int, limit: int) -> Iterator[bytes]:
        """The contents of a cluster chain, at most ``limit`` bytes (which also stops loops)."""
        cluster: int | None = first
        produced = 0
        while cluster is not None and produced < limit:
            if not 2 <= cluster < self._clusters + 2:
                raise UnreadableLayout(f"the ESP's {self.kind} chain is broken (cluster {cluster})")
            offset = self._base + self._data_offset + (cluster - 2) * self._cluster_size
            yield self._disk.read(offset, self._cluster_size)
            produced += self._cluster_size
            cluster = self._next_cluster(cluster)

    def _entries(self, data: Iterator[bytes]) -> Iterator[_DirEntry]:
        for block in data:
            for at in range(0, len(block) - 31, 32):
                raw = block[at : at + 32]
                first = raw[0]
                if first == 0x00:
                    return
                attributes = raw[11]
                if first == 0xE5 or attributes == 0x0F or attributes & 0x08:
                    continue  # deleted, long-name part, volume label
                name = (b"\xe5" if first == 0x05 else raw[:1]) + raw[1:8]
                stem = name.decode("latin-1").rstrip()
                extension = raw[8:11].decode("latin-1").rstrip()
                high, low, size = struct.unpack_from("<H4xHI", raw, 20)
                cluster = (high << 16 | low) if self._bits == 32 else low
                full = f"{stem}.{extension}" if extension else stem
                yield _DirEntry(full.upper(), bool(attributes & 0x10), cluster, size)

    def root(self) -> list[_DirEntry]:
        if self._bits == 32:
            return list(self._entries(self._chain(self._root_cluster, _MAX_DIRECTORY_BYTES)))
        block = self._disk.read(self._base + self._root_offset, self._root_bytes)
        return list(self._entries(iter([block])))

    def listdir(self, entry: _DirEntry) -> list[_DirEntry]:
        if entry.cluster == 0:  # ".." of a first-level directory points at the root this way
            return self.root()
        return list(self._entries(self._chain(entry.cluster, _MAX_DIRECTORY_BYTES)))

    def head(self, entry: _DirEntry, length: int) -> bytes:
        length = min(length, entry.size)
        if length == 0 or entry.cluster == 0:
            return b""
        return b"".join(self._chain(entry.cluster, length))[:length]


def _lookup(entries: list[_DirEntry], name: str, *, directory: bool) -> _DirEntry | None:
    return next((e for e in entries if e.name == name and e.is_dir == directory), None)


# --------------------------------------------------------------------------------------------------
# PE


def _pe_machine(fat: _Fat, entry: _DirEntry) -> int | None:
    """The COFF machine field of a PE image, or None when the file is not a PE image."""
    head = fat.head(entry, 64)
    if len(head) < 64 or head[:2] != b"MZ":
        return None
    pe_offset = struct.unpack_from("<I", head, 0x3C)[0]
    if pe_offset + 6 > min(entry.size, _PE_HEADER_LIMIT):
        return None
    header = fat.head(entry, pe_offset + 6)[pe_offset:]
    if header[:4] != b"PE\x00\x00":
        return None
    machine: int = struct.unpack_from("<H", header, 4)[0]
    return machine


def _describe_machine(machine: int) -> str:
    return f"PE machine 0x{machine:04X}, {PE_MACHINES.get(machine, 'unknown')}"


# --------------------------------------------------------------------------------------------------
# Verdict


def _esp_verdict(fat: _Fat, where: str) -> ArchVerdict:
    efi = _lookup(fat.root(), "EFI", directory=True)
    if efi is None:
        return ArchVerdict(None, f"the ESP ({where}) has no EFI directory")
    efi_entries = fat.listdir(efi)
    boot = _lookup(efi_entries, "BOOT", directory=True)
    loaders = {}
    if boot is not None:
        loaders = {e.name: e for e in fat.listdir(boot) if not e.is_dir and e.name in _FALLBACK_LOADERS}
    aarch64 = loaders.get("BOOTAA64.EFI")
    if aarch64 is not None:
        machine = _pe_machine(fat, aarch64)
        if machine is None:
            return ArchVerdict(None, "EFI/BOOT/BOOTAA64.EFI is not a PE image")
        if machine == 0xAA64:
            return ArchVerdict("aarch64", "EFI/BOOT/BOOTAA64.EFI found (PE machine 0xAA64)")
        return ArchVerdict(
            _ARCH_OF_MACHINE.get(machine), f"EFI/BOOT/BOOTAA64.EFI is not aarch64 ({_describe_machine(machine)})"
        )
    if loaders:
        found = []
        for name, entry in sorted(loaders.items()):
            machine = _pe_machine(fat, entry)
            found.append(f"EFI/BOOT/{name} ({_describe_machine(machine) if machine else 'not a PE image'})")
        x86 = loaders.get("BOOTX64.EFI")
        arch: Arch | None = "x86_64" if x86 is not None and _pe_machine(fat, x86) == 0x8664 else None
        return ArchVerdict(arch, f"no EFI/BOOT/BOOTAA64.EFI; found {', '.join(found)}")
    return _vendor_verdict(fat, efi_entries)


def _vendor_verdict(fat: _Fat, efi_entries: list[_DirEntry]) -> ArchVerdict:
    """Without a removable-media loader, fall back to the programs in EFI/<vendor>/: they still tell
    the arch, though firmware with fresh variables will not find them on its own."""
    machines: dict[str, int] = {}
    for vendor in efi_entries:
        if not vendor.is_dir or vendor.name in (".", "..", "BOOT"):
            continue
        for entry in fat.listdir(vendor):
            if len(machines) >= _MAX_VENDOR_LOADERS:
                break
            if not entry.is_dir and entry.name.endswith(".EFI"):
                machine = _pe_machine(fat, entry)
                if machine is not None:
                    machines[f"EFI/{vendor.name}/{entry.name}"] = machine
    if not machines:
        return ArchVerdict(None, "the ESP has no EFI/BOOT loader and no other EFI programs")
    kinds = {_ARCH_OF_MACHINE.get(m) for m in machines.values()}
    listing = ", ".join(f"{path} ({_describe_machine(m)})" for path, m in sorted(machines.items()))
    if len(kinds) == 1 and None not in kinds:
        arch = kinds.pop()
        note = "no EFI/BOOT fallback loader, so fresh UEFI variables will not find it; "
        return ArchVerdict(arch, f"{note}{listing}")
    return ArchVerdict(None, f"no EFI/BOOT loader and mixed EFI programs: {listing}")


def _verdict(disk: DiskReader) -> ArchVerdict:
    esps, table = _find_esps(disk)
    if not esps:
        return ArchVerdict(
            None, f"no EFI system partition in the {table} (a BIOS-only disk, or not a UEFI-bootable one)"
        )
    reasons = []
    for esp in esps:
        where = f"partition {esp.number}"
        try:
            fat = _Fat(disk, esp)
            verdict = _esp_verdict(fat, where)
        except UnreadableLayout as exc:
            reasons.append(str(exc))
            continue
        if verdict.arch is not None:
            return verdict
        reasons.append(verdict.reason)
    return ArchVerdict(None, "; ".join(reasons))


def detect_disk_arch(path: Path) -> ArchVerdict:
    """The arch a raw or qcow2 disk boots on, from its ESP's loader. Undecidable disks (no ESP, a
    qcow2 with a backing file, a damaged FAT, …) give ``arch=None`` and the reason; an unreadable
    or compressed file raises ImageError."""
    disk_path = Path(path)
    disk_format = sniff_disk(disk_path)
    if disk_format.compression is not None:
        raise ImageError(
            f"{disk_path} is {disk_format.compression}-compressed; the arch check reads an uncompressed disk",
            hint="materialize (decompress) it first",
        )
    try:
        fd = open_regular(disk_path)
    except OSError as exc:
        raise ImageError(f"cannot read {disk_path}: {exc.strerror or exc}") from None
    try:
        disk: DiskReader = Qcow2Disk(fd) if disk_format.container == "qcow2" else RawDisk(fd)
        return _verdict(disk)
    except UnreadableLayout as exc:
        return ArchVerdict(None, str(exc))
    except OSError as exc:
        raise ImageError(f"cannot read {disk_path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
