"""Finding and loading podman's machines: locate, read, parse, validate."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podman_emu import paths
from podman_emu.errors import ConfigInvalid, MachineNotFound, PodmanEmuError, UsageError
from podman_emu.podman.document import RawDocument, parse_document
from podman_emu.podman.layout import Layout, guess_podman_version, image_path, path_value
from podman_emu.podman.podman5 import podman5_argv
from podman_emu.qemu.argv import first_value

if TYPE_CHECKING:
    from podman_emu.podman.schema import Machine

MAX_CONFIG_BYTES = 16 * 1024 * 1024
# Podman builds file names from the machine name; anything with a path separator is not a name.
_NAME_PATTERN = re.compile(r"^[^/\x00]+$")


@dataclass(frozen=True)
class _MachineFile:
    name: str
    document: RawDocument
    layout: Layout

    @property
    def config_path(self) -> Path:
        return self.document.path

    @property
    def podman_version(self) -> str:
        return guess_podman_version(self.document.content, self.layout)


@dataclass(frozen=True)
class LoadedMachine(_MachineFile):
    """A machine whose config was validated just now: `config` is the pydantic model."""

    config: Machine


@dataclass(frozen=True)
class ConfigSummary:
    """What `list` and the running check read, taken from a document that passed validation (now,
    or on an earlier run with the very same bytes). Named like the pydantic models' fields, so
    both can be read the same way."""

    Name: str
    CmdLine: list[str]
    CPUs: int
    Memory: int
    DiskSize: int | None
    image_path: str
    qmp_socket: str
    pid_files: list[str]
    vm_pid_file: str | None
    starting: bool

    @classmethod
    def from_content(cls, content: dict[str, Any]) -> ConfigSummary:
        if "QEMUHypervisor" in content:
            return cls._from_podman5(content)
        pid_keys = [key for key in ("PidFilePath", "VMPidFilePath") if isinstance(content.get(key), dict)]
        pid_files = {key: path_value(content[key]) for key in pid_keys}
        return cls(
            Name=content["Name"],
            CmdLine=list(content["CmdLine"]),
            CPUs=content["CPUs"],
            Memory=content["Memory"],
            DiskSize=content.get("DiskSize"),
            image_path=image_path(content),
            qmp_socket=path_value(content["QMPMonitor"]["Address"]),
            pid_files=list(pid_files.values()),
            vm_pid_file=pid_files.get("VMPidFilePath"),
            starting=content.get("Starting") is True,
        )

    @classmethod
    def _from_podman5(cls, content: dict[str, Any]) -> ConfigSummary:
        qemu = content["QEMUHypervisor"]
        pid_file = path_value(qemu["QEMUPidPath"])
        return cls(
            Name=content["Name"],
            CmdLine=podman5_argv(content),
            CPUs=content["Resources"]["CPUs"],
            Memory=content["Resources"]["Memory"],
            DiskSize=content["Resources"]["DiskSize"],
            image_path=image_path(content),
            qmp_socket=path_value(qemu["QMPMonitor"]["Address"]),
            pid_files=[pid_file],
            vm_pid_file=pid_file,
            starting=content.get("Starting") is True,
        )


@dataclass(frozen=True)
class ConfiguredQemu:
    """What a machine's config says qemu runs with (list, inspect and status all show it)."""

    qemu: str
    cpu: str | None
    cpus: int
    memory_mib: int

    @classmethod
    def of(cls, config: Machine | ConfigSummary, argv: list[str] | None = None) -> ConfiguredQemu:
        """`argv`: what runs when the config stores none (podman 5), else its CmdLine."""
        argv = argv or config.CmdLine
        return cls(qemu=argv[0], cpu=first_value(argv, "-cpu"), cpus=config.CPUs, memory_mib=config.Memory)

    def to_json(self) -> dict[str, object]:
        return {"qemu": self.qemu, "cpu": self.cpu, "cpus": self.cpus, "memory_mib": self.memory_mib}


@dataclass(frozen=True)
class ListedMachine(_MachineFile):
    """A machine as `list` sees it: validated now or before, summarised without pydantic."""

    config: ConfigSummary


@dataclass(frozen=True)
class BrokenMachine:
    """A `*.json` in podman's dir that cannot be loaded; listed with the reason, never touched."""

    name: str
    config_path: Path
    error: PodmanEmuError


def config_path_for(name: str) -> Path:
    if not _NAME_PATTERN.match(name) or name in (".", ".."):
        raise UsageError(f"{name!r} is not a machine name", hint="Run `podman-emu list` to see the machines.")
    return paths.podman_config_dir() / f"{name}.json"


def read_config_bytes(path: Path) -> bytes:
    """Read a config, with an error that names the cause for every way it can be unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise MachineNotFound(
            f"no machine config at {path}",
            hint="Run `podman-emu list` (or `podman machine list`) to see the machines podman knows.",
        ) from None
    except PermissionError:
        raise ConfigInvalid(
            f"{path}: permission denied", hint="Run podman-emu as the user who owns the machine."
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigInvalid(
                f"{path}: a symbolic link that loops", hint="Point the link at the real file or replace it."
            ) from None
        raise ConfigInvalid(f"{path}: cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigInvalid(
                f"{path}: not a regular file", hint="Podman keeps each machine in a regular NAME.json file."
            )
        chunks = []
        remaining = MAX_CONFIG_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise ConfigInvalid(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigInvalid(
            f"{path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB, which no podman config is",
            hint="This is not a file podman wrote.",
        )
    return data


def read_document(path: Path) -> RawDocument:
    return parse_document(path, read_config_bytes(path))


def load_machine_file(path: Path) -> LoadedMachine:
    # Imported here for start-up speed: pydantic is most of `list`'s import time, and a listing of
    # configs validated before (list_cache) never needs it.
    from podman_emu.podman.schema import validate_machine

    document = read_document(path)
    layout, config = validate_machine(path, document.content)
    return LoadedMachine(name=path.stem, document=document, layout=layout, config=config)


def load_machine(name: str) -> LoadedMachine:
    path = config_path_for(name)
    if not path.exists():
        # Not a qemu machine: a machine of another provider gets its own answer (the 5.x refusal
        # names the provider and what applies there) instead of "no machine config".
        for directory in paths.other_provider_config_dirs():
            if (directory / path.name).is_file():
                return load_machine_file(directory / path.name)
    return load_machine_file(path)


def config_files() -> list[Path]:
    """Every top-level `*.json` in podman's qemu config dir, as podman's own list walks them."""
    directory = paths.podman_config_dir()
    try:
        return sorted(entry for entry in directory.iterdir() if entry.name.endswith(".json"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigInvalid(f"{directory}: cannot list: {exc.strerror}") from None


def machine_names() -> list[str]:
    directory = paths.podman_config_dir()
    try:
        return sorted(entry.name[:-5] for entry in directory.iterdir() if entry.name.endswith(".json"))
    except OSError:
        return []


def _path_strings(value: Any) -> Iterator[str]:
    """Every absolute path a config mentions: plain values and qemu suboptions (file=/x,…)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            for part in item.split(","):
                candidate = part.split("=", 1)[-1].removeprefix("unix:")
                if os.path.isabs(candidate) and "\x00" not in candidate:
                    yield candidate


def referenced_paths() -> set[str]:
    """Every file a current machine config names, as written and resolved: cleanup never
    deletes one of them, whoever created it (two machines inited from one --image-path share it).
    A config that cannot be read protects nothing, so cleanup refuses to guess about it."""
    found: set[str] = set()
    for config in config_files():
        try:
            content = read_document(config).content
        except PodmanEmuError:
            continue
        for path in _path_strings(content):
            found.update({os.path.normpath(path), os.path.realpath(path)})
    return found
