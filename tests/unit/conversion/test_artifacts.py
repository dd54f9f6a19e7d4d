"""What a conversion creates: the console chardev read back from the argv the rewrite writes."""

from pathlib import Path

from podman_emu.conversion.artifacts import configured_console_log
from podman_emu.conversion.rewrite import console_arguments


def test_configured_log_is_read_back_from_the_argv_plan_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "with,comma" / "m.log")
    argv = ["/usr/bin/qemu-system-aarch64", "-m", "2048", *console_arguments(path), "-display", "none"]
    assert configured_console_log(argv) == path
    assert configured_console_log(["/usr/bin/qemu-system-x86_64", "-serial", "stdio"]) is None
