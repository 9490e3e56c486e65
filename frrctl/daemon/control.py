"""The control socket: one JSON request per connection, one JSON reply (see
frrctl.status for the protocol and the client side)."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError

log = logging.getLogger("frrctl.daemon")

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class ControlServer:
    """A non-blocking listening socket at `path`; `accept()` serves one request."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.sock: socket.socket | None = None

    def open(self) -> socket.socket:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
        except OSError:
            self.path.unlink(missing_ok=True)  # stale socket of a dead daemon
        else:
            raise FrrctlError(f"another frrctl daemon answers on {self.path}")
        finally:
            probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self.sock = sock
        return sock

    def accept(self) -> None:
        assert self.sock is not None
        try:
            conn, _ = self.sock.accept()
        except BlockingIOError:
            return
        conn.settimeout(5)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                reply = self.handler(json.loads(data))
            except Exception as exc:
                reply = {"error": str(exc) or type(exc).__name__}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError as exc:
            log.warning("control connection: %s", exc)
        finally:
            conn.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            self.path.unlink(missing_ok=True)
