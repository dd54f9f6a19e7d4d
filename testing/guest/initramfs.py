"""A busybox initramfs whose /init plays the part of Fedora CoreOS for podman machine.

What podman 4.3.1 needs from its guest: read the ignition config from fw_cfg, write "Ready\\n" to
the virtio-serial port org.fedoraproject.port.0 (podman blocks on that line with no timeout) and
power off on an ACPI power-button event (`podman machine stop` sends QMP system_powerdown, then
waits for the qemu pid with no timeout). Each step prints a marker on the serial console so tests
can tell how far a boot got.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

from .debian import require_tool

MARK = "PODMAN-EMU-GUEST"

# Must stay a valid POSIX shell script for busybox ash. Kept free of bashisms on purpose.
DEFAULT_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /run /tmp /mnt/vol0
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mark() { echo "@MARK@ $*" > /dev/console; }
# Keep kernel messages from splitting marker lines from here on.
echo 1 > /proc/sys/kernel/printk
mark INIT-START uptime=$(cut -d' ' -f1 /proc/uptime)
mark UNAME-M=$(uname -m)
mark UNAME-R=$(uname -r)
mark CMDLINE=$(cat /proc/cmdline)
for m in $(cat /etc/guest-modules); do
    insmod /lib/modules/$m.ko 2>/dev/null || mark MODULE-FAILED=$m
done
mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null
# systemd-boot records the partition it was loaded from; this proves the kernel came off the disk.
lp=/sys/firmware/efi/efivars/LoaderDevicePartUUID-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f
if [ -r "$lp" ]; then
    mark LOADER-PARTUUID=$(dd if="$lp" bs=1 skip=4 2>/dev/null | tr -d '\000' | tr 'A-F' 'a-f')
else
    mark LOADER-PARTUUID=none
fi
ign=/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw
if [ -r "$ign" ]; then
    mark IGNITION-BYTES=$(wc -c < "$ign")
    echo "IGNITION-SHA256=$(sha256sum "$ign" | cut -d' ' -f1)" > /dev/console
else
    mark IGNITION-MISSING
fi
if grep -q vol0 /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null \
        && mount -t 9p -o trans=virtio,version=9p2000.L,ro vol0 /mnt/vol0 2>/dev/null; then
    mark VOL0-MOUNTED
    umount /mnt/vol0
fi
port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.fedoraproject.port.0 ] && port=/dev/${p##*/}
    done
    [ -n "$port" ] && [ -c "$port" ] || { port=; sleep 0.1; i=$((i+1)); }
done
if [ -n "$port" ]; then
    mark READY-PORT=$port
    # Blocks until the host side of the chardev is connected, as FCOS's ready.service does.
    printf 'Ready\n' > "$port"
    mark READY-SENT uptime=$(cut -d' ' -f1 /proc/uptime)
else
    mark READY-PORT=none
fi
button=
for n in /sys/class/input/input*; do
    [ "$(cat "$n/name" 2>/dev/null)" = "Power Button" ] || continue
    for e in "$n"/event*; do [ -e "$e" ] && button=/dev/input/${e##*/}; done
done
mark GUEST-UP power-button=${button:-none}
if [ -n "$button" ]; then
    # One input_event is 24 bytes on arm64; evdev rejects shorter reads.
    dd if="$button" of=/dev/null bs=24 count=1 2>/dev/null
    mark POWER-BUTTON
    sync
    poweroff -f
fi
while :; do sleep 3600; done
"""


def render_init(template: str) -> str:
    return template.replace("@MARK@", MARK)


def build_initramfs(
    dest: Path,
    *,
    busybox: Path,
    modules: list[tuple[str, Path]],
    init_script: str,
    workdir: Path,
) -> Path:
    """Write a gzip'd newc cpio with busybox, the given modules (load order kept) and /init."""
    require_tool("cpio", "cpio")
    root = workdir / "initramfs-root"
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("bin", "dev", "etc", "lib/modules", "proc", "sys", "run", "tmp", "mnt"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "bin" / "busybox").chmod(0o755)
    for name, path in modules:
        shutil.copyfile(path, root / "lib" / "modules" / f"{name}.ko")
    (root / "etc" / "guest-modules").write_text("".join(f"{name}\n" for name, _ in modules))
    init = root / "init"
    init.write_text(render_init(init_script))
    init.chmod(0o755)

    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    # A fixed mtime keeps the archive stable across rebuilds of the same inputs.
    for p in [root, *root.rglob("*")]:
        os.utime(p, (0, 0), follow_symlinks=False)
    proc = subprocess.run(
        ["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0", "--reproducible"],
        cwd=root,
        input=("\n".join(names) + "\n").encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cpio failed: {proc.stderr.decode(errors='replace')}")
    with gzip.GzipFile(dest, "wb", compresslevel=6, mtime=0) as out:
        out.write(proc.stdout)
    return dest
