"""A long-lived session to one FRR daemon's vty socket (what vtysh speaks).

The protocol: each command is sent NUL-terminated; the daemon answers with
the command's output followed by three NUL bytes and a one-byte status (0 =
success). Commands may be pipelined: a whole batch goes out in one write and
the answers come back in order, so a batch of 10,000 commands costs one
round trip instead of a vtysh process per command (~25 ms each).
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

from frrctl.frr.base import DriverError, FrrUnavailable

# lib/command.h
CMD_SUCCESS = 0
CMD_WARNING = 1
CMD_ERR_NO_MATCH = 2
CMD_WARNING_CONFIG_FAILED = 13
_TERMINATOR = b"\0\0\0"


# bgpd takes ≥ ~10 µs per `network` command; with more answers to come than
# this, the reader sleeps instead of waking for each one.
_PAUSE_ABOVE = 64
_PAUSE_MAX = 0.002


def read_pause(awaited: int, per_command: float = 10e-6) -> float:
    """How long to sleep before reading again while `awaited` answers are due:
    0 (select, wake at once) for a few; else what the daemon needs for them at
    the least, at most 2 ms (the latency this adds to a batch's end)."""
    if awaited <= _PAUSE_ABOVE:
        return 0.0
    return min(_PAUSE_MAX, awaited * per_command)


class VtyReply(NamedTuple):
    """One command's answer. A NamedTuple: a 10,000-command batch makes 10,000
    of these, and a frozen dataclass costs ~3x as much to build."""

    command: str
    status: int
    output: str

    @property
    def ok(self) -> bool:
        return self.status == CMD_SUCCESS


# A VtyReply from a 3-tuple in C (NamedTuple's constructor is Python code)
_reply: Callable[[tuple[str, int, str]], VtyReply] = partial(tuple.__new__, VtyReply)


class VtyClient:
    """One daemon, one socket, reconnected on demand (e.g. after a daemon restart)."""

    def __init__(self, path: Path, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: socket.socket | None = None

    @property
    def daemon(self) -> str:
        return self.path.stem

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise FrrUnavailable(f"{self.daemon}: cannot connect to {self.path}: {exc}") from exc
        sock.setblocking(False)
        self._sock = sock
        # vtysh sessions start in VIEW node; `enable` needs no password on this socket.
        (reply,) = self._exchange(["enable"])
        if not reply.ok:
            self.close()
            raise DriverError(f"{self.daemon}: 'enable' refused: {reply.output.strip()}")
        return sock

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Connect now (FrrUnavailable if the daemon is not there)."""
        self._connect()

    def fileno(self) -> int:
        """The socket's descriptor, for select(): readable while idle means the
        daemon closed the session (it died or restarts); see `idle_closed`."""
        return self._connect().fileno()

    def idle_closed(self) -> bool:
        """Read an idle session: True (and disconnect) when the daemon closed it."""
        if self._sock is None:
            return True
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if data:
            return False  # nothing unsolicited is expected; ignore it
        self.close()
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def run(self, commands: Sequence[str]) -> list[VtyReply]:
        """Send `commands` as one pipelined batch; one reply per command, in order.

        A broken connection raises FrrUnavailable and is dropped, so the next
        call reconnects; the caller decides whether the batch may be resent.
        """
        self._connect()
        return self._exchange(commands)

    def _exchange(self, commands: Sequence[str]) -> list[VtyReply]:
        sock = self._sock
        assert sock is not None
        for command in commands:
            if "\0" in command or "\n" in command:
                raise ValueError(f"vty command must be one line: {command!r}")
        out = b"".join(c.encode() + b"\0" for c in commands)
        replies: list[VtyReply] = []
        buf = bytearray()
        deadline = time.monotonic() + self.timeout
        sel = selectors.DefaultSelector()
        sel.register(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if out else 0))
        sent = 0
        try:
            while len(replies) < len(commands):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FrrUnavailable(
                        f"{self.daemon}: no answer within {self.timeout} s "
                        f"({len(replies)}/{len(commands)} commands answered)"
                    )
                pause = read_pause(len(commands) - len(replies)) if sent == len(out) else 0.0
                if pause:
                    # Many answers to come: sleep, then take all that came, rather
                    # than wake for each (bgpd writes every answer on its own).
                    time.sleep(pause)
                    events = [(None, selectors.EVENT_READ)]
                else:
                    events = [(None, ev) for _, ev in sel.select(remaining)]
                for _, ev in events:
                    if ev & selectors.EVENT_WRITE:
                        sent += sock.send(out[sent : sent + 262144])
                        if sent == len(out):
                            sel.modify(sock, selectors.EVENT_READ)
                    if ev & selectors.EVENT_READ:
                        self._drain(sock, buf, pause > 0)
                        self._split(buf, commands, replies)
        except OSError as exc:
            self.close()
            raise FrrUnavailable(f"{self.daemon}: {exc}") from exc
        except FrrUnavailable:
            # The stream is out of step with our commands: start afresh next time.
            self.close()
            raise
        finally:
            sel.close()
        return replies

    def _drain(self, sock: socket.socket, buf: bytearray, maybe_empty: bool) -> None:
        """Append what the daemon sent; after a pause nothing may be there yet."""
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                return
            if not chunk:
                raise FrrUnavailable(f"{self.daemon}: connection closed by daemon")
            buf += chunk
            if not maybe_empty and len(chunk) < (1 << 20):
                return

    @staticmethod
    def _split(buf: bytearray, commands: Sequence[str], replies: list[VtyReply]) -> None:
        # Output text never contains NUL, so the first NUL starts a terminator.
        # One pass over the buffer, one cut at the end: most answers are empty.
        data = bytes(buf)
        pos, size, find = 0, len(data), data.find
        while (end := find(_TERMINATOR, pos)) >= 0 and end + 4 <= size:
            text = data[pos:end].decode(errors="replace") if end > pos else ""
            replies.append(_reply((commands[len(replies)], data[end + 3], text)))
            pos = end + 4
        del buf[:pos]
