"""The CPU and accelerator profile: which -cpu/-accel/-M an emulated machine gets.

Chosen from measurements on QEMU 7.2 (README "Why this CPU"): bare `-cpu max` emulates the QARMA5
pointer-authentication cipher in software and boots 4–5x slower; `pauth-impdef=on` keeps pointer
authentication (so the guest's userland is unchanged) at the speed of models without it. QEMU 10
made impdef the default for the newest virt machine type, so there plain `max` is right.

Every `max` profile also says `lpa2=off` where qemu has the property: edk2-stable202511 hangs
before its boot menu when the CPU offers FEAT_LPA2, which `max` does since QEMU 7.0 (edk2 issue
11962; Debian shipped it in edk2 2025.11-1 to -4, fixed in 2026.02). A firmware upgrade can
bring that build under an already converted machine, so a probe of today's firmware would not
protect it; and a guest of podman's size never needs LPA2's 52-bit addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from podman_emu.errors import UsageError
from podman_emu.host.capabilities import QemuCapabilities

# MTTCG is QEMU's default for Arm-on-x86; saying so keeps a build whose default differs from
# silently serialising every vCPU onto one host thread.
ACCEL = "tcg,thread=multi"
# highmem: more than ~3 GiB of RAM; gic-version=max: more than 8 vCPUs (GICv2's limit).
MACHINE = "virt,highmem=on,gic-version=max"

# Models that run a modern arm64 userland, in order of preference when `max` is unusable.
FALLBACK_MODELS = ("neoverse-n1", "cortex-a76", "cortex-a72", "cortex-a57")
REFUSED_MODELS = {
    "host": "`host` needs a hardware accelerator (KVM/HVF) for an aarch64 guest, and an x86_64 host has none",
}


@dataclass(frozen=True)
class TcgProfile:
    """The -accel/-cpu/-M an emulated machine runs with, and why that CPU."""

    cpu: str
    accel: str
    machine: str
    reason: str

    def arguments(self) -> list[str]:
        return ["-accel", self.accel, "-cpu", self.cpu, "-M", self.machine]


LPA2_OFF = "lpa2=off"
LPA2_REASON = "; lpa2=off: edk2 2025.11 firmware hangs with max's FEAT_LPA2"


def choose_profile(capabilities: QemuCapabilities, cpu_override: str | None = None) -> TcgProfile:
    if cpu_override:
        return TcgProfile(_checked_model(capabilities, cpu_override), ACCEL, MACHINE, "chosen with --cpu")
    if capabilities.version >= (10, 0, 0) and "max" in capabilities.cpu_models:
        return _max_profile(
            capabilities, "max", f"QEMU {capabilities.version_string} already uses the fast impdef pauth for max"
        )
    if "max" in capabilities.cpu_models and capabilities.has_pauth_impdef:
        return _max_profile(
            capabilities,
            "max,pauth-impdef=on",
            "all of max's features, with QEMU's fast pauth instead of QARMA5 (4-5x faster boot than bare max)",
        )
    for model in FALLBACK_MODELS:
        if model in capabilities.cpu_models:
            return TcgProfile(
                model,
                ACCEL,
                MACHINE,
                f"QEMU {capabilities.version_string} has no pauth-impdef; {model} avoids the slow QARMA5 pauth",
            )
    return _max_profile(capabilities, "max", "no faster model is available in this QEMU (expect slow boots)")


def _max_profile(capabilities: QemuCapabilities, cpu: str, reason: str) -> TcgProfile:
    if capabilities.has_lpa2:
        return TcgProfile(f"{cpu},{LPA2_OFF}", ACCEL, MACHINE, reason + LPA2_REASON)
    return TcgProfile(cpu, ACCEL, MACHINE, reason)


def lacks_lpa2_off(capabilities: QemuCapabilities, cpu: str) -> bool:
    """Does `cpu` (a machine's -cpu value) give the guest FEAT_LPA2, which edk2 2025.11 hangs on?"""
    parts = cpu.split(",")
    return parts[0] == "max" and capabilities.has_lpa2 and LPA2_OFF not in parts[1:]


def _checked_model(capabilities: QemuCapabilities, requested: str) -> str:
    model = requested.split(",", 1)[0]
    if model in REFUSED_MODELS:
        raise UsageError(
            f"--cpu {requested}: {REFUSED_MODELS[model]}",
            hint="Leave --cpu out: the default is chosen from what this qemu can do.",
        )
    if model not in capabilities.cpu_models:
        close = [name for name in capabilities.cpu_models if model.lower() in name.lower()][:5]
        suggestion = f" Similar: {', '.join(close)}." if close else ""
        raise UsageError(
            f"--cpu {requested}: {capabilities.path} has no CPU model {model!r}.{suggestion}",
            hint=f"List them with `{capabilities.path} -M virt -cpu help`.",
        )
    if "pauth-impdef" in requested and not capabilities.has_pauth_impdef:
        raise UsageError(
            f"--cpu {requested}: QEMU {capabilities.version_string} has no pauth-impdef property",
            hint="Use pauth=off instead, or a model without pointer authentication (neoverse-n1).",
        )
    return requested
