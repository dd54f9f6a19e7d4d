#!/usr/bin/env bash
# The bundled demo: a real podman 4.3.1 machine config (fixtures/demo/demo.json) placed in a
# private XDG home under /tmp/podman-emu-demo, converted to an emulated aarch64 machine, booted
# the way podman starts it (qemu with the fd-3 network socket, waiting for the guest's Ready on
# the ready socket), watched with `status` and `logs`, stopped and reverted; podman is not needed.
#
# The boot disk is a small arm64 guest built from Debian's arm64 packages (kernel, busybox,
# systemd-boot; about 60 MB, cached under ~/.cache/podman-emu-demo) by testing/guest, with
# apt's own tools and a private apt state: nothing on this host is installed or configured.
# Without those packages (no network, not Debian/Ubuntu) only the config part runs.
# Needs: qemu-system-arm qemu-efi-aarch64 qemu-utils, and for the guest cpio gdisk dosfstools mtools.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
demo=/tmp/podman-emu-demo
pe=${PODMAN_EMU:-podman-emu}
# The venv podman-emu runs in, so the helpers below see the same Python.
python=${PYTHON:-$(dirname "$(command -v "$pe")")/python}
[ -x "$python" ] || python=python3
guest_cache=${PODMAN_EMU_DEMO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podman-emu-demo}
boot_timeout=${PODMAN_EMU_DEMO_BOOT_TIMEOUT:-240}
started=$(date +%s)

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }

rm -rf "$demo"
config_dir=$demo/home/.config/containers/podman/machine/qemu
data_dir=$demo/home/.local/share/containers/podman/machine/qemu
mkdir -p "$config_dir" "$data_dir" "$demo/run/podman"
config=$config_dir/demo.json
cp "$repo/fixtures/demo/demo.json" "$config"
echo '{"ignition": {"version": "3.2.0"}}' > "$config_dir/demo.ign"
qemu-img create -q -f qcow2 "$data_dir/fedora-coreos-39.20240210.2.0-qemu.x86_64.qcow2" 10G

# The arm64 guest. apt runs on a private state dir (APT_CONFIG), so the host's apt sources and
# keys are used as they are, without `dpkg --add-architecture` or root.
build_guest() {
  local apt=$guest_cache/apt
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
  cat > "$apt/apt.conf" <<EOF
APT::Architectures { "arm64"; };
Acquire::Languages "none";
Acquire::http::Timeout "30";
Dir::State::Lists "$apt/lists";
Dir::Cache "$apt/cache";
EOF
  export APT_CONFIG=$apt/apt.conf PODMAN_EMU_TEST_CACHE=$guest_cache/guest
  timeout 300 apt-get -q --error-on=any -o APT::Get::List-Cleanup=false update >"$guest_cache/apt-update.log" 2>&1 \
    || { tail -n 5 "$guest_cache/apt-update.log" >&2; echo "apt-get update failed; trying package lists cached by an earlier run" >&2; }
  (cd "$repo" && "$python" -c '
import sys
from testing.guest import build_guest_image
try:
    image = build_guest_image(log=lambda message: print(message, file=sys.stderr))
except Exception as error:  # any reason at all means: no boot part, said in one line
    sys.exit(f"cannot build the arm64 guest: {error}")
print(image.disk)
')
}
disk=
say "building the arm64 boot disk from Debian's arm64 packages (cached after the first run)"
if command -v apt-get >/dev/null && mkdir -p "$guest_cache" && disk=$(build_guest) && [ -f "$disk" ]; then
  echo "boot disk: $disk ($(($(date +%s) - started)) s)"
else
  disk=
  echo "Could not fetch or build the arm64 guest (see above): this run shows the config part only."
  echo "(The demo boots a real arm64 guest when apt can download Debian's arm64 packages.)"
  qemu-img create -q -f qcow2 "$demo/aarch64-disk.qcow2" 10G
fi
image=${disk:-$demo/aarch64-disk.qcow2}

export HOME=$demo/home XDG_CONFIG_HOME=$demo/home/.config XDG_DATA_HOME=$demo/home/.local/share
export XDG_RUNTIME_DIR=$demo/run PODMAN_EMU_STATE_DIR=$demo/state PODMAN_EMU_CACHE_DIR=$demo/cache

step "$pe" doctor demo
step "$pe" list
step "$pe" convert demo --image "$image" --dry-run
step "$pe" convert demo --image "$image"
step "$pe" list
step "$pe" inspect demo

if [ -n "$disk" ]; then
  qemu_pid_file=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["VMPidFilePath"]["Path"])' "$config")
  logs_pid= start_pid=
  # Whatever happens from here on, no qemu, start helper or log follower outlives the demo.
  finish() {
    [ -n "$logs_pid" ] && kill "$logs_pid" 2>/dev/null
    [ -n "$start_pid" ] && kill "$start_pid" 2>/dev/null
    local pid
    pid=$(cat "$qemu_pid_file" 2>/dev/null || true)
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    return 0
  }
  trap finish EXIT
  say "starting the converted machine as podman would, following it with logs -f and status"
  echo "(kernel messages other than its first line, /init and power-down are left out of logs -f here;"
  echo " \`podman-emu logs demo\` prints them all)"
  printf '\033[1m$ %s logs -f demo &\033[0m\n' "$pe"
  timeout "$((boot_timeout + 30))" "$pe" logs -f demo \
    > >(awk '!/^\[ *[0-9]+\.[0-9]+\] / || /\] (Booting Linux|Run \/init|reboot: )/ { print "  console | " $0; fflush() }') &
  logs_pid=$!
  printf '\033[1m$ python -m testing.podman_start start demo.json &   # podman machine start, without podman\033[0m\n'
  boot_started=$(date +%s)
  PYTHONPATH=$repo "$python" -m testing.podman_start start "$config" --timeout "$boot_timeout" \
    --qemu-log "$demo/qemu.log" &
  start_pid=$!
  printf '\033[1m$ while booting: %s status demo   # its boot row, each time it changes\033[0m\n' "$pe"
  last_stage=
  while kill -0 "$start_pid" 2>/dev/null; do
    stage=$("$pe" status demo 2>/dev/null | sed -n 's/^ *boot  //p' | head -n 1 || true)
    if [ -n "$stage" ] && [ "$stage" != "$last_stage" ]; then
      printf '  status  | %3d s  boot  %s\n' "$(($(date +%s) - boot_started))" "$stage"
      last_stage=$stage
    fi
    sleep 0.5
  done
  wait "$start_pid"  # its exit status: non-zero when the guest sent nothing in time (qemu is then killed)
  start_pid=
  sleep 1  # let the follower print the last console lines
  kill "$logs_pid" 2>/dev/null || true
  wait "$logs_pid" 2>/dev/null || true
  logs_pid=
  step "$pe" status demo
  step "$pe" logs -n 8 demo
  step env PYTHONPATH="$repo" "$python" -m testing.podman_start stop "$config" --timeout 60
  step "$pe" status demo
fi

step "$pe" revert demo --delete-disk
step cmp "$repo/fixtures/demo/demo.json" "$config"
echo "demo.json is byte-identical to the original after convert${disk:+, boot} and revert ($(($(date +%s) - started)) s)."
