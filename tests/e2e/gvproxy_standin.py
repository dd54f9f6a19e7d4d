#!/usr/bin/python3
"""gvproxy stand-in for podman 4.3.1 machine tests. It is NOT gvproxy and gives no networking.

Debian 12 ships no gvproxy, and `podman machine start` refuses to launch qemu without one. This
stand-in does only what podman itself observes:

* writes its own pid to `-pid-file` (`podman machine stop` SIGKILLs that pid);
* listens on the `-listen-qemu unix://PATH` socket and accepts the one connection podman dials
  there, which podman then hands to qemu as fd 3 for `-netdev socket,fd=3`. Frames qemu sends are
  read and dropped;
* listens on 127.0.0.1:`-ssh-port` and closes every connection at once: after the ready line,
  podman polls that port before it tries ssh, so without a listener it would poll forever. With
  the connection closed, ssh fails fast (exit 255) and `podman machine start` ends;
* exits on SIGTERM/SIGINT, or when qemu's end of the connection closes, removing its pid file and
  its listening socket (only if the path still is that socket: qemu's QMP monitor takes over the
  same path once it starts).

Podman deletes the QMP path right after it launches the helper and only then dials it, so until
the first connection arrives the socket is re-created whenever the path disappears.

Set GVPROXY_STANDIN_LOG to a file path to log what happens; GVPROXY_STANDIN_SSH=0 leaves the ssh
port closed. Other -forward-* arguments are accepted and ignored (no API forwarding here).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import sys
import time

VALUE_FLAGS = {
    "listen-qemu", "pid-file", "ssh-port", "forward-sock", "forward-dest", "forward-user",
    "forward-identity", "listen", "listen-bess", "listen-stdio", "listen-vfkit", "mtu", "log-file",
}  # fmt: skip


def parse_args(argv: list[str]) -> dict[str, list[str]]:
    """Go `flag` syntax as gvproxy takes it: -name value, --name value, -name=value, bool flags."""
    opts: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            continue
        name = arg.lstrip("-")
        value = "true"
        if "=" in name:
            name, value = name.split("=", 1)
        elif name in VALUE_FLAGS and i < len(argv):
            value = argv[i]
            i += 1
        opts.setdefault(name, []).append(value)
    return opts


class StandIn:
    def __init__(self, opts: dict[str, list[str]]) -> None:
        self.log_path = os.environ.get("GVPROXY_STANDIN_LOG")
        self.pid_file = opts.get("pid-file", [None])[-1]
        listen = opts.get("listen-qemu", [""])[-1]
        if not listen.startswith("unix://"):
            raise SystemExit(f"gvproxy stand-in: only -listen-qemu unix://PATH is supported, got {listen!r}")
        self.qemu_path = listen[len("unix://") :]
        self.ssh_port = int(opts.get("ssh-port", ["0"])[-1] or 0)
        self.sel = selectors.DefaultSelector()
        self.listener: socket.socket | None = None
        self.listener_ino: int | None = None
        self.qemu_conn: socket.socket | None = None
        self.ssh_listener: socket.socket | None = None
        self.stopping = False
        self.log(f"started pid={os.getpid()} argv={sys.argv[1:]}")

    def log(self, msg: str) -> None:
        if self.log_path:
            with contextlib.suppress(OSError), open(self.log_path, "a") as fh:
                fh.write(f"{time.strftime('%H:%M:%S')} [{os.getpid()}] {msg}\n")

    def bind_qemu_listener(self) -> None:
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.qemu_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.qemu_path)
        sock.listen(1)
        sock.setblocking(False)
        self.listener = sock
        self.listener_ino = os.stat(self.qemu_path).st_ino
        self.sel.register(sock, selectors.EVENT_READ, self.accept_qemu)
        self.log(f"listening on {self.qemu_path}")

    def path_is_ours(self) -> bool:
        try:
            return os.stat(self.qemu_path).st_ino == self.listener_ino
        except FileNotFoundError:
            return False

    def accept_qemu(self, sock: socket.socket) -> None:
        conn, _ = sock.accept()
        conn.setblocking(False)
        self.qemu_conn = conn
        self.sel.register(conn, selectors.EVENT_READ, self.drain_qemu)
        # One connection is all podman makes; qemu binds its QMP socket on this path next.
        self.sel.unregister(sock)
        sock.close()
        self.listener = None
        self.log("accepted the qemu connection")

    def drain_qemu(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.log("qemu closed its end; exiting")
            self.stopping = True

    def bind_ssh(self) -> None:
        if not self.ssh_port or os.environ.get("GVPROXY_STANDIN_SSH", "1") == "0":
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", self.ssh_port))
        except OSError as exc:
            self.log(f"cannot listen on ssh port {self.ssh_port}: {exc}")
            sock.close()
            return
        sock.listen(8)
        sock.setblocking(False)
        self.ssh_listener = sock
        self.sel.register(sock, selectors.EVENT_READ, self.refuse_ssh)
        self.log(f"ssh port {self.ssh_port}: accepting and closing")

    def refuse_ssh(self, sock: socket.socket) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = sock.accept()
            conn.close()
            self.log("closed an ssh-port connection")

    def write_pid(self) -> None:
        if self.pid_file:
            tmp = f"{self.pid_file}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.write(str(os.getpid()))
            os.replace(tmp, self.pid_file)

    def cleanup(self) -> None:
        if self.listener is not None and self.path_is_ours():
            with contextlib.suppress(OSError):
                os.unlink(self.qemu_path)
        for sock in (self.listener, self.qemu_conn, self.ssh_listener):
            if sock is not None:
                sock.close()
        if self.pid_file:
            with contextlib.suppress(OSError), open(self.pid_file) as fh:
                if fh.read().strip() == str(os.getpid()):
                    os.unlink(self.pid_file)
        self.log("exited")

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            self.log(f"signal {signum}")
            self.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        try:
            self.bind_qemu_listener()
            self.bind_ssh()
            self.write_pid()
            while not self.stopping:
                for key, _ in self.sel.select(timeout=0.05):
                    key.data(key.fileobj)
                if self.listener is not None and not self.path_is_ours():
                    self.log("listening socket path was removed; binding again")
                    self.bind_qemu_listener()
        finally:
            self.cleanup()
        return 0


def main() -> int:
    return StandIn(parse_args(sys.argv[1:])).run()


if __name__ == "__main__":
    sys.exit(main())
