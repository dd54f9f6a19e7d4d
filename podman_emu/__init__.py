"""podman-emu: run a podman 4.x or 5.x (qemu) machine as a fully emulated aarch64 VM on an x86_64 host."""

__version__ = "0.1.0"
