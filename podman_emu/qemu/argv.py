"""qemu command-line syntax: options, their values, and comma-escaped suboptions.

Podman stores the qemu argv as a flat list of strings; these helpers read it as (option, value)
pairs so edits happen on whole options, never on loose elements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from podman_emu.errors import ConfigInvalid

# qemu options that take no value. Everything else starting with "-" consumes the next element.
FLAG_OPTIONS = frozenset(
    {
        "-S", "-s", "-nographic", "-no-reboot", "-no-shutdown", "-enable-kvm", "-snapshot",
        "-daemonize", "-no-user-config", "-nodefaults", "-full-screen", "-no-hpet", "-no-acpi",
        "-usb", "-only-migratable", "-preconfig", "-no-fd-bootchk", "-win2k-hack", "-no-quit",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Option:
    """One option at `index` in the argv (index of the option element itself)."""

    index: int
    name: str
    value: str | None

    def elements(self) -> list[str]:
        return [self.name] if self.value is None else [self.name, self.value]


class ArgvSyntaxError(ValueError):
    pass


def iter_options(argv: Sequence[str]) -> Iterator[Option]:
    """Options after argv[0]. A value-taking option at the very end is a syntax error (podman's
    `set` would panic on a lone trailing `-m` too)."""
    index = 1
    while index < len(argv):
        element = argv[index]
        if not element.startswith("-"):
            raise ArgvSyntaxError(f"element {index} ({element!r}) is not an option and follows no option")
        name = "-" + element.lstrip("-") if element.startswith("--") else element
        if name in FLAG_OPTIONS:
            yield Option(index, element, None)
            index += 1
            continue
        if index + 1 >= len(argv):
            raise ArgvSyntaxError(f"option {element!r} at the end has no value")
        yield Option(index, element, argv[index + 1])
        index += 2


def machine_options(argv: Sequence[str], *, path: object = None) -> list[Option]:
    """The options of a machine's CmdLine, or the refusal every reader (list, inspect, status,
    plan) gives for one that is not a qemu command line. `path` names the config in the message."""
    try:
        return list(iter_options(argv))
    except ArgvSyntaxError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigInvalid(
            f"{where}CmdLine cannot be read as a qemu command: {exc}",
            hint="podman cannot start this machine either; recreate it with `podman machine init`.",
        ) from None


def canonical_name(name: str) -> str:
    """qemu accepts `--opt` for `-opt`, and `-machine` is `-M`."""
    bare = "-" + name.lstrip("-")
    return {"-machine": "-M"}.get(bare, bare)


def split_suboptions(value: str) -> list[str]:
    """Split `a=1,file=x,,y` into ["a=1", "file=x,y"]: qemu's `,,` is a literal comma."""
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(value):
        char = value[index]
        if char == ",":
            if value.startswith(",,", index):
                current.append(",")
                index += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def escape_value(value: str) -> str:
    """Make a path safe inside a qemu suboption list."""
    return value.replace(",", ",,")


def join_suboptions(parts: Sequence[str]) -> str:
    """Join already-escaped suboptions."""
    return ",".join(parts)


def suboption(value: str, key: str) -> str | None:
    """The value of `key=` in a suboption list, unescaped; None when absent."""
    for part in split_suboptions(value):
        name, sep, item = part.partition("=")
        if sep and name == key:
            return item
    return None


def replace_suboption(value: str, key: str, new: str) -> str:
    """Replace `key=…` with an unescaped `new`, keeping every other suboption as it was."""
    rebuilt = []
    for part in split_suboptions(value):
        name, sep, _ = part.partition("=")
        rebuilt.append(f"{key}={new}" if sep and name == key else part)
    return join_suboptions([escape_value(part) for part in rebuilt])


def first_value(argv: Sequence[str], name: str) -> str | None:
    """The value after the first element exactly equal to `name` — the same search podman's
    `machine set` does (editCmdLine)."""
    for option in iter_options(argv):
        if option.name == name:
            return option.value
    return None


# Accelerators that run the guest on the host CPU: with one of them a qemu-system-aarch64 guest is
# native (an Apple-silicon Mac's hvf, an arm64 Linux host's kvm), and TCG is only its fallback.
HOST_ACCELERATORS = frozenset({"kvm", "hvf", "whpx", "nvmm", "hax", "xen"})


def accelerators(argv: Sequence[str]) -> list[str]:
    """Every accelerator the argv names, in qemu's order of preference: `-accel NAME[,…]` (as
    often as given), `-machine …,accel=a:b`, `-enable-kvm`."""
    found: list[str] = []
    for option in iter_options(argv):
        name = canonical_name(option.name)
        if name == "-enable-kvm":
            found.append("kvm")
        elif name == "-accel" and option.value is not None:
            accel = suboption(option.value, "accel") or split_suboptions(option.value)[0]
            found.append(accel)
        elif name == "-M" and option.value is not None:
            found += [item for item in (suboption(option.value, "accel") or "").split(":") if item]
    return found
