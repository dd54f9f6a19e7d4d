"""Concurrency: podman and podman-emu on the same machine at the same time.

- podman 4.7+ takes an fcntl write lock on NAME.lock (containers/storage: F_SETLKW on the whole
  file). Another process holds exactly that lock: podman-emu waits, then proceeds, or refuses
  with a clear message once its wait is over.
- `podman machine set --cpus` races `podman-emu convert`: with a writer that reads under the
  lock, the final file always has both changes or podman-emu refused clearly. podman 4.9's own
  `set` loads the file before it takes the lock, and podman 4.3.1 (installed here) takes no
  lock at all and writes in place: those races are run too and their outcomes counted.
- Two podman-emu processes on one machine: one wins, the other refuses clearly.

Every test on `machine` runs on a podman 4.9 config and on the config the real podman 5.4.2
wrote (one line; `set` changes Resources.CPUs only, under the same NAME.lock).
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from robustness.crashpoints import _wait as wait_child
from robustness.harness import (
    LONG,
    PODMAN,
    TEMP_MARKER,
    Sandbox,
    assert_clean_refusal,
    assert_success,
    base_env,
    diff_snapshots,
    invoke,
    json_names,
    long_run,
    needs_root,
    nobody,
    own_by,
    podman_emu_argv,
    read_journal,
    run_cli,
    run_podman,
    sha256,
    snapshot,
)
from testing.fixtures import runs_aarch64

FIXTURES = ("podman-4.9-linux-amd64.json", "podman-5.4.2-linux-amd64-qemu.json")
NAME = "race"

# The lock exactly as containers/storage takes it (lockfile_unix.go: fcntl F_SETLKW, F_WRLCK,
# whole file); Python's lockf(LOCK_EX) is that same POSIX record lock.
HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
print(f"releasing {time.time()}", flush=True)  # stamped before the unlock: any later write is after it
os.close(fd)
"""

# `podman machine set --cpus N`, modelled on podman's Set (v4.9.5 pkg/machine/qemu/machine.go;
# for a 5.x config, v5.4.2's, which changes Resources.CPUs and rewrites the one-line file):
# v.CPUs = N; editCmdLine("-smp", N) (first exact "-smp", else append); writeConfig through
# an atomic temp file (".tmp-NAME.json…", renamed over). "podman-4.9" loads the file before
# taking the lock, as podman does (LoadVMByName, then v.lock.Lock(); State() re-reads only when
# the QMP socket exists); "locked-read" reads under the lock, as a careful writer would.
SETTER = r"""
import fcntl, json, os, sys, tempfile, time
config, lock, mode, delay, cpus = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
data_dir, aimed = sys.argv[6], sys.argv[7] == "aimed"
if aimed:
    # Aim at podman-emu's window: it has read the config once its staged files appear.
    deadline = time.monotonic() + 30
    while not any(".podman-emu-tmp" in name for name in os.listdir(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.0005)
time.sleep(delay)

def read():
    with open(config, "rb") as handle:
        return handle.read()

data = read() if mode == "podman-4.9" else None
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
if data is None:
    data = read()
content = json.loads(data)
if "Resources" in content:
    # podman 5 (v5.4.2 shim Set): Resources only, json.Marshal (one line), AtomicWriteFile.
    content["Resources"]["CPUs"] = cpus
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
else:
    content["CPUs"] = cpus
    argv = content["CmdLine"]
    for index, element in enumerate(argv):
        if element == "-smp":
            argv[index + 1] = str(cpus)
            break
    else:
        argv += ["-smp", str(cpus)]
    text = json.dumps(content, indent=1, ensure_ascii=False)
text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
out, name = tempfile.mkstemp(dir=os.path.dirname(config), prefix=".tmp-" + os.path.basename(config))
os.write(out, (text + ("\n" if data.endswith(b"\n") else "")).encode())
os.fsync(out)
os.close(out)
os.chmod(name, 0o644)
os.replace(name, config)
os.close(fd)
"""

CLEAR_REFUSALS = (
    "changed while",
    "locked by another process",
    "already converted",
    "another podman-emu process is converting",
    "not valid JSON",
)


@dataclass
class Machine:
    box: Sandbox
    config: Path
    original: bytes
    disk: Path

    @property
    def lock(self) -> Path:
        return self.config.with_suffix(".lock")

    def reset(self) -> None:
        for directory in (self.box.config_dir, self.box.data_dir):
            for entry in directory.iterdir():
                if entry.name != self.config.name and "fedora" not in entry.name:
                    entry.unlink()
        self.config.write_bytes(self.original)
        journal = self.box.state_dir / "journals"
        if journal.exists():
            for entry in journal.iterdir():
                entry.unlink()


@pytest.fixture(params=FIXTURES, ids=("podman4", "podman5"))
def machine(box: Sandbox, aarch64_disk: Path, request: pytest.FixtureRequest) -> Iterator[Machine]:
    config = box.install(request.param, name=NAME)
    yield Machine(box, config, config.read_bytes(), aarch64_disk)


def cpus_of(content: dict[str, Any]) -> tuple[int, str]:
    """(the CPUs the config says, the -smp the machine starts with): podman 5 keeps one number."""
    if "Resources" in content:
        cpus = content["Resources"]["CPUs"]
        return cpus, str(cpus)
    argv = content["CmdLine"]
    return content["CPUs"], argv[argv.index("-smp") + 1]


def _holder(lock: Path, seconds: float, user: object = None) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 30)
    if not ready:
        process.kill()
        process.wait(timeout=10)
        raise AssertionError("the lock holder did not get the lock within 30 s")
    assert process.stdout.readline().strip() == "locked"
    return process


def _spawn(machine: Machine, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        podman_emu_argv(*args),
        env=base_env(machine.box),
        cwd=machine.box.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------------------------
# podman 4.7+'s lock


@pytest.mark.parametrize("action", ["convert", "revert"])
def test_waits_for_podmans_lock_then_proceeds(machine: Machine, action: str) -> None:
    if action == "revert":
        assert_success(invoke(machine.box, "convert", NAME, "--image", str(machine.disk)))
    machine.lock.write_bytes(b"")  # podman 4.7+ creates NAME.lock at init
    before = machine.config.read_bytes()
    holder = _holder(machine.lock, 2.0)
    started = time.monotonic()
    args = ["convert", NAME, "--image", str(machine.disk)] if action == "convert" else ["revert", NAME]
    process = _spawn(machine, *args)
    time.sleep(1.2)
    assert process.poll() is None, "podman-emu did not wait for the lock"
    assert machine.config.read_bytes() == before, "wrote while podman held the lock"
    _, stderr = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, stderr
    released = float(holder.communicate(timeout=10)[0].split()[-1])
    # File times come from the kernel's coarse clock, up to one tick (<= 10 ms) behind time.time().
    assert machine.config.stat().st_mtime >= released - 0.011, "the config was written before the lock was free"
    assert elapsed >= 1.9
    assert machine.config.read_bytes() != before


def _refuses_after_the_wait(machine: Machine, *args: str) -> None:
    machine.lock.write_bytes(b"")
    before = snapshot(machine.box.config_dir, machine.box.data_dir)
    holder = _holder(machine.lock, 30)
    try:
        started = time.monotonic()
        result = run_cli(machine.box, *args, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert_clean_refusal(result, "locked by another process", str(machine.lock))
    assert 9 <= elapsed <= 25, elapsed
    changes = diff_snapshots(before, snapshot(machine.box.config_dir, machine.box.data_dir))
    assert not changes, f"a refusal after waiting left changes: {changes}"


@long_run
@pytest.mark.long
def test_refuses_clearly_when_podmans_lock_stays_held(machine: Machine) -> None:
    _refuses_after_the_wait(machine, "convert", NAME, "--image", str(machine.disk))
    assert read_journal(machine.box) is None


@long_run
@pytest.mark.long
def test_revert_refuses_clearly_when_podmans_lock_stays_held(machine: Machine) -> None:
    assert_success(invoke(machine.box, "convert", NAME, "--image", str(machine.disk)))
    journal = read_journal(machine.box)
    _refuses_after_the_wait(machine, "revert", NAME)
    assert read_journal(machine.box) == journal


# --------------------------------------------------------------------------------------------
# `podman machine set` racing `podman-emu convert`


def classify(machine: Machine, convert: subprocess.CompletedProcess[str] | tuple[int, str], cpus: int) -> str:
    """Name the outcome of one race and check the invariants every outcome must keep."""
    code, stderr = convert if isinstance(convert, tuple) else (convert.returncode, convert.stderr)
    data = machine.config.read_bytes()
    content = json.loads(data)  # never a torn file
    assert json_names(machine.box.config_dir) == [machine.config.name]
    emulated = runs_aarch64(content)
    set_cpus, smp = cpus_of(content)
    set_applied = set_cpus == cpus and smp == str(cpus)
    journal = read_journal(machine.box)
    if code != 0:
        assert "Traceback" not in stderr and any(reason in stderr for reason in CLEAR_REFUSALS), stderr
        assert not emulated and journal is None
        assert set_applied, "podman-emu refused but podman's change is not there either"
        return "refused clearly; the file has podman's change"
    assert journal is not None and journal["status"] == "converted"
    if emulated and set_applied:
        assert sha256(data) == journal["converted_sha256"] or set_cpus == cpus
        return "both changes"
    if emulated:
        raise AssertionError("podman-emu overwrote podman's change")
    assert set_applied
    return "conversion lost: podman wrote a copy it had read before the conversion"


def recover_from(machine: Machine, outcome: str) -> None:
    """Whatever happened, `revert` brings the machine back to native with podman's change."""
    if outcome.startswith("refused"):
        return
    assert_success(invoke(machine.box, "revert", NAME, "--delete-disk"))
    assert not runs_aarch64(json.loads(machine.config.read_bytes()))
    assert read_journal(machine.box) is None
    assert not [p for p in machine.box.data_dir.iterdir() if "aarch64" in p.name or "ovmf" in p.name]


def race_set(machine: Machine, mode: str, trials: int, rng: random.Random) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for trial in range(trials):
        machine.reset()
        machine.lock.write_bytes(b"")
        cpus = 3 + trial % 5
        # Even trials spread podman's write over podman-emu's whole run (start-up, staging, lock,
        # write); odd trials aim it at the window after podman-emu has read the file.
        aimed = trial % 2 == 1
        delay = rng.uniform(0.0, 0.15) if aimed else rng.uniform(0.0, 0.9)
        setter = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SETTER,
                str(machine.config),
                str(machine.lock),
                mode,
                str(delay),
                str(cpus),
                str(machine.box.data_dir),
                "aimed" if aimed else "spread",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        convert = _spawn(machine, "convert", NAME, "--image", str(machine.disk))
        _, stderr = convert.communicate(timeout=120)
        assert setter.wait(timeout=60) == 0, setter.stderr.read() if setter.stderr else ""
        outcome = classify(machine, (convert.returncode, stderr), cpus)
        outcomes[outcome] += 1
        recover_from(machine, outcome)
    return outcomes


@pytest.mark.parametrize("mode", ["locked-read", "podman-4.9"])
def test_podman_set_races_convert(machine: Machine, mode: str) -> None:
    trials = 30 if LONG else 6
    outcomes = race_set(machine, mode, trials, random.Random(f"{mode}-{trials}"))
    print(f"`set --cpus` ({mode}) racing convert, {trials} runs: {dict(outcomes)}")
    assert sum(outcomes.values()) == trials
    if mode == "locked-read":
        # A writer that reads under the lock never loses an update: both changes or a refusal.
        assert not [o for o in outcomes if o.startswith("conversion lost")], outcomes


@needs_root
@pytest.mark.skipif(PODMAN is None, reason="podman is not installed")
def test_real_podman_4_3_set_races_convert(warm: Sandbox, aarch64_disk: Path) -> None:
    """The installed podman 4.3.1 (no lock, writes in place), as a normal user: both programs run
    as `nobody` in a home nobody owns. Every outcome must leave a whole, loadable file, and
    `revert` must always recover; lost updates are podman's (it takes no lock) and are counted."""
    user = nobody()
    box = Sandbox.create()
    try:
        box.seed_cache(warm)
        config = box.install("podman-4.3-linux-amd64.json", name=NAME)
        own_by(box.root, user)
        machine = Machine(box, config, config.read_bytes(), aarch64_disk)
        trials = 20 if LONG else 3
        rng = random.Random(43)
        outcomes: Counter[str] = Counter()
        env = base_env(box)
        for trial in range(trials):
            machine.reset()
            cpus = 3 + trial % 5
            convert = subprocess.Popen(
                podman_emu_argv("convert", NAME, "--image", str(aarch64_disk)),
                env=env,
                cwd=box.cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                user=user.pw_uid,
                group=user.pw_gid,
                extra_groups=[],
            )
            if trial % 2 == 1:
                deadline = time.monotonic() + 30
                while not any(TEMP_MARKER in p.name for p in box.data_dir.iterdir()) and time.monotonic() < deadline:
                    time.sleep(0.0005)
                time.sleep(rng.uniform(0.0, 0.15))
            else:
                time.sleep(rng.uniform(0.0, 0.8))
            podman = run_podman(box, "set", "--cpus", str(cpus), NAME, as_user=user, env=env)
            _, stderr = convert.communicate(timeout=120)
            assert podman.returncode == 0, podman.stderr
            outcome = classify(machine, (convert.returncode, stderr), cpus)
            outcomes[outcome] += 1
            if not outcome.startswith("refused"):
                result = run_cli(box, "revert", NAME, "--delete-disk", as_user=user)
                assert_success(result)
                assert not json.loads(config.read_bytes())["CmdLine"][0].endswith("aarch64")
        print(f"real podman 4.3.1 `set --cpus` racing convert, {trials} runs: {dict(outcomes)}")
        assert sum(outcomes.values()) == trials
    finally:
        box.remove()


def test_a_conversion_lost_to_podman_is_recovered_by_revert(machine: Machine) -> None:
    """What a lost race leaves (podman wrote its pre-conversion copy over the converted file):
    the journal says converted, the file is native. `list` says so, `revert` cleans up."""
    assert_success(invoke(machine.box, "convert", NAME, "--image", str(machine.disk)))
    content = json.loads(machine.original)
    if "Resources" in content:
        content["Resources"]["CPUs"] = 4
        machine.config.write_bytes(json.dumps(content, separators=(",", ":")).encode())
    else:
        content["CPUs"] = 4
        content["CmdLine"][content["CmdLine"].index("-smp") + 1] = "4"
        machine.config.write_bytes((json.dumps(content, indent=1, ensure_ascii=False) + "\n").encode())
    listing = invoke(machine.box, "list", "--json")
    assert_success(listing)
    assert "stale journal" in listing.stdout
    recover_from(machine, "conversion lost")
    assert cpus_of(json.loads(machine.config.read_bytes()))[0] == 4


# --------------------------------------------------------------------------------------------
# Two podman-emu processes


def _pair(machine: Machine, first: list[str], second: list[str]) -> list[tuple[int, str]]:
    processes = [_spawn(machine, *first), _spawn(machine, *second)]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    return [(process.returncode, stderr) for process, stderr in zip(processes, errors, strict=True)]


def _no_temp_files(machine: Machine) -> None:
    for directory in (machine.box.config_dir, machine.box.data_dir):
        left = [p.name for p in directory.iterdir() if TEMP_MARKER in p.name]
        assert not left, f"temp files left behind: {left}"


def test_two_converts_one_wins(machine: Machine) -> None:
    trials = 15 if LONG else 3
    converted = None
    outcomes: Counter[str] = Counter()
    for _ in range(trials):
        machine.reset()
        results = _pair(machine, *[["convert", NAME, "--image", str(machine.disk)]] * 2)
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        loser = next(stderr for code, stderr in results if code == 1)
        assert any(reason in loser for reason in CLEAR_REFUSALS), loser
        outcomes[next(r for r in CLEAR_REFUSALS if r in loser)] += 1
        data = machine.config.read_bytes()
        converted = converted or data
        assert data == converted, "the winner's file differs from run to run"
        journal = read_journal(machine.box)
        assert journal is not None and journal["status"] == "converted"
        assert journal["converted_sha256"] == sha256(data)
        _no_temp_files(machine)
        assert_success(invoke(machine.box, "revert", NAME, "--delete-disk"))
        assert machine.config.read_bytes() == machine.original
    print(f"two converts, {trials} runs: the loser said {dict(outcomes)}")


def test_two_reverts_one_wins(machine: Machine) -> None:
    trials = 10 if LONG else 2
    for _ in range(trials):
        machine.reset()
        assert_success(invoke(machine.box, "convert", NAME, "--image", str(machine.disk)))
        results = _pair(machine, ["revert", NAME, "--delete-disk"], ["revert", NAME, "--delete-disk"])
        codes = sorted(code for code, _ in results)
        assert codes == [0, 1], results
        loser = next(stderr for code, stderr in results if code == 1)
        assert any(reason in loser for reason in ("never converted", "changed while", "locked by another")), loser
        assert machine.config.read_bytes() == machine.original
        assert read_journal(machine.box) is None
        _no_temp_files(machine)


def test_convert_and_revert_at_once_stay_consistent(machine: Machine) -> None:
    trials = 10 if LONG else 2
    seen: Counter[str] = Counter()
    for _ in range(trials):
        machine.reset()
        assert_success(invoke(machine.box, "convert", NAME, "--image", str(machine.disk)))
        converted = machine.config.read_bytes()
        results = _pair(machine, ["revert", NAME, "--delete-disk"], ["convert", NAME, "--image", str(machine.disk)])
        for code, stderr in results:
            assert "Traceback" not in stderr and (code == 0 or "Error: " in stderr), stderr
        data = machine.config.read_bytes()
        journal = read_journal(machine.box)
        if data == machine.original:
            assert journal is None
            seen["native"] += 1
        else:
            assert data == converted and journal is not None and journal["status"] == "converted"
            seen["converted again"] += 1
        _no_temp_files(machine)
    print(f"revert and convert at once, {trials} runs: {dict(seen)}")


def test_a_convert_overtaken_by_another_says_so(machine: Machine) -> None:
    """The interleaving the race above hits about once in 240 runs, made deterministic: convert
    A has loaded the machine and is about to check its destination files when convert B runs
    from start to finish. A must refuse, say that another podman-emu converted the machine, and
    not advise removing the files (they are B's live vars file and disk)."""
    import podman_emu.conversion.convert as convert_module

    go_read, go_write = os.pipe()
    at_read, at_write = os.pipe()
    log = machine.box.root.parent / (machine.box.root.name + ".child.log")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the paused convert, in the child
        code = 70
        try:
            # Patched where convert looks it up (the name convert imported from staging).
            real = getattr(convert_module, "refuse_existing_destinations")  # noqa: B009

            def paused(plan: object) -> None:
                os.write(at_write, b"at the check\n")
                os.read(go_read, 1)
                real(plan)

            setattr(convert_module, "refuse_existing_destinations", paused)  # noqa: B010
            result = invoke(machine.box, "convert", NAME, "--image", str(machine.disk))
            log.write_text(f"{result.exit_code}\n{result.stderr}")
            code = 0
        finally:
            os._exit(code)
    try:
        assert os.read(at_read, 64) == b"at the check\n"
        winner = invoke(machine.box, "convert", NAME, "--image", str(machine.disk))
        assert_success(winner)
        converted = machine.config.read_bytes()
    finally:
        os.write(go_write, b"g")
        status = wait_child(pid, timeout=120)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    exit_code, stderr = log.read_text().split("\n", 1)
    log.unlink()
    assert exit_code == "1", stderr
    assert "another podman-emu process is converting" in stderr, stderr
    assert "delete" not in stderr, stderr
    assert machine.config.read_bytes() == converted
    journal = read_journal(machine.box)
    assert journal is not None and journal["status"] == "converted"
    _no_temp_files(machine)
