"""A real Debian 12 arm64 guest disk that behaves like a Fedora CoreOS podman machine guest, for
end-to-end runs of real podman 4.3.1 + podman-emu + the real gvproxy (real-guest.md).

API::

    build(cache_dir: Path = Path("/var/cache/podman-emu-tests"), *, log=None) -> RealGuest
        Root only. Returns the cached build for this builder's sources + package list
        (cache key: sha256 over testing/realguest/*.py and packages.key_material()), or builds it
        (~6-8 min cold: mmdebstrap, customise, ESP, ext4/GPT/qcow2 twice, busybox tar) under a
        lock shared by parallel callers. Calls prepare_host() first when it builds.

    prepare_host(cache_dir: Path) -> HostPrep
        Root only, idempotent: binfmt_misc + qemu-aarch64 (F flag); the trixie debs
        gvproxy_0.8.1-3_amd64 and ignition_2.14.0+ds1-1+b19_arm64 into cache_dir/debs through a
        private apt config (the system's sources and dpkg archs untouched); dpkg -i gvproxy when
        /usr/bin/gvproxy is missing; /usr/libexec/podman/gvproxy -> /usr/bin/gvproxy when none
        of podman 4.3.1's helper dirs has one (it does not search $PATH for gvproxy).

    @dataclass RealGuest:
        directory: Path          cache_dir/realguest-<key[:16]>/, files 0644
        disk: Path               guest.qcow2: first boot runs podman's Ignition, sshd makes
                                 its host keys, Ready goes out over virtio-serial
        slow_sshd_disk: Path     guest-slow-sshd.qcow2: the same, sshd held back 200 s
                                 (a stand-in for a very slow first boot)
        busybox_tar: Path        busybox-arm64.tar: bin/busybox + sh uname cat wget echo ls,
                                 for `podman import busybox-arm64.tar localhost/busybox-arm64`
        manifest: Path           manifest.json: paths, sizes, build seconds, phases, versions
        key: str                 the full cache key
        kernel_release, podman_version, ignition_version: str
        gvproxy: Path            the gvproxy podman will run (from prepare_host)
        cached: bool             True when nothing was built
        build_seconds: float     of the build that made it; phases: dict[str, float]

CLI: `python -m testing.realguest build --cache DIR` prints RealGuest as JSON (phase times on
stderr); `python -m testing.realguest prepare-host --cache DIR` prints HostPrep as JSON.

The guest's core user gets the host user's UID from podman's Ignition config; the kernel
console is ttyAMA0 with systemd status and the journal forwarded to it.
"""

from .build import DEFAULT_CACHE, RealGuest, build, cache_key
from .busybox import write_busybox_tar
from .host import HostPrep, prepare_host
from .run import BuildError

__all__ = [
    "DEFAULT_CACHE",
    "BuildError",
    "HostPrep",
    "RealGuest",
    "build",
    "cache_key",
    "prepare_host",
    "write_busybox_tar",
]
