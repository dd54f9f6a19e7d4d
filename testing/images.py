"""Builders shared by the images tests: real disks, real compressors, a real HTTP server.

Nothing here replaces code under test; it only makes inputs. The tools it runs (qemu-img, xz, gzip,
zstd, sgdisk, sfdisk, mkfs.vfat, mmd, mcopy) are required: a missing tool fails the test loudly
instead of skipping it.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1 << 20
ESP_START = MIB

# The tools' environment: mtools otherwise refuses some geometries mkfs.vfat produces.
_TOOL_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}


def run(*args: str | Path, stdin: bytes | None = None) -> bytes:
    tool = str(args[0])
    if shutil.which(tool) is None:
        raise AssertionError(f"the images tests need {tool} on PATH (see the CI package list)")
    result = subprocess.run([str(a) for a in args], input=stdin, capture_output=True, env=_TOOL_ENV, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{args} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def compress(path: Path, compression: str | None, out: Path) -> Path:
    """Compress with the real command-line tool into ``out`` (any name: the name must not matter)."""
    if compression is None:
        shutil.copyfile(path, out)
    elif compression == "xz":
        out.write_bytes(run("xz", "-c", "-T1", path))
    elif compression == "gz":
        out.write_bytes(run("gzip", "-c", path))
    elif compression == "zst":
        out.write_bytes(run("zstd", "-q", "-c", path))
    else:
        raise ValueError(compression)
    return out


def synthetic_pe(machine: int, *, pe_offset: int = 0x80, size: int = 24 * 1024) -> bytes:
    """A minimal PE image: DOS header with e_lfanew, the PE signature and a COFF header carrying the
    machine field, padded with a recognisable pattern. The arch check reads only these headers, so a
    synthetic image tests it as well as a real loader would (and needs no foreign-arch package)."""
    image = bytearray(b"\xcc" * max(size, pe_offset + 24))
    image[0:2] = b"MZ"
    struct.pack_into("<I", image, 0x3C, pe_offset)
    image[pe_offset : pe_offset + 4] = b"PE\x00\x00"
    struct.pack_into("<HHIIIHH", image, pe_offset + 4, machine, 3, 0, 0, 0, 0xF0, 0x22)
    return bytes(image)


AARCH64_PE = synthetic_pe(0xAA64)
X86_64_PE = synthetic_pe(0x8664)


def make_fat(path: Path, *, bits: int, size_mib: int, files: dict[str, bytes], sectors_per_cluster: int = 0) -> None:
    """A FAT filesystem image holding ``files`` ("EFI/BOOT/BOOTAA64.EFI": bytes)."""
    path.unlink(missing_ok=True)
    cluster = ["-s", str(sectors_per_cluster)] if sectors_per_cluster else []
    run("mkfs.vfat", "-F", str(bits), *cluster, "-n", "ESP", "-C", path, str(size_mib * 1024))
    made: set[str] = set()
    staging = path.parent / f"{path.name}.files"
    staging.mkdir(exist_ok=True)
    for name, content in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made:
                run("mmd", "-i", path, f"::/{directory}")
                made.add(directory)
        local = staging / parts[-1]
        local.write_bytes(content)
        run("mcopy", "-i", path, local, f"::/{name}")
    shutil.rmtree(staging)


def make_disk(
    path: Path,
    *,
    files: dict[str, bytes] | None,
    fat_bits: int = 16,
    table: str = "gpt",
    esp_mib: int = 32,
    disk_mib: int = 80,
    sectors_per_cluster: int = 0,
) -> Path:
    """A raw disk with a GPT (or MBR) holding an ESP at 1 MiB with ``files`` and a Linux partition
    after it. ``files=None`` makes the first partition a Linux one: a disk without an ESP."""
    path.unlink(missing_ok=True)
    with path.open("wb") as disk:
        disk.truncate(disk_mib * MIB)
    esp_sectors = esp_mib * MIB // 512
    if table == "gpt":
        first_type = "ef00" if files is not None else "8300"
        run("sgdisk", "-n", f"1:2048:+{esp_sectors - 1}", "-t", f"1:{first_type}", "-n", "2:0:0", "-t", "2:8300", path)
    else:
        first_type = "ef" if files is not None else "83"
        script = f"label: dos\nstart=2048, size={esp_sectors}, type={first_type}\ntype=83\n"
        run("sfdisk", "-q", path, stdin=script.encode())
    if files is not None:
        esp = path.with_name(path.name + ".esp")
        make_fat(esp, bits=fat_bits, size_mib=esp_mib, files=files, sectors_per_cluster=sectors_per_cluster)
        with path.open("r+b") as disk, esp.open("rb") as fat:
            disk.seek(ESP_START)
            shutil.copyfileobj(fat, disk)
        esp.unlink()
    return path


def to_qcow2(raw: Path, out: Path, *, compressed: bool = False) -> Path:
    run("qemu-img", "convert", *(["-c"] if compressed else []), "-f", "raw", "-O", "qcow2", raw, out)
    return out


# --------------------------------------------------------------------------------------------------
# A static file server on loopback that can misbehave on purpose.


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: int | None = None  # close the connection after sending this many body bytes...
    drops_left: int = 0  # ...this many times...
    drop_suffix: str = ".xz"  # ...for paths ending so
    honour_range: bool = True
    fail_status: int | None = None  # answer every request with this status
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: Behaviour
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # silence the default stderr log
        return

    def do_GET(self) -> None:
        behaviour = self.behaviour
        path = self.path.split("?")[0]
        behaviour.requests.append((path, self.headers.get("Range")))
        if behaviour.fail_status is not None:
            self._empty(behaviour.fail_status)
            return
        body = behaviour.files.get(path)
        if body is None:
            self._empty(404)
            return
        start, status = 0, 200
        requested = self.headers.get("Range")
        if requested and behaviour.honour_range:
            match = re.fullmatch(r"bytes=(\d+)-", requested)
            assert match, requested
            start = int(match.group(1))
            if start >= len(body):
                self._empty(416)
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        payload = body[start:]
        dropping = behaviour.drop_after is not None and path.endswith(behaviour.drop_suffix)
        if dropping and behaviour.drops_left > 0:
            behaviour.drops_left -= 1
            self.wfile.write(payload[: behaviour.drop_after])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextlib.contextmanager
def serve(behaviour: Behaviour) -> Iterator[str]:
    """Serve ``behaviour.files`` on 127.0.0.1 from a thread; yields the base URL."""
    handler = type("Handler", (_Handler,), {"behaviour": behaviour})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unused_port_url() -> str:
    """A loopback URL where nothing listens (the port was just released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/streams/stable.json"
