#!/usr/bin/env bash
# Runs the README's first command (install + demo) as root in a fresh Debian 12 root, so a
# newcomer's first step is proven on a machine that has nothing but a minimal Debian: no sudo,
# no qemu, no python3-venv, no podman. Exits non-zero when that command fails.
# Needs root and mmdebstrap. The base tarball is cached; the root is rebuilt from it every run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
started=$(date +%s)
cache=${PODMAN_EMU_TEST_CACHE:-/var/cache/podman-emu-tests}
tarball=$cache/fresh-bookworm-minbase.tar
mirrors=(
  "deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main"
)

if [ "$(id -u)" != 0 ]; then
  echo "check-readme-fresh: needs root (chroot, mounts); run it with sudo" >&2
  exit 1
fi
command -v mmdebstrap >/dev/null || { echo "check-readme-fresh: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }

# The README's first command, taken from the README itself so the two cannot drift apart.
readme_command=$(awk '/^## Quick start/{q=1} q && /^```sh/{getline; print; exit}' "$repo/README.md")
[ -n "$readme_command" ] || { echo "check-readme-fresh: no sh block under '## Quick start' in README.md" >&2; exit 1; }

mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  echo "check-readme-fresh: building the base root $tarball"
  mmdebstrap --variant=minbase --format=tar --quiet bookworm "$tarball.partial" "${mirrors[@]}"
  mv "$tarball.partial" "$tarball"
fi

root=$(mktemp -d /var/tmp/podman-emu-fresh.XXXXXX)
mounted=()
rc=1
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -l "${mounted[i]}" 2>/dev/null || true
  done
  rm -rf --one-file-system "$root"
  echo "check-readme-fresh: exit $rc, wall time $(($(date +%s) - started)) s (fresh root built, used and removed)"
}
trap cleanup EXIT
tar -xf "$tarball" -C "$root"
for fs in proc sys dev; do
  mount --rbind "/$fs" "$root/$fs"
  mount --make-rslave "$root/$fs"
  mounted+=("$root/$fs")
done
cp /etc/resolv.conf "$root/etc/resolv.conf"
# PyPI is reached through the host's pip settings. The CA bundle they name goes to a path of its
# own: installing ca-certificates in the root regenerates /etc/ssl/certs/ca-certificates.crt.
if [ -f /etc/pip.conf ]; then
  cp /etc/pip.conf "$root/etc/pip.conf"
  pip_cert=$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' /etc/pip.conf | head -n1)
  if [ -n "$pip_cert" ] && [ -f "$pip_cert" ]; then
    cp "$pip_cert" "$root/etc/pip-host-ca.crt"
    sed -i 's|^\([[:space:]]*cert[[:space:]]*=\).*|\1 /etc/pip-host-ca.crt|' "$root/etc/pip.conf"
  fi
fi
mkdir -p "$root/root/podman-emu"
git -C "$repo" archive --format=tar HEAD | tar -xf - -C "$root/root/podman-emu"

path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set +e
if [ "${FRESH_AS:-root}" = sudo-user ]; then
  # The README's other reader: a user with sudo (sudo installed first; the user, not root, runs it).
  echo "check-readme-fresh: running the README's first command as a user with sudo in a fresh Debian 12 root:"
  echo "  $readme_command"
  chroot "$root" /bin/bash -c "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null \
    && useradd -m -s /bin/bash newcomer && echo 'newcomer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/newcomer \
    && cp -a /root/podman-emu /home/newcomer/ && chown -R newcomer: /home/newcomer/podman-emu"
  env -i TERM="${TERM:-dumb}" PATH=$path LANG=C.UTF-8 HOME=/home/newcomer \
    chroot --userspec=newcomer:newcomer "$root" /bin/bash -c "cd /home/newcomer/podman-emu && $readme_command"
else
  echo "check-readme-fresh: running the README's first command as root in a fresh Debian 12 root:"
  echo "  $readme_command"
  env -i HOME=/root TERM="${TERM:-dumb}" PATH=$path LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    chroot "$root" /bin/bash -c "cd /root/podman-emu && $readme_command"
fi
rc=$?
set -e
exit "$rc"
