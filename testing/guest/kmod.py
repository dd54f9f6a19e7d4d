"""Pick kernel modules out of an unpacked Debian kernel package.

The package ships no modules.dep (depmod runs at install time) and the host has no arm64 kmod,
so dependencies are read straight from each module's ELF `.modinfo` section.
"""

from __future__ import annotations

import struct
from pathlib import Path


def read_modinfo(ko: Path) -> dict[str, list[str]]:
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError(f"{ko} is not a little-endian ELF64 module")
    (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = e_shoff + index * e_shentsize
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, base)
        return name, offset, size

    _, str_off, str_size = section(e_shstrndx)
    names = data[str_off : str_off + str_size]
    info: dict[str, list[str]] = {}
    for index in range(e_shnum):
        name_off, offset, size = section(index)
        name = names[name_off : names.index(b"\0", name_off)]
        if name != b".modinfo":
            continue
        for entry in data[offset : offset + size].split(b"\0"):
            if b"=" in entry:
                key, _, value = entry.decode("utf-8", "replace").partition("=")
                info.setdefault(key, []).append(value)
    return info


def kernel_config(root: Path, release: str) -> dict[str, str]:
    config: dict[str, str] = {}
    for line in (root / "boot" / f"config-{release}").read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, _, value = line.partition("=")
            config[key] = value
    return config


class ModuleIndex:
    """Module name -> path for one unpacked kernel, with dependency closure."""

    def __init__(self, modules_dir: Path) -> None:
        self.modules_dir = modules_dir
        self.paths: dict[str, Path] = {}
        for ko in modules_dir.rglob("*.ko"):
            # Module names treat '-' and '_' alike; the on-disk names mix both.
            self.paths[ko.stem.replace("-", "_")] = ko
        builtin = modules_dir / "modules.builtin"
        self.builtin = {
            Path(line.strip()).stem.replace("-", "_")
            for line in (builtin.read_text().splitlines() if builtin.exists() else [])
            if line.strip()
        }

    def closure(self, wanted: list[str], *, optional: bool = False) -> list[str]:
        """Modules to insmod for `wanted`, dependencies first. Built-in ones are dropped.

        With optional=True, names this kernel has neither built in nor as a module are skipped
        instead of raising (used for features only some kernel flavours carry, such as 9p)."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:
            name = name.replace("-", "_")
            if name in seen or name in self.builtin:
                return
            seen.add(name)
            path = self.paths.get(name)
            if path is None:
                if optional:
                    return
                raise LookupError(f"module {name} is neither built in nor shipped in {self.modules_dir}")
            for deps in read_modinfo(path).get("depends", []):
                for dep in filter(None, deps.split(",")):
                    visit(dep)
            order.append(name)

        for name in wanted:
            visit(name)
        return order
