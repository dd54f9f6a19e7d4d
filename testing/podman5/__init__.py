"""Real podman 5.4.2 for the end-to-end suite: a Debian trixie amd64 root (podman 5.4.2, qemu 10,
gvproxy, virtiofsd) on this Debian 12 host, sessions inside it as a user made for the session,
and the arm64 guest disk such a machine boots.

API::

    build_root(cache_dir=DEFAULT_CACHE, *, log=None) -> Podman5Root
        Root only. Cached in cache_dir/podman5-root-<key[:16]>/ (key: sha256 over the package
        list, the helper links, podman-emu's Python requirements and BUILD_REVISION); built with
        mmdebstrap when absent (~1-2 min cold), under a lock.

    enter(root, log_dir, *, name="p5user", binds=(), install_podman_emu=True) -> RootSession
        Context manager (root only): bind-mounts /proc /sys /dev /dev/pts, tmpfs /dev/shm /run
        /tmp, the checkout and `binds` read-only at their own paths; creates `name` inside the
        root with an unused uid (no host account, no process); pip-installs the checkout's
        podman-emu into the root's venv. On exit, also after a failure: kills qemu/gvproxy by
        their pid files and then every process of that uid, uninstalls podman-emu, removes the
        user, unmounts everything.

    RootSession.run(argv, timeout=, env=) -> testing.podman_user.Result
        argv as the user (private mount namespace, root pivoted to /, setpriv), in its own
        process group, killed on timeout; logged to log_dir/commands.log.
    RootSession.spawn(argv, output=PATH) -> Popen (background, own session; end it with
        root.stop_process_group), .podman(...), .podman_emu(...) (the root venv's podman-emu),
        .run_as_root(...) (chroot), .host(path) (a root path as the host sees it), .config_dir,
        .machine_json(name), .processes(comm_prefix), .kill_everything()

    guest.build_guest(cache_dir=DEFAULT_CACHE) -> testing.realguest.RealGuest
        The arm64 guest disk and busybox tarball (testing.realguest's Debian 12 build: it
        serves podman 5.4.2 as it is; see guest.py for what was checked).

CLI: `python -m testing.podman5 build-root` prints Podman5Root as JSON;
`python -m testing.podman5 shell -- CMD...` runs CMD as the session user (debugging).
"""

from .root import DEFAULT_CACHE, Podman5Root, RootError, RootSession, build_root, cache_key, enter

__all__ = ["DEFAULT_CACHE", "Podman5Root", "RootError", "RootSession", "build_root", "cache_key", "enter"]
