"""Finding and loading podman's machines: locate, read, parse, validate."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from podman_emu import locations
from podman_emu.document import RawDocument, parse_document
from podman_emu.errors import ConfigInvalid, MachineNotFound, PodmanEmuError, UsageError
from podman_emu.layouts import Layout, detect_layout, guess_podman_version

if TYPE_CHECKING:
    from podman_emu.models import Machine

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
    model: Machine


@dataclass(frozen=True)
class MachineFacts:
    """What `list` and the running check read, taken from a document that passed validation (now,
    or on an earlier run with the very same bytes). Named like the pydantic models' fields."""

    Name: str
    CmdLine: list[str]
    CPUs: int
    Memory: int
    DiskSize: int
    image_path: str
    qmp_socket: str
    pid_files: list[str]
    starting: bool

    @classmethod
    def from_content(cls, content: dict[str, Any]) -> MachineFacts:
        def path(value: Any) -> str:
            return str(value if isinstance(value, str) else value["Path"])

        return cls(
            Name=content["Name"],
            CmdLine=list(content["CmdLine"]),
            CPUs=content["CPUs"],
            Memory=content["Memory"],
            DiskSize=content["DiskSize"],
            image_path=path(content["ImagePath"]),
            qmp_socket=path(content["QMPMonitor"]["Address"]),
            pid_files=[
                path(content[key]) for key in ("PidFilePath", "VMPidFilePath") if isinstance(content.get(key), dict)
            ],
            starting=content.get("Starting") is True,
        )


@dataclass(frozen=True)
class ListedMachine(_MachineFile):
    model: MachineFacts


@dataclass(frozen=True)
class BrokenMachine:
    """A `*.json` in podman's dir that cannot be loaded; listed with the reason, never touched."""

    name: str
    config_path: Path
    error: PodmanEmuError


def config_path_for(name: str) -> Path:
    if not _NAME_PATTERN.match(name) or name in (".", ".."):
        raise UsageError(f"{name!r} is not a machine name", hint="Run `podman-emu list` to see the machines.")
    return locations.podman_config_dir() / f"{name}.json"


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


def load_machine_file(path: Path) -> LoadedMachine:
    from podman_emu.models import validate_machine

    document = parse_document(path, read_config_bytes(path))
    layout, model = validate_machine(path, document.content)
    return LoadedMachine(name=path.stem, document=document, layout=layout, model=model)


def load_machine(name: str) -> LoadedMachine:
    return load_machine_file(config_path_for(name))


def _config_files() -> list[Path]:
    """Every top-level `*.json` in podman's qemu config dir, as podman's own list walks them."""
    directory = locations.podman_config_dir()
    try:
        return sorted(entry for entry in directory.iterdir() if entry.name.endswith(".json"))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigInvalid(f"{directory}: cannot list: {exc.strerror}") from None


def _validation_cache() -> tuple[Path, str]:
    # Validation depends only on the bytes and on the models: a new podman-emu (or an edited
    # models.py) starts a fresh cache.
    models_file = Path(__file__).with_name("models.py")
    info = models_file.stat()
    return locations.cache_dir() / "validated-configs.json", f"{info.st_size}:{info.st_mtime_ns}"


VALIDATION_CACHE_ENTRIES = 512


def discover_listing() -> list[ListedMachine | BrokenMachine]:
    """Every machine for `list`. A config whose exact bytes passed validation before is not
    validated again, so a listing of unchanged machines never imports pydantic (most of the
    start-up time of `podman-emu list`, see benchmarks/cli_latency.py)."""
    cache_file, fingerprint = _validation_cache()
    try:
        cached = json.loads(cache_file.read_text())
        known: list[str] = cached["digests"] if cached.get("fingerprint") == fingerprint else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        known = []
    fresh: list[str] = []
    machines: list[ListedMachine | BrokenMachine] = []
    for entry in _config_files():
        try:
            document = parse_document(entry, read_config_bytes(entry))
            if document.sha256 in known:
                layout = detect_layout(entry, document.content)
            else:
                from podman_emu.models import validate_machine

                layout, _ = validate_machine(entry, document.content)
                fresh.append(document.sha256)
            machines.append(ListedMachine(entry.stem, document, layout, MachineFacts.from_content(document.content)))
        except PodmanEmuError as error:
            machines.append(BrokenMachine(entry.stem, entry, error))
    if fresh:
        digests = (known + fresh)[-VALIDATION_CACHE_ENTRIES:]
        try:
            locations.ensure_private_dir(cache_file.parent)
            temporary = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"fingerprint": fingerprint, "digests": digests}))
            temporary.replace(cache_file)
        except OSError:
            pass  # an unwritable cache only costs the next listing a validation
    return machines


def machine_names() -> list[str]:
    directory = locations.podman_config_dir()
    try:
        return sorted(entry.name[:-5] for entry in directory.iterdir() if entry.name.endswith(".json"))
    except OSError:
        return []
