"""The files that make a Debian root behave like a Fedora CoreOS podman machine guest, each with
the failure or FCOS behaviour it stands for (real-guest.md §1-§4)."""

from __future__ import annotations

from dataclasses import dataclass

from . import packages

FIRSTBOOT_UNIT = "podman-guest-firstboot.service"
FIRSTBOOT_DONE = "/var/lib/podman-guest/firstboot.done"
SLOW_SSHD_DROPIN = "etc/systemd/system/ssh.service.d/50-slow-first-boot.conf"


@dataclass(frozen=True)
class GuestFile:
    path: str  # relative to the root
    content: str
    mode: int = 0o644


# FCOS runs Ignition from its initramfs on first boot; this root has no such initramfs, so the
# real ignition binary runs from the real root, before sysinit.target, with the same stages and
# the qemu platform (config from fw_cfg opt/com.coreos/config).
FIRSTBOOT_SCRIPT = rf"""#!/bin/sh
set -eu
log() {{ echo "podman-guest-firstboot: $*"; }}
log "ignition fetch-offline"
/usr/local/sbin/ignition --root=/ --platform=qemu --stage=fetch-offline --log-to-stdout
log "ignition files"
/usr/local/sbin/ignition --root=/ --platform=qemu --stage=files --log-to-stdout
log "ignition done"

# FCOS applies ignition's preset file through systemd's first-boot preset-all. Only units that
# exist here: podman's config also names FCOS-only ones (zincati), and systemctl would fail on them.
exists() {{
    for d in /etc/systemd/system /usr/lib/systemd/system; do
        if [ -e "$d/$1" ] && [ "$(readlink "$d/$1" || true)" != /dev/null ]; then return 0; fi
    done
    return 1
}}
enable=""
disable=""
preset=/etc/systemd/system-preset/20-ignition.preset
if [ -f "$preset" ]; then
    while read -r verb unit _rest; do
        case "$verb" in enable|disable) ;; *) continue ;; esac
        if ! exists "$unit"; then log "preset: $verb $unit skipped (no such unit, or masked)"; continue; fi
        if [ "$verb" = enable ]; then enable="$enable $unit"; else disable="$disable $unit"; fi
    done < "$preset"
fi
# One systemctl run per verb: each run costs seconds under TCG.
if [ -n "$enable" ]; then log "preset: enable$enable"; systemctl enable $enable; fi
if [ -n "$disable" ]; then log "preset: disable$disable"; systemctl disable $disable || log "disable failed"; fi

# sudo and ssh want the host name resolvable, whatever name the machine got.
name=$(cat /etc/hostname 2>/dev/null || echo localhost)
if ! grep -qw -- "$name" /etc/hosts; then printf '127.0.1.1\t%s\n' "$name" >> /etc/hosts; fi

mkdir -p "$(dirname {FIRSTBOOT_DONE})"
touch {FIRSTBOOT_DONE}
# The units ignition wrote (ready.service, podman.socket) join this boot's transaction.
systemctl daemon-reload
systemctl --no-block start default.target
log "done"
"""

FIRSTBOOT_SERVICE = f"""[Unit]
Description=Ignition on first boot (FCOS runs it from its initramfs)
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=sysinit.target ssh.service systemd-logind.service systemd-user-sessions.service
ConditionPathExists=!{FIRSTBOOT_DONE}

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/podman-guest-firstboot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=sysinit.target
"""

INITRAMFS_HOOK = """#!/bin/sh
# The initrd must find a virtio root without udev's help; MODULES=list keeps it small.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
""" + "".join(f"force_load {m}\n" for m in packages.INITRD_MODULES)


def root_files(hostname: str, machine_id: str) -> list[GuestFile]:
    return [
        GuestFile("usr/local/libexec/podman-guest-firstboot", FIRSTBOOT_SCRIPT, 0o755),
        GuestFile(f"etc/systemd/system/{FIRSTBOOT_UNIT}", FIRSTBOOT_SERVICE),
        # Debian's ignition build relabels what it wrote for SELinux: without this file it fails
        # with "failed to open /etc/selinux/config", and setfiles is what it runs to relabel.
        GuestFile("etc/selinux/config", "SELINUX=disabled\nSELINUXTYPE=targeted\n"),
        GuestFile(
            "usr/local/sbin/setfiles",
            "#!/bin/sh\n# No SELinux: take the relabel list, do nothing.\ncat >/dev/null\n",
            0o755,
        ),
        # FCOS: core is in wheel, which may sudo without a password; podman machine ssh relies on it.
        GuestFile("etc/sudoers.d/core", "core ALL=(ALL) NOPASSWD: ALL\n", 0o440),
        # Ignition writes the keys to authorized_keys.d/ignition; FCOS reads them via ssh-key-dir.
        GuestFile(
            "etc/ssh/sshd_config.d/10-ignition.conf",
            "AuthorizedKeysFile .ssh/authorized_keys .ssh/authorized_keys.d/ignition\n",
        ),
        # FCOS generates sshd host keys on first boot; under TCG that costs real seconds (58 s
        # measured on a loaded 2-core host), which is part of what a start must survive. Debian's
        # `sshd -t` would fail without keys, so the key generation comes before it. FCOS runs it
        # in oneshot units, which have no start timeout; systemd's 90 s default here would fail
        # ssh.service on a busy host, and ready.service (only After= sshd) would send Ready anyway.
        GuestFile(
            "etc/systemd/system/ssh.service.d/10-host-keys.conf",
            "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n"
            "TimeoutStartSec=infinity\n",
        ),
        GuestFile("etc/systemd/network/20-wired.network", "[Match]\nName=e*\n\n[Network]\nDHCP=ipv4\n"),
        # gvproxy's DNS; there is no systemd-resolved in bookworm's systemd package.
        GuestFile("etc/resolv.conf", "nameserver 192.168.127.1\n"),
        GuestFile(
            "etc/systemd/system/ready.service.d/10-network.conf",
            "[Unit]\nWants=network-online.target\nAfter=network-online.target\n",
        ),
        # podman's remove-moby.service is for rpm-ostree; its stamp makes it a no-op.
        GuestFile("var/lib/remove-moby.stamp", ""),
        # FCOS names the virtio serial ports under /dev/virtio-ports/ like this.
        GuestFile(
            "etc/udev/rules.d/60-virtio-ports.rules",
            'SUBSYSTEM=="virtio-ports", KERNEL=="vport*", ATTR{name}=="?*", SYMLINK+="virtio-ports/$attr{name}"\n',
        ),
        # A fixed id: no systemd first-boot (preset-all would enable every Debian unit).
        GuestFile("etc/machine-id", machine_id + "\n", 0o444),
        GuestFile("etc/hostname", hostname + "\n"),
        GuestFile("etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost\n"),
    ]


# Removed from the Debian root: each one makes podman's ignition config or podman fail.
REMOVED_PATHS = (
    # podman's config links /etc/localtime without overwrite; Debian has one (-> Etc/UTC), FCOS none.
    "etc/localtime",
    # With it rootful podman picks CNI, and there are no CNI plugins (FCOS uses netavark).
    "etc/cni/net.d/87-podman-bridge.conflist",
)
REMOVED_GLOBS = ("etc/ssh/ssh_host_*",)

# A stand-in for a very slow first boot (FCOS under TCG with much to do): sshd starts 200 s
# after the network is up. Without TimeoutStartSec=infinity systemd's 90 s default would kill the
# sleep and podman's ready.service would send Ready with no sshd at all.
SLOW_SSHD = GuestFile(
    SLOW_SSHD_DROPIN,
    "# Slow-first-boot stand-in: hold sshd back 200 s.\n"
    "[Unit]\nAfter=network-online.target\nWants=network-online.target\n\n"
    "[Service]\nExecStartPre=/bin/sleep 200\nTimeoutStartSec=infinity\n",
)
