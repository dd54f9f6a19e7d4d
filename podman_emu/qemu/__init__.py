"""Everything that knows qemu: its command-line syntax, the host's binaries and firmware."""
