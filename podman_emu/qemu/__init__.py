"""qemu itself, independent of podman and of this host: command-line syntax (pure)."""
