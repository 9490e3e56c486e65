"""Reach a TCP port inside a named network namespace without leaving ours.

FRR's gRPC module listens on every address of its namespace. A lab (or a
test) talks to it from the root namespace through a unix socket: each
connection opens a TCP socket created inside the target namespace (setns on
one short-lived thread, which then switches back), and bytes are copied both
ways. Nothing is bound or routed between namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body with the calling thread (only) in network namespace `name`."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def connect_in_netns(name: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection opened from inside `name`; the socket stays bound to it."""
    with in_netns(name):
        return socket.create_connection((host, port), timeout=timeout)


class NetnsPortForwarder:
    """unix:PATH in our namespace -> host:port in namespace `netns`.

    `target` is a gRPC target string (`unix:/...`). close() stops the listener
    and every open connection and removes the socket's directory.
    """

    def __init__(self, netns: str, host: str, port: int, prefix: str = "frrctl-fwd-") -> None:
        self.netns, self.host, self.port = netns, host, port
        self._dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.path = self._dir / "fwd.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = connect_in_netns(self.netns, self.host, self.port)
        except OSError:
            client.close()  # the gRPC client sees UNAVAILABLE and retries
            return
        upstream.settimeout(None)
        with self._lock:
            self._conns += [client, upstream]
        _pump(client, upstream, self._stop)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            self._conns.clear()
        self._thread.join(timeout=2)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> NetnsPortForwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    peer = {a: b, b: a}
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ)
    sel.register(b, selectors.EVENT_READ)
    try:
        while not stop.is_set():
            for key, _ in sel.select(0.5):
                src: socket.socket = key.fileobj  # type: ignore[assignment]
                data = src.recv(1 << 16)
                if not data:
                    return
                peer[src].sendall(data)
    except OSError:
        return
    finally:
        sel.close()
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
