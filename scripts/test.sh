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
for path in podman_emu tests benchmarks; do [ -e "$path" ] && lint_paths+=("$path"); done
"$python" -m ruff check "${lint_paths[@]}" || status=1
"$python" -m mypy || status=1
# The layering in pyproject.toml ([tool.importlinter]): stages import downwards only, and the
# planner imports no I/O module.
"$venv/bin/lint-imports" --no-cache || status=1
# The slowest tests are printed so the CI budget (well under an hour) can be watched.
"$python" -m pytest -p no:cacheprovider -ra --durations=30 "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  rc=1
fi
[ "$rc" -ne 0 ] && status=$rc
exit "$status"
