"""Watching an emulated machine: its serial console log (kept bounded, made printable, followed
like `tail -F`), the boot stage it shows, and what the running qemu says over QMP."""
