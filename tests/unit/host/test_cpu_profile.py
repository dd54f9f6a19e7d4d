"""Which -cpu an emulated machine gets, from what the host's qemu can do."""

import pytest

from podman_emu.errors import UsageError
from podman_emu.host.capabilities import QemuCapabilities
from podman_emu.host.cpu_profile import choose_profile


def capabilities(version: tuple[int, int, int], models: tuple[str, ...], impdef: bool) -> QemuCapabilities:
    return QemuCapabilities("/q", version, "QEMU emulator version x", models, ("tcg",), impdef)


@pytest.mark.parametrize(
    ("version", "models", "impdef", "cpu"),
    [
        ((7, 2, 0), ("max", "cortex-a57", "neoverse-n1"), True, "max,pauth-impdef=on"),
        ((10, 1, 0), ("max", "cortex-a57"), True, "max"),
        ((5, 2, 0), ("max", "cortex-a72", "cortex-a57"), False, "cortex-a72"),
        ((5, 2, 0), ("max",), False, "max"),
    ],
)
def test_profile_choice_per_capability(
    version: tuple[int, int, int], models: tuple[str, ...], impdef: bool, cpu: str
) -> None:
    assert choose_profile(capabilities(version, models, impdef)).cpu == cpu


@pytest.mark.parametrize(
    ("requested", "fragment"),
    [
        ("host", "hardware accelerator"),
        ("cortex-z9", "no CPU model 'cortex-z9'"),
        ("cortex-a57,pauth-impdef=on", "no pauth-impdef"),
    ],
)
def test_cpu_override_is_checked(requested: str, fragment: str) -> None:
    with pytest.raises(UsageError) as raised:
        choose_profile(capabilities((7, 2, 0), ("max", "cortex-a57"), False), requested)
    assert fragment in raised.value.message


def test_cpu_override_accepts_known_models() -> None:
    assert choose_profile(capabilities((7, 2, 0), ("max", "cortex-a57"), True), "cortex-a57").cpu == "cortex-a57"
