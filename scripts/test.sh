#!/usr/bin/env bash
# The test command: lint, types, import contracts and every test suite (unit, images, console/status, robustness,
# and the end-to-end run with the real podman 4.3.1 + qemu-system-aarch64). Long robustness runs
# are included when PODMAN_EMU_LONG=1 (CI sets it). Needs what `.ci/run` installs.
set -uo pipefail
cd "$(dirname "$0")/.."
venv=${PODMAN_EMU_VENV:-/opt/podman-emu-venv}
python=$venv/bin/python
if [ ! -x "$python" ]; then
  echo "no test environment at $venv: run 'bash .ci/run' once (it installs everything)" >&2
  exit 2
fi

status=0
lint_paths=()
for path in podman_emu testing tests benchmarks; do [ -e "$path" ] && lint_paths+=("$path"); done
"$python" -m ruff check "${lint_paths[@]}" || status=1
"$python" -m mypy || status=1
# The layering in pyproject.toml ([tool.importlinter]): stages import downwards only, and the
# planner imports no I/O module.
"$venv/bin/lint-imports" --no-cache || status=1
pytest_status() {
  # pytest's 5 means it collected nothing: a test command that tests nothing has failed.
  if [ "$1" -eq 5 ]; then
    echo "pytest collected no tests ($2): that is a failure" >&2
    return 1
  fi
  return "$1"
}

# The slowest tests are printed so the CI budget (well under an hour) can be watched.
if [ "$#" -gt 0 ]; then
  "$python" -m pytest -p no:cacheprovider -ra --durations=30 "$@"
  pytest_status $? "$*" || status=$?
  exit "$status"
fi

# The end-to-end suites spend their time in qemu (one host core per vCPU) and the rest in one
# Python process: on a 2-core box they run side by side, which takes the test phase from the sum
# of the two to about the longer one. The e2e output follows the other suites' output.
# Each run has its own basetemp: two pytest sessions of one user prune each other's numbered dirs.
e2e_log=$(mktemp /tmp/podman-emu-e2e-output-XXXXXX)
temp_root=$(mktemp -d /tmp/podman-emu-pytest-XXXXXX)
"$python" -m pytest -p no:cacheprovider -ra --durations=15 --basetemp="$temp_root/e2e" tests/e2e >"$e2e_log" 2>&1 &
e2e_pid=$!
trap 'kill "$e2e_pid" 2>/dev/null; wait "$e2e_pid" 2>/dev/null; rm -rf "$e2e_log" "$temp_root"' INT TERM
"$python" -m pytest -p no:cacheprovider -ra --durations=30 --basetemp="$temp_root/main" --ignore=tests/e2e
pytest_status $? "unit and robustness suites" || status=$?
wait "$e2e_pid"
e2e_rc=$?
trap - INT TERM
echo "==================== end-to-end suites (run alongside the above) ===================="
cat "$e2e_log"
rm -rf "$e2e_log" "$temp_root"
pytest_status "$e2e_rc" "end-to-end suites" || status=$?
exit "$status"
