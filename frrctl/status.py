"""The daemon's operator state (drain, holds), its control socket, and status output.

The operator state lives in STATE_DIR/operator.json and is changed only under
an flock, with an atomic rename, by `frrctl drain|undrain|hold|release`; the
daemon reads it at start and whenever told to (`reload` on the control socket,
or SIGHUP). So a drain survives a daemon or host restart, and works even when
the daemon is not running (it applies at start).

The control socket (STATE_DIR/control.sock) speaks one JSON object per line
each way: {"cmd": "status"} or {"cmd": "reload"}. Everything here but the
socket and file I/O is pure. The status reply is typed (DaemonStatus).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import json
import socket
from collections.abc import Callable, Iterator, Mapping
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


# -- status ------------------------------------------------------------------


@dataclass(frozen=True)
class PrefixStatus:
    """One candidate prefix: the kernel, the verdict and its reason, FRR, the peers."""

    prefix: str
    verdict: str  # a policy Code value, or "unknown" (not judged yet)
    reason: str
    announce: bool
    graceful: bool
    in_kernel: bool = False
    kernel_interfaces: list[str] = field(default_factory=list)
    in_frr: bool = False
    frr_graceful: bool | None = None
    advertised_to: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DaemonStatus:
    """The daemon's status reply. Its JSON (`to_json`, field names and order) is
    what the control socket sends and `frrctl status --json` prints: tests and
    the lab read those keys, so they are stable."""

    host: str
    driver: str
    bridge: str
    frr_up: bool
    frr_daemons_down: list[str]
    drain: str
    held: list[str]
    max_prefixes: int
    require_neighbor: bool
    announced_count: int
    # Verified against FRR, and the kernel view it was decided from is sound.
    frr_state_verified: bool
    kernel_view_ok: bool
    kernel_view_mismatches: int
    # bgpd's best default routes the kernel lacks (IP versions), and repairs so far
    kernel_defaults_missing: list[int]
    defaults_reinstalls: int
    # established BGP neighbours with BFD configured that bfdd has no session for
    bfd_sessions_lost: list[str]
    bfd_repairs: int
    # announced prefixes ospfd/ospf6d do not redistribute (or still do, though
    # withdrawn) since a zebra restart: FRR 8.4.4 cures it only by restarting them
    ospf_not_redistributed: list[str]
    healthy: bool
    alerts: list[str]
    last_error: str | None
    last_batch: str | None
    last_batch_seconds: float | None
    netlink_generation: int
    bridge_up: bool
    prefixes: list[PrefixStatus]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DaemonStatus:
        """From a daemon's reply; FrrctlError naming what is missing or malformed."""
        try:
            known = {f.name for f in dataclasses.fields(cls)}
            values = {k: v for k, v in data.items() if k in known}
            pknown = {f.name for f in dataclasses.fields(PrefixStatus)}
            values["prefixes"] = [
                PrefixStatus(**{k: v for k, v in item.items() if k in pknown})
                for item in data.get("prefixes", [])
            ]
            return cls(**values)
        except (TypeError, AttributeError) as exc:
            raise FrrctlError(
                f"frrctl daemon sent a status this frrctl cannot read: {exc}"
            ) from None


def format_status(status: DaemonStatus) -> str:
    """The human view of `frrctl status` (the JSON view is `status.to_json()`)."""
    frr = "up" if status.frr_up else "DOWN"
    lines = [
        f"host {status.host}  driver {status.driver}  FRR {frr}  "
        f"drain {status.drain}  held {len(status.held)}  "
        f"maximum {status.max_prefixes}",
        f"announced {status.announced_count}  candidates "
        f"{len(status.prefixes)}  last batch "
        f"{_seconds(status.last_batch_seconds)}  netlink resyncs "
        f"{status.netlink_generation}",
    ]
    if not status.healthy:
        lines.append("UNHEALTHY: " + "; ".join(unhealthy_reasons(status)))
    if not status.kernel_view_ok:
        lines.append(
            f"UNHEALTHY: the kernel's routes differed from the daemon's view "
            f"({status.kernel_view_mismatches} time(s)): netlink events were lost"
        )
    if status.kernel_defaults_missing:
        families = ", ".join(f"IPv{v}" for v in status.kernel_defaults_missing)
        lines.append(
            f"UNHEALTHY: bgpd's best default route is missing from the kernel ({families})"
        )
    if status.last_error:
        lines.append(f"last error: {status.last_error}")
    lines += [f"ALERT: {alert}" for alert in status.alerts]
    rows = [("PREFIX", "KERNEL", "VERDICT", "IN FRR", "ADVERTISED TO", "REASON")]
    for item in status.prefixes:
        kernel = ",".join(item.kernel_interfaces) or ("yes" if item.in_kernel else "-")
        in_frr = "-"
        if item.in_frr:
            in_frr = "gshut" if item.frr_graceful else "yes"
        peers = ",".join(item.advertised_to) or "-"
        rows.append((item.prefix, kernel, item.verdict, in_frr, peers, item.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        lines.append(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        )
    return "\n".join(lines)


def unhealthy_reasons(status: DaemonStatus) -> list[str]:
    """Why the daemon is not healthy, one short phrase each (the text view's
    summary line; the details follow on their own lines)."""
    reasons = []
    if not status.frr_up:
        reasons.append("FRR is down")
    if status.frr_daemons_down:
        reasons.append("FRR daemons down: " + ", ".join(status.frr_daemons_down))
    if not status.frr_state_verified:
        reasons.append("FRR's state not verified against the policy")
    if not status.kernel_view_ok:
        reasons.append("kernel view differed")
    if status.kernel_defaults_missing:
        reasons.append("default routes missing")
    if status.bfd_sessions_lost:
        reasons.append("BFD sessions lost: " + ", ".join(status.bfd_sessions_lost))
    if status.ospf_not_redistributed:
        reasons.append(
            f"{len(status.ospf_not_redistributed)} prefix(es) wrong in OSPF since a zebra "
            "restart (restart ospfd/ospf6d)"
        )
    if status.last_error:
        reasons.append("last pass failed")
    return reasons or ["see --json"]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{float(value) * 1000:.1f} ms"
