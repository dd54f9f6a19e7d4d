"""Which -cpu an emulated machine gets, from what the host's qemu can do."""

import pytest

from podman_emu.errors import UsageError
from podman_emu.host.capabilities import QemuCapabilities
from podman_emu.host.cpu_profile import choose_profile, lacks_lpa2_off


def capabilities(
    version: tuple[int, int, int], models: tuple[str, ...], impdef: bool, lpa2: bool = False
) -> QemuCapabilities:
    return QemuCapabilities("/q", version, "QEMU emulator version x", models, ("tcg",), impdef, lpa2)


@pytest.mark.parametrize(
    ("version", "models", "impdef", "lpa2", "cpu"),
    [
        ((7, 2, 0), ("max", "cortex-a57", "neoverse-n1"), True, True, "max,pauth-impdef=on,lpa2=off"),
        ((10, 1, 0), ("max", "cortex-a57"), True, True, "max,lpa2=off"),
        ((6, 2, 0), ("max", "cortex-a57"), True, False, "max,pauth-impdef=on"),
        ((5, 2, 0), ("max", "cortex-a72", "cortex-a57"), False, False, "cortex-a72"),
        ((5, 2, 0), ("max",), False, False, "max"),
    ],
)
def test_profile_choice_per_capability(
    version: tuple[int, int, int], models: tuple[str, ...], impdef: bool, lpa2: bool, cpu: str
) -> None:
    assert choose_profile(capabilities(version, models, impdef, lpa2)).cpu == cpu


@pytest.mark.parametrize(
    ("cpu", "has_lpa2", "lacks"),
    [
        ("max", True, True),
        ("max,pauth-impdef=on", True, True),
        ("max,pauth-impdef=on,lpa2=off", True, False),
        ("max,lpa2=off,pauth-impdef=on", True, False),
        ("max", False, False),  # QEMU < 7.0: no FEAT_LPA2 to offer
        ("neoverse-n1", True, False),
    ],
)
def test_which_cpus_offer_the_guest_lpa2(cpu: str, has_lpa2: bool, lacks: bool) -> None:
    assert lacks_lpa2_off(capabilities((7, 2, 0), ("max",), True, has_lpa2), cpu) is lacks


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
