"""OSPF hosts: hold-backs and drain in front of the rendered only-cloud route-map.

OSPFv2/OSPFv3 hosts announce by FRR's own `redistribute kernel route-map
only-cloud` (rendered; it already keeps everything but pool host routes on
the bridge out). The daemon adds, in ospfd (IPv4) and ospf6d (IPv6), over
their vty sockets:

    ip prefix-list frrctl-block-v4 seq 4294967295 deny any    (never empty)
    ip prefix-list frrctl-block-v4 seq N permit 192.0.2.31/32 (one per blocked)
    route-map only-cloud deny 1                               (only-cloud-v6 in ospf6d)
     match ip address prefix-list frrctl-block-v4
    route-map only-cloud deny 2                               (drain: all)

The gate exists only while something is held back or drained: otherwise the
running config is exactly the rendered one. Held prefixes are listed whether
or not their route exists, so a route that
appears later is never announced. Prefixes refused for a reason found only
when the route appears (maximum, missing neighbour) are blocked when the
daemon sees them, a moment after ospfd did. ospfd applies route-map changes
after its distribute-list update delay (measured: ~5-10 s); OSPF has no
GRACEFUL_SHUTDOWN community, so a graceful drain keeps OSPF announcing.

Parsing and commands are pure; `OspfGate` adds the socket and retries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from frrctl.frr.base import DriverError, RetryPolicy
from frrctl.frr.vty import VtyClient
from frrctl.frr.vtysh import failures
from frrctl.policy import prefix_key
from frrctl.pools import IPNetwork

# The rendered per-family route-maps (frrctl.render.ROUTE_MAP).
ROUTE_MAP = {4: "only-cloud", 6: "only-cloud-v6"}
BLOCK_SEQ = 1
DRAIN_SEQ = 2
SENTINEL = 4294967295
DAEMON = {4: "ospfd", 6: "ospf6d"}
_KW = {4: "ip", 6: "ipv6"}


def block_list(version: int) -> str:
    return f"frrctl-block-v{version}"


@dataclass
class OspfGateState:
    blocked: dict[IPNetwork, int] = field(default_factory=dict)  # prefix -> seq
    sentinel: bool = False
    block_entry: bool = False
    drained: bool = False


def parse_gate(running_config: str, version: int) -> OspfGateState:
    """The gate as the daemon's `show running-config` prints it."""
    kw, name = _KW[version], block_list(version)
    state = OspfGateState()
    entry: int | None = None
    for raw in running_config.splitlines():
        words = raw.split()
        if not raw.startswith(" "):
            entry = None
            if words[:3] == [kw, "prefix-list", name] and len(words) >= 7 and words[3] == "seq":
                seq = int(words[4])
                if seq == SENTINEL and words[5:7] == ["deny", "any"]:
                    state.sentinel = True
                elif words[5] == "permit":
                    state.blocked[ipaddress.ip_network(words[6])] = seq
            elif words[:3] == ["route-map", ROUTE_MAP[version], "deny"] and len(words) == 4:
                entry = int(words[3])
                if entry == DRAIN_SEQ:
                    state.drained = True
        elif entry == BLOCK_SEQ and words == ["match", kw, "address", "prefix-list", name]:
            state.block_entry = True
        elif entry == DRAIN_SEQ and words:
            state.drained = False  # a deny 2 with a match is not frrctl's drain
    return state


def gate_commands(
    state: OspfGateState, blocked: Iterable[IPNetwork], drain: bool, version: int
) -> list[str]:
    """Commands that turn `state` into the wanted gate; [] when it already is."""
    kw, name, rmap = _KW[version], block_list(version), ROUTE_MAP[version]
    want = {p for p in blocked if p.version == version}
    body: list[str] = []
    if not want and not drain:
        # Nothing to hold back: no gate at all, so that the running config is
        # exactly the rendered one (`frr-reload.py --test` finds nothing).
        # The route-map entries go before the list they match on.
        if state.drained:
            body.append(f"no route-map {rmap} deny {DRAIN_SEQ}")
        if state.block_entry:
            body.append(f"no route-map {rmap} deny {BLOCK_SEQ}")
        if state.sentinel or state.blocked:
            body.append(f"no {kw} prefix-list {name}")
        return ["configure terminal", *body, "end"] if body else []
    if not state.sentinel:
        body.append(f"{kw} prefix-list {name} seq {SENTINEL} deny any")
    for prefix in sorted(set(state.blocked) - want, key=prefix_key):
        body.append(f"no {kw} prefix-list {name} seq {state.blocked[prefix]} permit {prefix}")
    used = {seq for p, seq in state.blocked.items() if p in want}
    seq = 0
    for prefix in sorted(want - set(state.blocked), key=prefix_key):
        seq += 1
        while seq in used:
            seq += 1
        body.append(f"{kw} prefix-list {name} seq {seq} permit {prefix}")
    if not state.block_entry:
        body += [
            f"route-map {rmap} deny {BLOCK_SEQ}",
            f" match {kw} address prefix-list {name}",
            "exit",
        ]
    if drain and not state.drained:
        body += [f"route-map {rmap} deny {DRAIN_SEQ}", "exit"]
    elif not drain and state.drained:
        body.append(f"no route-map {rmap} deny {DRAIN_SEQ}")
    return ["configure terminal", *body, "end"] if body else []


@dataclass
class OspfGate:
    """The gate in one OSPF daemon (ospfd for IPv4, ospf6d for IPv6)."""

    vty_dir: Path
    version: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        self.daemon = DAEMON[self.version]
        self._client = VtyClient(self.vty_dir / f"{self.daemon}.vty", timeout=30)

    def read(self) -> OspfGateState:
        (reply,) = self.retry.call(self.daemon, lambda: self._client.run(["show running-config"]))
        if not reply.ok:
            raise DriverError(f"{self.daemon}: show running-config failed: {reply.output}")
        return parse_gate(reply.output, self.version)

    def reconcile(self, blocked: Iterable[IPNetwork], drain: bool) -> bool:
        """Make the gate block exactly `blocked` (and all when `drain`); True if changed."""
        want = [p for p in blocked if p.version == self.version]
        commands = gate_commands(self.read(), want, drain, self.version)
        if not commands:
            return False
        bad = failures(self.retry.call(self.daemon, lambda: self._client.run(commands)))
        if bad:
            detail = "; ".join(f"{r.command!r}: {r.output.strip() or r.status}" for r in bad[:3])
            raise DriverError(f"{self.daemon} refused the OSPF gate: {detail}")
        after = self.read()
        if gate_commands(after, want, drain, self.version):
            raise DriverError(f"{self.daemon}: OSPF gate differs after applying it")
        return True

    def close(self) -> None:
        self._client.close()
