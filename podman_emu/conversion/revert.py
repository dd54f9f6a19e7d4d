"""`podman-emu revert`: the journal + the current config -> the native config, minus nothing
podman changed since (cpus, memory, LastUp stay)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podman_emu.conversion.apply import apply_revert, effective_journal, machine_journal, repair_interrupted
from podman_emu.conversion.artifacts import is_emulated, refuse_native_arm64
from podman_emu.conversion.plan import NativeConfig, Plan, plan_revert
from podman_emu.conversion.routes import routed_argv
from podman_emu.conversion.start_helpers import HostPlan, without_machine
from podman_emu.errors import ConversionStateError
from podman_emu.podman.machines import LoadedMachine, load_machine
from podman_emu.podman.running import refuse_if_busy


@dataclass
class RevertOutcome:
    plan: Plan
    machine: LoadedMachine
    byte_identical: bool
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)  # named by a current config, or outside podman's dirs
    applied: bool = False
    host: HostPlan | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(applied=self.applied),
            "byte_identical_to_original": self.byte_identical,
            "removed": self.removed if self.applied else self.plan.removals,
            "kept": self.kept + self.protected,
            "host_changes": [edit.to_json() for edit in self.host.edits] if self.host else [],
        }


def revert_machine(name: str, *, delete_disk: bool, dry_run: bool) -> RevertOutcome:
    machine = load_machine(name)
    if not dry_run:
        repair_interrupted(machine)
    journal = effective_journal(machine, machine_journal(machine))
    if journal is None:
        refuse_native_arm64(machine.document.content)
        if is_emulated(machine.document.content):
            raise ConversionStateError(
                f"machine {name!r} runs qemu-system-aarch64, but podman-emu has no record of converting it",
                hint="It was changed by hand or by another tool, so its native command line is unknown. "
                "Recreate it with `podman machine rm` + `podman machine init`.",
            )
        raise ConversionStateError(
            f"machine {name!r} was never converted by podman-emu; there is nothing to revert",
            hint="`podman-emu list` shows which machines are emulated.",
        )
    refuse_if_busy(machine.name, machine.config, "revert")
    created = [item.path for item in journal.created if item.role != "disk" or delete_disk]
    plan = plan_revert(
        machine.document.content,
        NativeConfig(journal.native_cmdline, journal.native_image_path),
        created,
        routed_argv(machine.config_path, machine.document.content),
    )
    kept = [item.path for item in journal.created if item.role == "disk" and not delete_disk]
    outcome = RevertOutcome(
        plan=plan,
        machine=machine,
        byte_identical=machine.document.sha256 == journal.converted_sha256,
        kept=kept,
    )
    if dry_run:
        outcome.host = without_machine(machine.config_path, dry_run=True)
        return outcome
    outcome.removed, outcome.protected = apply_revert(machine, plan, journal, delete_disk=delete_disk)
    outcome.applied = True
    # After the config: until it is native again, its starts still need the launcher.
    outcome.host = without_machine(machine.config_path, dry_run=False)
    return outcome
