"""The daemon's operator state (drain, holds), its control socket, and status output.

The operator state lives in STATE_DIR/operator.json and is changed only under
an flock, with an atomic rename, by `frrctl drain|undrain|hold|release`; the
daemon reads it at start and whenever told to (`reload` on the control socket,
or SIGHUP). So a drain survives a daemon or host restart, and works even when
the daemon is not running (it applies at start).

The control socket (STATE_DIR/control.sock) speaks one JSON object per line
each way: {"cmd": "status"} or {"cmd": "reload"}. Everything here but the
socket and file I/O is pure.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError, UsageError
from frrctl.fsutil import write_atomic
from frrctl.policy import Drain, prefix_key
from frrctl.pools import IPNetwork

OPERATOR_FILE = "operator.json"
CONTROL_SOCKET = "control.sock"
LOCK_FILE = "operator.lock"


class DaemonNotRunning(FrrctlError):
    """No daemon answers on the control socket."""


@dataclass(frozen=True)
class OperatorState:
    drain: Drain = Drain.NONE
    held: frozenset[IPNetwork] = field(default_factory=frozenset)

    def to_json(self) -> dict[str, Any]:
        return {
            "drain": self.drain.value,
            "held": [str(p) for p in sorted(self.held, key=prefix_key)],
        }

    @classmethod
    def from_json(cls, data: Any) -> OperatorState:
        if not isinstance(data, dict):
            raise ValueError("operator state must be a JSON object")
        drain = Drain(data.get("drain", "none"))
        held = frozenset(host_prefix(str(p)) for p in data.get("held", []))
        return cls(drain, held)


def host_prefix(text: str) -> IPNetwork:
    """A /32 or /128 from `192.0.2.30`, `192.0.2.30/32` or `2001:db8::1`; UsageError else."""
    try:
        net = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise UsageError(f"{text!r} is not an address or host prefix ({exc})") from None
    if net.prefixlen != net.max_prefixlen:
        raise UsageError(f"{text!r} is not a host route (/32 or /128)")
    return net


def load_operator(state_dir: Path) -> OperatorState:
    """The operator state; the default (nothing drained or held) when there is none."""
    path = state_dir / OPERATOR_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return OperatorState()
    except OSError as exc:
        raise FrrctlError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return OperatorState.from_json(json.loads(text))
    except (ValueError, UsageError) as exc:
        raise FrrctlError(f"{path}: invalid operator state: {exc}") from None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update_operator(
    state_dir: Path, change: Callable[[OperatorState], OperatorState]
) -> OperatorState:
    """Read, change and write the operator state atomically, under the lock."""
    with _locked(state_dir):
        new = change(load_operator(state_dir))
        write_atomic(state_dir / OPERATOR_FILE, json.dumps(new.to_json(), indent=2) + "\n")
        return new


# -- control socket ----------------------------------------------------------


def request(state_dir: Path, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to the daemon; DaemonNotRunning when nobody answers."""
    path = state_dir / CONTROL_SOCKET
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except OSError as exc:
            raise DaemonNotRunning(
                f"frrctl daemon is not running (no answer on {path}: {exc.strerror})"
            ) from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        raise FrrctlError(f"frrctl daemon did not answer within {timeout:.0f} s") from None
    finally:
        sock.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise FrrctlError("frrctl daemon sent an unreadable answer") from None
    if not isinstance(reply, dict):
        raise FrrctlError("frrctl daemon sent an unreadable answer")
    if reply.get("error"):
        raise FrrctlError(f"frrctl daemon: {reply['error']}")
    return reply


# -- status output -------------------------------------------------------------


def format_status(status: dict[str, Any]) -> str:
    """The human view of `frrctl status` (the JSON view is the dict itself)."""
    frr = "up" if status.get("frr_up") else "DOWN"
    lines = [
        f"host {status.get('host')}  driver {status.get('driver')}  FRR {frr}  "
        f"drain {status.get('drain')}  held {len(status.get('held', []))}  "
        f"maximum {status.get('max_prefixes')}",
        f"announced {status.get('announced_count', 0)}  candidates "
        f"{len(status.get('prefixes', []))}  last batch "
        f"{_seconds(status.get('last_batch_seconds'))}  netlink resyncs "
        f"{status.get('netlink_generation', 0)}",
    ]
    if status.get("ospf_daemons"):
        lines.append(
            f"OSPF ({', '.join(status['ospf_daemons'])}): admission "
            f"{status.get('ospf_admission', 'open')}  blocked {len(status.get('ospf_blocked', []))}"
        )
    if not status.get("kernel_view_ok", True):
        lines.append(
            f"UNHEALTHY: the kernel's routes differed from the daemon's view "
            f"({status.get('kernel_view_mismatches', 0)} time(s)): netlink events were lost"
        )
    if status.get("kernel_defaults_missing"):
        families = ", ".join(f"IPv{v}" for v in status["kernel_defaults_missing"])
        lines.append(
            f"UNHEALTHY: bgpd's best default route is missing from the kernel ({families})"
        )
    if status.get("last_error"):
        lines.append(f"last error: {status['last_error']}")
    lines += [f"ALERT: {alert}" for alert in status.get("alerts", [])]
    rows = [("PREFIX", "KERNEL", "VERDICT", "IN FRR", "ADVERTISED TO", "REASON")]
    for item in status.get("prefixes", []):
        kernel = ",".join(item.get("kernel_interfaces") or []) or (
            "yes" if item.get("in_kernel") else "-"
        )
        in_frr = "-"
        if item.get("in_frr"):
            in_frr = "gshut" if item.get("frr_graceful") else "yes"
        peers = ",".join(item.get("advertised_to") or []) or "-"
        rows.append(
            (item["prefix"], kernel, item["verdict"], in_frr, peers, item.get("reason", ""))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        )
    return "\n".join(lines)


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 1000:.1f} ms"
