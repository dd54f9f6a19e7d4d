"""Programs podman runs, not the user: the gvproxy launcher of an emulated machine and the API
forwarder it starts. They sit at the top beside cli (nothing imports them) and import only the
standard library and podman-emu's stdlib-only registry, because they run at every machine start."""
