from podman_emu.entry import main

main()
