from podman_emu.cli import main

main()
