"""Crash safety: SIGKILL convert and revert at every write step and at random moments.

After every kill the state on disk must be one podman and podman-emu can live with:
- podman's config parses and is byte-equal to the old or the new file;
- podman's dirs hold no extra `*.json` (podman loads every one as a machine);
- the journal never claims a state the files do not have;
- `revert` (or a new `convert`) completes and lands on exactly the bytes a clean run gives;
- whatever a kill leaves behind is a dot-file with podman-emu's temp marker, and `doctor`
  names it.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from robustness.crashpoints import count_steps, run_child
from robustness.harness import (
    FIXTURES,
    LONG,
    TEMP_MARKER,
    TMPFS,
    Sandbox,
    assert_success,
    base_env,
    fixture_files,
    image_path_of,
    invoke,
    json_names,
    long_run,
    podman_emu_argv,
    read_journal,
    sha256,
)

FAST_FIXTURE = "podman-4.9-linux-amd64.json"
# podman 5: one key of a one-line file changes, and the qemu wrapper's registration is the
# write that makes the machine start emulated.
PODMAN5_FIXTURE = "podman-5.4.2-linux-amd64-qemu.json"
ACTIONS = ("convert", "revert", "revert-delete-disk")


def _args(action: str, name: str, disk: Path) -> list[str]:
    if action == "convert":
        return ["convert", name, "--image", str(disk)]
    if action == "revert":
        return ["revert", name]
    return ["revert", name, "--delete-disk"]


@dataclass
class Scenario:
    """One machine in one sandbox, with templates of its native and converted states so every
    run starts from the very same bytes at the very same paths."""

    box: Sandbox
    fixture: str
    name: str
    disk: Path
    original: bytes = b""
    converted: bytes = b""
    created: dict[str, str] = field(default_factory=dict)
    native_image: str = ""
    big_file_digests: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.box.config(self.name)

    def template(self, which: str) -> Path:
        return self.box.root.with_name(self.box.root.name + f".{which}")

    def restore(self, which: str) -> None:
        """Make the sandbox equal to a template again. Only the dirs podman-emu writes are synced,
        and directories are kept when they can be (removing one costs milliseconds here)."""
        template = self.template(which)
        # containers.conf.d: where convert registers the gvproxy launcher (conversion.start_helpers).
        dropins = self.box.home / ".config" / "containers" / "containers.conf.d"
        for directory in (self.box.config_dir, self.box.data_dir, self.box.state_dir, dropins):
            _sync_tree(template / directory.relative_to(self.box.root), directory)

    def big_files(self) -> dict[str, str]:
        found = {}
        for which in ("native", "converted"):
            for path in sorted(self.template(which).rglob("*")):
                if path.is_file() and not path.is_symlink() and path.stat().st_size > _LINK_ABOVE:
                    found[str(path)] = sha256(path.read_bytes())
        return found

    def assert_templates_intact(self) -> None:
        """Restores hardlink the big files, which is only sound because podman-emu replaces or
        removes files and never writes into an existing one; this proves it stayed that way."""
        assert self.big_files() == self.big_file_digests, "a file shared with the template was written in place"

    def remove(self) -> None:
        for which in ("native", "converted"):
            shutil.rmtree(self.template(which), ignore_errors=True)
        self.box.remove()


# The 64 MiB vars file and the disk dominate a restore; they are linked, not copied.
_LINK_ABOVE = 1 << 20


def _copy_or_link(source: str, destination: str) -> None:
    if os.path.getsize(source) > _LINK_ABOVE:
        os.link(source, destination)
    else:
        shutil.copy2(source, destination)


def _sync_tree(template: Path, live: Path) -> None:
    if not template.exists():
        shutil.rmtree(live, ignore_errors=True)
        return
    live.mkdir(parents=True, exist_ok=True)
    os.chmod(live, template.stat().st_mode & 0o7777)
    wanted = {entry.name: entry for entry in template.iterdir()}
    for entry in live.iterdir():
        if entry.name not in wanted or entry.is_dir() != wanted[entry.name].is_dir() or entry.is_symlink():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for name, source in wanted.items():
        target = live / name
        if source.is_dir():
            _sync_tree(source, target)
            continue
        if target.exists():
            target.unlink()
        _copy_or_link(str(source), str(target))

    def remove(self) -> None:
        for which in ("native", "converted"):
            shutil.rmtree(self.template(which), ignore_errors=True)
        self.box.remove()


def make_scenario(fixture: str, disk: Path, warm: Sandbox, base: str = TMPFS) -> Scenario:
    box = Sandbox.create(base=base)
    box.seed_cache(warm)
    config = box.install(fixture)
    content = json.loads(config.read_bytes())
    scenario = Scenario(box, fixture, config.stem, disk, original=config.read_bytes())
    scenario.native_image = image_path_of(content)
    shutil.copytree(box.root, scenario.template("native"), symlinks=True)
    assert_success(invoke(box, *_args("convert", scenario.name, disk)))
    scenario.converted = config.read_bytes()
    journal = read_journal(box)
    assert journal is not None and journal["status"] == "converted"
    scenario.created = {item["role"]: item["path"] for item in journal["created"]}
    shutil.copytree(box.root, scenario.template("converted"), symlinks=True)
    scenario.big_file_digests = scenario.big_files()
    assert scenario.big_file_digests, "expected the vars file and the disk to be linked, not copied"
    return scenario


@pytest.fixture
def scenario_factory(aarch64_disk: Path, warm: Sandbox):
    made: list[Scenario] = []

    def make(fixture: str, base: str = TMPFS) -> Scenario:
        scenario = make_scenario(fixture, aarch64_disk, warm, base)
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.remove()


# --------------------------------------------------------------------------------------------
# The invariants


def litter(scenario: Scenario) -> list[Path]:
    """Files in podman's dirs that are neither podman's nor a file podman-emu means to keep."""
    expected = {
        scenario.config,
        Path(scenario.native_image),
        Path(scenario.created["vars"]) if "vars" in scenario.created else None,
        Path(scenario.created["disk"]),
    }
    found = []
    for directory in (scenario.box.config_dir, scenario.box.data_dir):
        found += [path for path in directory.iterdir() if path not in expected]
    return sorted(found)


def check_after_kill(scenario: Scenario, action: str) -> tuple[str, str]:
    """The state a kill left must be consistent. Returns (journal status, config state)."""
    box = scenario.box
    assert json_names(box.config_dir) == [scenario.config.name], "podman would load an extra *.json"
    assert json_names(box.data_dir) == []
    assert scenario.config.is_file() and not scenario.config.is_symlink()
    data = scenario.config.read_bytes()
    json.loads(data)
    assert data in (scenario.original, scenario.converted), "config is neither the old nor the new file"
    state = "converted" if data == scenario.converted else "original"
    vars_path = Path(scenario.created["vars"]) if "vars" in scenario.created else None
    disk_path = Path(scenario.created["disk"])
    journal = read_journal(box)
    if journal is None:
        # Without a journal nothing may say "converted": the config must be native, and no
        # file podman-emu creates may sit at its final name (it would block the next convert
        # and nothing would ever remove it).
        assert state == "original", "converted config without a journal: revert would be impossible"
        if vars_path is not None:
            assert not vars_path.exists(), "vars file without a journal"
        if action == "convert" or action == "revert-delete-disk":
            assert not disk_path.exists(), "aarch64 disk without a journal"
        return "none", state
    assert journal["original_sha256"] == sha256(scenario.original)
    assert base64.b64decode(journal["original_b64"]) == scenario.original
    assert journal["converted_sha256"] == sha256(scenario.converted)
    status = journal["status"]
    if status == "converted":
        assert state == "converted", "journal says converted, config is native"
    elif status in ("converting", "reverting"):
        pass  # either state is possible and the config's checksum tells which
    else:
        raise AssertionError(f"unknown journal status {status!r}")
    if state == "converted":
        # podman would start this config: everything it points to must be there.
        assert disk_path.exists(), "config points at an aarch64 disk that is missing"
        if vars_path is not None:
            assert vars_path.exists(), "config points at a vars file that is missing"
    return status, state


def recover(scenario: Scenario, action: str, status: str, state: str) -> str:
    """What the issue asks after every kill: `revert` (when anything says converted) or a new
    `convert` completes, and lands on exactly the bytes a clean run gives."""
    box = scenario.box
    disk = Path(scenario.created["disk"])
    if state == "converted" or status in ("converted", "reverting"):
        flags = [] if action == "revert" else ["--delete-disk"]
        assert_success(invoke(box, "revert", scenario.name, *flags))
        assert scenario.config.read_bytes() == scenario.original, "revert is not byte-identical to the original"
        assert read_journal(box) is None
        for role, path in scenario.created.items():
            if role != "disk":
                assert not Path(path).exists(), f"{role} file {path} survived revert"
        assert disk.exists() == (action == "revert"), "revert kept/removed the disk against its flags"
        return "revert"
    if action != "convert" and status == "none":
        return "none (the revert had finished)"
    assert_success(invoke(box, "convert", scenario.name, "--image", str(scenario.disk)))
    assert scenario.config.read_bytes() == scenario.converted, "convert after the crash differs from a clean one"
    journal = read_journal(box)
    assert journal is not None and journal["status"] == "converted"
    return "convert"


def full_cycle(scenario: Scenario) -> None:
    """From wherever recovery left the machine, a clean convert -> revert cycle still works and
    anything the crash left behind is harmless and reported by doctor."""
    box = scenario.box
    if read_journal(box) is not None:
        assert_success(invoke(box, "revert", scenario.name, "--delete-disk"))
    disk = Path(scenario.created["disk"])
    if disk.exists():
        # A plain revert keeps the aarch64 disk by contract and the next convert asks the user to
        # move it away; that is what a user does here.
        disk.unlink()
    assert scenario.config.read_bytes() == scenario.original
    assert_success(invoke(box, "convert", scenario.name, "--image", str(scenario.disk)))
    assert scenario.config.read_bytes() == scenario.converted
    assert_success(invoke(box, "revert", scenario.name, "--delete-disk"))
    assert scenario.config.read_bytes() == scenario.original
    assert read_journal(box) is None
    for role, path in scenario.created.items():
        assert not Path(path).exists(), f"{role} file {path} survived revert --delete-disk"
    leftovers = check_litter(scenario)
    if leftovers:
        report = invoke(box, "doctor", "--json")
        for leftover in leftovers:
            assert str(leftover) in report.stdout, f"doctor does not report the leftover {leftover}"


def check_litter(scenario: Scenario) -> list[Path]:
    leftovers = litter(scenario)
    for path in leftovers:
        # podman ignores these (not *.json, dot-files); doctor names them.
        assert path.name.startswith(".") and TEMP_MARKER in path.name, f"unexpected file {path}"
    return leftovers


_PID_IN_TEMP = re.compile(r"\.\d+\.podman-emu-tmp.*")


def state_signature(scenario: Scenario) -> tuple[object, ...]:
    """What recovery depends on: the files (temp-name pids normalised away) and their bytes."""
    entries = []
    for root in (scenario.box.config_dir, scenario.box.data_dir, scenario.box.state_dir):
        for path in sorted(root.rglob("*")) if root.exists() else []:
            relative = _PID_IN_TEMP.sub(".PID.podman-emu-tmp", str(path.relative_to(scenario.box.root)))
            if path.is_file():
                size = path.stat().st_size
                entries.append((relative, size, sha256(path.read_bytes()) if size <= _LINK_ABOVE else ""))
            else:
                entries.append((relative, -1, ""))
    return tuple(sorted(entries))


# --------------------------------------------------------------------------------------------
# Every write step


@dataclass
class SweepFigures:
    runs: int = 0
    steps: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    litter_runs: int = 0
    recoveries: Counter[str] = field(default_factory=Counter)


def _visible(step: str, index: int) -> bool:
    """Steps after which the files look different to podman or to recovery: renames, unlinks,
    writes and qemu-img runs (the fast run kills before these only)."""
    verb = step.split("\t")[2].split(" ")[0]
    return index == 1 or verb in ("replace", "rename", "unlink", "remove", "write", "pwrite", "exec")


def sweep(scenario: Scenario, action: str, *, torn: bool = True, everything: bool = False) -> SweepFigures:
    """Kill `action` before each of its write steps (and halfway through each write)."""
    start = "native" if action == "convert" else "converted"
    work = scenario.box.root.with_name(scenario.box.root.name + ".logs")
    work.mkdir(exist_ok=True)
    log, record = str(work / "child.log"), str(work / "steps.txt")
    args = _args(action, scenario.name, scenario.disk)
    env = base_env(scenario.box)
    scenario.restore(start)
    steps = count_steps(args, env, str(scenario.box.cwd), log, record)
    figures = SweepFigures(steps=len(steps))
    # Recovery depends only on the on-disk state: the fast run recovers each distinct state once,
    # the long run after every kill; both run the full cycle once per distinct state.
    seen: set[tuple[object, ...]] = set()
    plan = [(index, False) for index, line in enumerate(steps, 1) if everything or _visible(line, index)]
    if torn:
        plan += [(index, True) for index, line in enumerate(steps, 1) if line.split("\t")[1] == "w"]
    try:
        for kill_at, tear in plan:
            scenario.restore(start)
            outcome = run_child(args, env, str(scenario.box.cwd), log, kill_at=kill_at, torn=tear)
            where = steps[kill_at - 1]
            assert outcome.killed, f"step {where}: the child was not killed:\n{outcome.log}"
            try:
                status, state = check_after_kill(scenario, action)
                if check_litter(scenario):
                    figures.litter_runs += 1
                signature = state_signature(scenario)
                if LONG or signature not in seen:
                    figures.recoveries[recover(scenario, action, status, state)] += 1
                if signature not in seen:
                    full_cycle(scenario)
                    seen.add(signature)
            except AssertionError as exc:
                raise AssertionError(
                    f"{scenario.fixture} {action}, killed before step {where} (torn={tear}): {exc}"
                ) from None
            figures.runs += 1
            figures.outcomes[f"{status}/{state}"] += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scenario.assert_templates_intact()
    return figures


@pytest.mark.parametrize("fixture", [FAST_FIXTURE, PODMAN5_FIXTURE])
def test_every_write_step_of_convert_and_revert(scenario_factory, record_property, fixture: str) -> None:
    scenario = scenario_factory(fixture)
    total = 0
    for action in ("convert", "revert"):
        figures = sweep(scenario, action)
        record_property(f"{action}_steps", figures.steps)
        record_property(f"{action}_outcomes", dict(figures.outcomes))
        # Both ends must be reached: kills before the JSON write and after it.
        assert figures.outcomes, action
        total += figures.runs
    print(f"crash sweep ({fixture}): {total} kills")
    assert total >= 25


# Every step of every action for the two layout families (V1, the real podman 4.3.1 file); the
# others get the kill points that change what podman or recovery can see. A full sweep costs
# several times a spot sweep, and every fixture full would take CI past its budget.
FULL_SWEEP = (
    "podman-3.4-linux-amd64.json",  # V1, no trailing newline
    "podman-4.3-linux-amd64-odd-paths.json",  # real podman 4.3.1 file: spaces, commas, &, UTF-8
)


# The long run sweeps these too; every other convertible fixture gets the fast byte-fidelity and
# crash checks only. Together they cover each layout family, each encoder and each odd shape a
# real file has.
SPOT_SWEEP = (
    "podman-3.3.1-linux-amd64.json",  # no DiskSize, no ImageStream
    "podman-3.4.0-darwin-amd64.json",  # no ImageStream, hvf:tcg
    "podman-4.0-darwin-amd64.json",  # V1 with a stray proxy pair and <>& escapes
    "podman-4.1-darwin-amd64-real-traits.json",  # -smp 12, /Volumes, USBs null, unix://var/folders
    "podman-4.9-darwin-amd64.json",  # 4.5+ encoder, trailing newline
    "podman-4.9-darwin-amd64-real-traits.json",  # rootful, dotted user, Homebrew under $HOME, -serial
    "podman-5.8-linux-amd64-qemu.json",  # podman 5.8: Swap, no stored command line
)


@long_run
@pytest.mark.long
@pytest.mark.parametrize("fixture", [f for f in fixture_files() if f in FULL_SWEEP + SPOT_SWEEP])
def test_every_write_step_every_fixture(scenario_factory, fixture: str) -> None:
    scenario = scenario_factory(fixture)
    everything = fixture in FULL_SWEEP
    actions = ACTIONS if everything else ("convert", "revert")
    runs = Counter[str]()
    for action in actions:
        figures = sweep(scenario, action, everything=everything)
        runs[action] = figures.runs
        print(
            f"{fixture} {action}: {figures.steps} steps, {figures.runs} kills, {dict(figures.outcomes)}, "
            f"recovered by {dict(figures.recoveries)}, {figures.litter_runs} left temp files"
        )
    assert all(runs[action] > 0 for action in actions)


# --------------------------------------------------------------------------------------------
# Random moments, real processes


def _work_started(pid: int, scenario: Scenario, action: str) -> bool:
    """podman-emu has begun writing: a staged temp file exists (convert), or the process holds a
    file descriptor inside its state dir (the journal-dir lock is held through the whole write
    phase of convert and revert)."""
    if action == "convert" and any(TEMP_MARKER in name for name in os.listdir(scenario.box.data_dir)):
        return True
    state = str(scenario.box.state_dir)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(state):
                return True
    except OSError:
        pass
    return False


def _spawn(scenario: Scenario, action: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        podman_emu_argv(*_args(action, scenario.name, scenario.disk)),
        env=base_env(scenario.box),
        cwd=scenario.box.cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _watch(process: subprocess.Popen[bytes], scenario: Scenario, action: str, deadline: float) -> float | None:
    """Seconds from spawn until the work starts (None: the process ended or the deadline came)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        if _work_started(process.pid, scenario, action):
            return time.monotonic() - started
        if process.poll() is not None:
            return None
        time.sleep(0.0005)
    return None


def _calibrate(scenario: Scenario, action: str) -> tuple[float, float]:
    """(whole run, work window) of an uninterrupted run, in seconds."""
    scenario.restore("native" if action == "convert" else "converted")
    process = _spawn(scenario, action)
    started = time.monotonic()
    work = _watch(process, scenario, action, 60)
    assert process.wait(timeout=120) == 0
    total = time.monotonic() - started
    assert work is not None, f"never saw {action} start working"
    return total, total - work


def random_kills(scenario: Scenario, runs: int, rng: random.Random) -> Counter[str]:
    """Start `python -m podman_emu convert|revert` and SIGKILL its process group at a random
    moment, the way a closed terminal or the OOM killer would. Even runs pick the moment over
    the whole run; odd runs wait until the work has begun and pick it within the work window
    (most of a run is interpreter start-up, where a kill is uninteresting)."""
    timing = {action: _calibrate(scenario, action) for action in ACTIONS}
    outcomes: Counter[str] = Counter()
    seen: set[tuple[object, ...]] = set()
    for run in range(runs):
        action = ACTIONS[run % len(ACTIONS)]
        total, window = timing[action]
        scenario.restore("native" if action == "convert" else "converted")
        process = _spawn(scenario, action)
        if run % 2 == 0:
            delay = rng.uniform(0, total * 1.1)
            time.sleep(delay)
        else:
            delay = rng.uniform(0, window * 0.9)
            begun = _watch(process, scenario, action, total * 4 + 5)
            time.sleep(delay)
            delay += begun or 0
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        try:
            status, state = check_after_kill(scenario, action)
            check_litter(scenario)
            signature = state_signature(scenario)
            recover(scenario, action, status, state)
            if signature not in seen:
                full_cycle(scenario)
                seen.add(signature)
        except AssertionError as exc:
            raise AssertionError(f"{scenario.fixture} {action} killed after {delay:.3f} s: {exc}") from None
        mode = "at a random moment" if run % 2 == 0 else "while working"
        outcomes["finished before the kill" if finished else f"killed {mode}: journal {status}, config {state}"] += 1
    return outcomes


def test_random_sigkill_of_real_processes(scenario_factory) -> None:
    scenario = scenario_factory(FAST_FIXTURE, "/tmp")
    outcomes = random_kills(scenario, 9, random.Random(6))
    print(f"random kills: {dict(outcomes)}")
    assert sum(outcomes.values()) == 9


@long_run
@pytest.mark.long
def test_random_sigkill_120_runs(scenario_factory) -> None:
    rng = random.Random(int(os.environ.get("PODMAN_EMU_SEED", "2")))
    # Spread over layouts: V1 (3.4, 4.0), 4.1, the real 4.3.1 files, 4.5+ with trailing newline.
    fixtures = [
        "podman-3.4-darwin-amd64.json",
        "podman-4.0-linux-amd64.json",
        "podman-4.1-darwin-amd64.json",
        "podman-4.3-linux-amd64-odd-paths.json",
        "podman-4.5-darwin-amd64.json",
        "podman-4.9-linux-amd64.json",
    ]
    total: Counter[str] = Counter()
    for fixture in fixtures:
        scenario = scenario_factory(fixture, "/tmp")
        outcomes = random_kills(scenario, 20, rng)
        total.update(outcomes)
        print(f"{fixture}: {dict(outcomes)}")
    print(f"random kills, all fixtures: {dict(total)}")
    assert sum(total.values()) >= 120
    # Half the runs aim at the work window; most of those must land in it (some still find the
    # run finished: the window of a revert is a few tens of milliseconds).
    assert sum(count for key, count in total.items() if key.startswith("killed while working")) >= 24


def test_fixtures_exist() -> None:
    assert (FIXTURES / FAST_FIXTURE).is_file()
    assert LONG in (True, False)
