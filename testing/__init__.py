"""Helpers shared by every test suite and by the benchmarks: sandboxed podman homes built from the
fixture configs, CLI runners, another user to run podman as, real qemu processes, disk image
builders and the aarch64 test guest.

Importable without pytest (benchmarks use it); nothing here imports podman_emu except the CLI
runners in `cli`, which run podman-emu itself. The oracles in `oracles` are written from podman's
and Go's rules, never from podman_emu, so they can judge it.
"""
