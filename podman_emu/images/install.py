"""One call for convert: a verified, aarch64, resized disk in place, or nothing at all."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from podman_emu.errors import ImageError
from podman_emu.images.arch import ArchVerdict, detect_disk_arch
from podman_emu.images.formats import DiskFormat, sniff_disk
from podman_emu.images.materialize import materialize
from podman_emu.images.resize import resize_disk, virtual_size


@dataclass(frozen=True)
class DiskSource:
    """The image a conversion starts from, as the user named it (or the stream cache holds it)."""

    path: Path
    sha256: str | None = None  # of the file as given (compressed or not)
    uncompressed_sha256: str | None = None
    description: str = ""


@dataclass(frozen=True)
class DiskInstall:
    """Everything install_disk needs, decided once by convert and passed through unchanged."""

    source: DiskSource
    size_gib: int | None  # the machine's DiskSize: the disk is grown to it, as podman does
    qemu_img: str
    force: bool = False  # use a disk the arch check calls x86_64
    progress: bool = False


@dataclass(frozen=True)
class InstalledDisk:
    path: Path
    format: DiskFormat
    source_sha256: str
    disk_sha256: str  # of the decompressed image as written, before resizing
    arch: ArchVerdict  # arch None: undecidable, the CLI should warn with arch.reason
    virtual_size: int | None  # bytes, when qemu-img was run (size_gib given)


def check_arch(verdict: ArchVerdict, subject: str, *, force: bool) -> None:
    """Refuse an x86_64 disk unless forced: under aarch64 firmware it hangs without a message."""
    if verdict.arch == "x86_64" and not force:
        raise ImageError(
            f"{subject} is an x86_64 disk ({verdict.reason}); an emulated aarch64 machine cannot boot it",
            hint="use an aarch64 image (…-qemu.aarch64.qcow2.xz, or --stream stable); --force uses it anyway",
        )


def install_disk(install: DiskInstall, destination: Path) -> InstalledDisk:
    """Materialize the source at ``destination``, check its arch and grow it to ``size_gib``, all
    on the temporary file before it is renamed into place: a corrupt, wrong-arch or unresizable
    image never appears at ``destination``. An uncompressed source is checked before copying, so a
    wrong disk is refused without writing gigabytes first."""
    source, force, size_gib = install.source.path, install.force, install.size_gib
    if sniff_disk(source).compression is None:
        check_arch(detect_disk_arch(source), str(source), force=force)
    verdict: ArchVerdict | None = None
    size: int | None = None

    def before_place(temporary: Path) -> None:
        nonlocal verdict, size
        verdict = detect_disk_arch(temporary)
        check_arch(verdict, str(source), force=force)
        if size_gib is not None:
            resize_disk(temporary, size_gib, qemu_img=install.qemu_img)
            size = virtual_size(temporary, qemu_img=install.qemu_img)

    result = materialize(
        source,
        destination,
        expected_sha256=install.source.sha256,
        expected_uncompressed_sha256=install.source.uncompressed_sha256,
        hash_output=True,  # in the writer thread, alongside decompression: costs no wall-clock time
        progress=install.progress,
        before_place=before_place,
    )
    # before_place always runs before materialize returns; hash_output=True always gives a digest.
    assert verdict is not None and result.disk_sha256 is not None
    return InstalledDisk(destination, result.format, result.source_sha256, result.disk_sha256, verdict, size)
