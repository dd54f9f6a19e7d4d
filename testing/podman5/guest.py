"""The arm64 guest a converted podman 5.4.2 machine boots, and the busybox image for it.

podman 5.4.2 asks of its guest what podman 4.3.1 did (testing.realguest, real-guest.md), plus
two things, both checked against a real boot of the Debian 12 guest under podman 5.4.2:

- Ready on the virtio-serial port `org.fedoraproject.port.0` (guest /dev/vport1p1): 5.4.2's
  Ignition (spec 3.2.0) has a ready.service like 4.3.1's (`After=sshd.service`, `echo Ready
  >/dev/vport1p1`); the real ignition 2.14 applies it, with core's key and UID, on first boot.
- after Ready, over ssh: `sudo mkdir -p TARGET` and `sudo mount -t virtiofs TAG TARGET -o
  context="system_u:object_r:nfs_t:s0"` (v5.4.2 pkg/machine/qemu/stubber.go:340-377). The
  Debian 12 arm64 kernel (6.1) has virtiofs, and SELinux is not among its active LSMs
  (/sys/kernel/security/lsm: lockdown,capability,landlock,yama,apparmor,tomoyo,bpf); the mount
  with `context=` succeeds all the same (observed: `TAG on TARGET type virtiofs (rw,relatime)`),
  most likely because util-linux's libmount leaves SELinux options out when SELinux is disabled.
  So no guest-side stand-in for FCOS's SELinux is needed.

The podman inside the guest stays Debian 12's 4.3.1: podman 5.4.2's client accepts a service
whose libpod API is >= 4.0.0 (v5.4.2 pkg/bindings/connection.go pingNewConnection,
version.APIVersion MinimalAPI), and the scenario's `run`, `import`, `info` and `-v` work across
the two versions. So the guest is testing.realguest's build, shared with the 4.3.1 suite (one
cache entry, one build).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .root import DEFAULT_CACHE


def build_guest(cache_dir: Path = DEFAULT_CACHE, *, log: Callable[[str], None] | None = None) -> Any:
    """testing.realguest.RealGuest: .disk, .busybox_tar, .directory (root only to build)."""
    from testing import realguest

    return realguest.build(cache_dir, log=log)
