"""Console output captured from real boots, shared by the sanitizer and boot-stage tests."""

# Bytes as AAVMF (Debian 12, edk2 2022.11) writes them on the PL011 UART, captured from a real boot
# of the test guest: CR LF line ends, screen clears and cursor homes between firmware messages.
AAVMF_START = (
    b"UEFI firmware (version  built at 13:10:49 on Nov  5 2024)\r\n"
    b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
    b'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    b'BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x2,0x0)\r\n'
    b"EFI stub: Booting Linux Kernel...\r\n"
    b"EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path\r\n"
    b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r\n"
    b"[    0.000000] Linux version 6.1.0-57-arm64 (debian-kernel@lists.debian.org) #1 SMP Debian 6.1.192-3\r\n"
)
# What Fedora CoreOS's GRUB and systemd put on a serial console (menu drawn with cursor moves,
# coloured status words), then podman's ready unit.
FCOS_LATER = (
    b"\x1b[0m\x1b[30m\x1b[47m\x1b[2J\x1b[1;1HWelcome to GRUB!\r\n\r\n"
    b"\x1b[5;1H      GNU GRUB  version 2.06\x1b[6;1H\x1b[7;2H*Fedora CoreOS 38.20230609.3.0 (ostree:0)\x1b[m"
    b"\x1b[16;1H   The selected entry will be started automatically in 1s.\x1b[K"
    b"\x1b[2J\x1b[1;1H  Booting `Fedora CoreOS 38.20230609.3.0 (ostree:0)'\r\n"
    b"EFI stub: Booting Linux Kernel...\r\n"
    b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\r\n"
    b"[    4.210000] Run /init as init process\r\n"
    b"[    5.300000] systemd[1]: Detected virtualization qemu.\r\n"
    b"\x1b]0;Fedora CoreOS\x07"
    b"Welcome to \x1b[0;38;5;75mFedora CoreOS 38.20230609.3.0\x1b[0m!\r\n"
    b"[\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39mready.service\x1b[0m.\r\n"
    b"\r\nFedora CoreOS 38.20230609.3.0\r\nKernel 6.3.7-200.fc38.aarch64 on an aarch64 (ttyAMA0)\r\n\r\n"
    b"localhost login: "
)
