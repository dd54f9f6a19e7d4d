import pytest

from podman_emu.qemu.argv import (
    ArgvSyntaxError,
    canonical_name,
    escape_value,
    first_value,
    iter_options,
    replace_suboption,
    split_suboptions,
    suboption,
)


def test_options_are_paired_with_values_and_flags_stand_alone() -> None:
    argv = ["qemu", "-m", "2048", "-nographic", "-drive", "if=virtio,file=x"]
    assert [(o.name, o.value) for o in iter_options(argv)] == [
        ("-m", "2048"),
        ("-nographic", None),
        ("-drive", "if=virtio,file=x"),
    ]


@pytest.mark.parametrize("argv", [["qemu", "-m"], ["qemu", "stray"], ["qemu", "-smp", "1", "-m"]])
def test_malformed_argv_is_a_syntax_error(argv: list[str]) -> None:
    with pytest.raises(ArgvSyntaxError):
        list(iter_options(argv))


def test_double_comma_is_a_literal_comma() -> None:
    assert split_suboptions("if=virtio,file=/a,,b,format=raw") == ["if=virtio", "file=/a,b", "format=raw"]
    assert suboption("if=virtio,file=/a,,b", "file") == "/a,b"
    assert suboption("if=virtio", "file") is None


def test_replace_suboption_escapes_the_new_value_and_keeps_the_rest() -> None:
    assert replace_suboption("if=virtio,file=/old,,x", "file", "/new,y") == "if=virtio,file=/new,,y"
    assert escape_value("/a,b,,c") == "/a,,b,,,,c"


def test_canonical_names() -> None:
    assert canonical_name("-machine") == "-M"
    assert canonical_name("--accel") == "-accel"


def test_first_value_matches_exactly_like_podman_set() -> None:
    argv = ["qemu", "-M", "virt", "-m", "100", "-m", "200"]
    assert first_value(argv, "-m") == "100"
    assert first_value(argv, "-smp") is None
