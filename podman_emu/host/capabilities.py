"""What this host offers an emulated machine, as plain values: what its qemu can do and which
firmware it has. No I/O here (qemu.py probes, firmware.py searches), so the planner can take
these values without importing the code that finds them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from podman_emu.qemu.argv import escape_value

PFLASH_SIZE = 64 * 1024 * 1024
FirmwareFormat = Literal["raw", "qcow2"]


@dataclass(frozen=True)
class QemuCapabilities:
    """What a qemu-system-aarch64 binary said about itself when probed."""

    path: str
    version: tuple[int, int, int]
    version_text: str
    cpu_models: tuple[str, ...]
    accelerators: tuple[str, ...]
    has_pauth_impdef: bool
    # QEMU >= 7.0 gives `max` FEAT_LPA2 and a property to switch it off.
    has_lpa2: bool

    @property
    def version_string(self) -> str:
        return ".".join(str(part) for part in self.version)


@dataclass(frozen=True)
class Firmware:
    code: str
    code_format: FirmwareFormat
    # None with pflash: a 64 MiB blank vars file is created (podman's own recipe on macOS).
    vars_template: str | None
    vars_format: FirmwareFormat
    source: str
    # The code image is not 64 MiB and is loaded with -bios: no vars file, so UEFI variables do
    # not persist (documented fallback, and what podman does on linux/arm64).
    bios: bool = False

    def arguments(self, vars_path: str) -> list[str]:
        """The qemu options that load this firmware, with `vars_path` as the machine's vars file."""
        if self.bios:
            return ["-bios", self.code]
        code = f"if=pflash,format={self.code_format},unit=0,readonly=on,file={escape_value(self.code)}"
        variables = f"if=pflash,format={self.vars_format},unit=1,file={escape_value(vars_path)}"
        return ["-drive", code, "-drive", variables]
