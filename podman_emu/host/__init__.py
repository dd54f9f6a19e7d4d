"""This computer: its qemu-system-aarch64 (probed), its aarch64 UEFI firmware (found) and the CPU
profile chosen from what that qemu can do."""
