"""A one-binary arm64 rootfs tarball for `podman import` on a machine with no registry access."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from . import packages

# A fixed mtime keeps the tarball's bytes a function of the busybox binary alone.
MTIME = 1_700_000_000


def write_busybox_tar(busybox: Path, dest: Path, applets: tuple[str, ...] = packages.BUSYBOX_APPLETS) -> Path:
    """bin/busybox and bin/APPLET -> busybox for each applet."""
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = MTIME
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        bin_dir = tarfile.TarInfo("bin")
        bin_dir.type = tarfile.DIRTYPE
        bin_dir.mode = 0o755
        add(bin_dir)
        body = busybox.read_bytes()
        binary = tarfile.TarInfo("bin/busybox")
        binary.size = len(body)
        binary.mode = 0o755
        add(binary, body)
        for applet in applets:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            add(link)
    tmp.replace(dest)
    return dest
