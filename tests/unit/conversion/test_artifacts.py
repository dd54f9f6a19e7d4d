"""What a conversion creates (the console chardev read back from the argv the rewrite writes), and how a
machine is classified: native, native arm64 or emulated."""

from pathlib import Path

import pytest

from podman_emu.conversion.artifacts import configured_console_log, is_emulated, machine_kind, refuse_native_arm64
from podman_emu.conversion.rewrite import console_arguments
from podman_emu.errors import ConversionStateError
from testing.fixtures import entries_expecting, load_fixture


def test_configured_log_is_read_back_from_the_argv_plan_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "with,comma" / "m.log")
    argv = ["/usr/bin/qemu-system-aarch64", "-m", "2048", *console_arguments(path), "-display", "none"]
    assert configured_console_log(argv) == path
    assert configured_console_log(["/usr/bin/qemu-system-x86_64", "-serial", "stdio"]) is None


AARCH64 = "/usr/bin/qemu-system-aarch64"


@pytest.mark.parametrize(
    ("argv", "kind"),
    [
        (["/usr/local/bin/qemu-system-x86_64", "-machine", "q35,accel=hvf:tcg", "-cpu", "host"], "native"),
        (["/usr/bin/qemu-system-x86_64", "-accel", "kvm", "-cpu", "host"], "native"),
        # what podman writes on an Apple-silicon Mac: hvf first, TCG only as its fallback
        ([AARCH64, "-accel", "hvf", "-accel", "tcg", "-cpu", "host", "-M", "virt,highmem=on"], "native-arm64"),
        ([AARCH64, "-accel", "kvm", "-cpu", "host", "-M", "virt,gic-version=max"], "native-arm64"),
        ([AARCH64, "-M", "virt,accel=kvm:tcg"], "native-arm64"),
        ([AARCH64, "-enable-kvm", "-M", "virt"], "native-arm64"),
        ([AARCH64, "-accel", "accel=hvf"], "native-arm64"),
        # what podman-emu writes, and a hand conversion that names no accelerator (TCG is the default)
        ([AARCH64, "-accel", "tcg,thread=multi", "-cpu", "max", "-M", "virt"], "emulated"),
        ([AARCH64, "-cpu", "cortex-a72", "-M", "virt"], "emulated"),
    ],
)
def test_a_machine_is_classified_by_what_its_argv_does(argv: list[str], kind: str) -> None:
    assert machine_kind({"CmdLine": argv}) == kind
    assert is_emulated({"CmdLine": argv}) is (kind == "emulated")


@pytest.mark.parametrize("entry", entries_expecting("native-arm64"), ids=lambda entry: entry["file"])
def test_every_native_arm64_fixture_is_native_and_its_plan_is_refused(entry: dict[str, str]) -> None:
    content = load_fixture(entry["file"])
    assert machine_kind(content) == "native-arm64"
    with pytest.raises(ConversionStateError, match=r"native arm64 machine .* on the host accelerator hvf"):
        refuse_native_arm64(content)
