#!/usr/bin/env bash
# The README's first command: install what the demo needs (Debian/Ubuntu packages, with sudo only
# when not already root: a fresh Debian box has no sudo), install podman-emu into .venv, run the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
# qemu + AAVMF + qemu-img for the emulated machine, and the virtio-net option ROM (ipxe-qemu, only
# a Recommends of qemu) that podman's virtio-net-pci device needs to start at all; cpio gdisk dosfstools mtools build the demo's
# small arm64 boot disk from Debian's arm64 packages. qemu-system-x86 is not needed: convert
# replaces the machine's native qemu.
packages=(qemu-system-arm qemu-efi-aarch64 ipxe-qemu qemu-utils python3-venv cpio gdisk dosfstools mtools)

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "quickstart: installing packages needs root; run this as root, or install sudo" >&2
    exit 1
  fi
}

if command -v apt-get >/dev/null; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
else
  echo "quickstart: no apt-get here; install qemu (with qemu-system-aarch64, aarch64 UEFI firmware and" \
    "qemu-img) and python3 yourself (macOS: brew install qemu), then it continues" >&2
fi
python3 -m venv .venv
.venv/bin/pip install -q .
PODMAN_EMU=.venv/bin/podman-emu exec bash scripts/demo.sh
