"""OSPF hosts: hold-backs, admission and drain in front of the rendered only-cloud route-map.

OSPFv2/OSPFv3 hosts announce by FRR's own `redistribute kernel route-map
only-cloud` (rendered; it already keeps everything but pool host routes on
the bridge out). The daemon adds, in ospfd (IPv4) and ospf6d (IPv6), over
their vty sockets:

    ip prefix-list frrctl-block-v4 seq 4294967295 deny any    (never empty)
    ip prefix-list frrctl-block-v4 seq N permit 192.0.2.31/32 (one per blocked)
    ip prefix-list frrctl-admit-v4 seq 4294967295 permit any  (admission only)
    ip prefix-list frrctl-admit-v4 seq N deny 192.0.2.30/32   (one per admitted)
    route-map only-cloud deny 1                               (only-cloud-v6 in ospf6d)
     match ip address prefix-list frrctl-block-v4
    route-map only-cloud deny 2                               (drain: all)
    route-map only-cloud deny 3                               (admission: all
     match ip address prefix-list frrctl-admit-v4              but the admitted)

Held prefixes are listed whether or not their route exists, so a route that
appears later is never announced. frr.conf carries the admission gate closed
(`boot_lines`), so that a restarted ospfd announces nothing before the daemon
has put the hold-backs back; with nothing held, drained or admitted the
daemon removes the whole gate.

Why admission: ospfd applies a route that zebra redistributes at once, with
the route-map as it is at that moment, but applies later changes to the
route-map only after its distribute-list update delay (ospfd: 5 s by
default, rendered as OSPF_UPDATE_DELAY_MS on controller-mode hosts; ospf6d:
fixed at 5 s). So a refusal that depends on the route itself
(the maximum, a missing permanent neighbour) cannot be added in time once the
route is there. Admission turns the gate around before such a refusal can
arise: only the prefixes the daemon admitted pass entry 3 (their prefix-list
entries are `deny`, so the match fails for them), every new route is refused
the moment ospfd sees it, and the daemon admits it if the policy allows
(announced after that delay). The daemon closes the gate when the host nears
its maximum (`admission_closed`) and always with require-neighbor; an open
gate costs no delay. OSPF has no GRACEFUL_SHUTDOWN community, so a graceful
drain keeps OSPF announcing.

Parsing and commands are pure; `OspfGate` adds the socket and retries.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from frrctl.frr.base import DriverError, RetryPolicy
from frrctl.frr.vty import VtyClient
from frrctl.frr.vtysh import failures
from frrctl.policy import prefix_key
from frrctl.pools import IPNetwork

# The per-family route-maps frr.conf redistributes through (frrctl.render uses these).
ROUTE_MAP = {4: "only-cloud", 6: "only-cloud-v6"}
BLOCK_SEQ = 1
DRAIN_SEQ = 2
ADMIT_SEQ = 3
SENTINEL = 4294967295
# ospfd's distribute-list update delay (`timers throttle lsa all`, default
# 5000 ms): how long a gate change takes to reach the LSDB. FRR 8.4 uses the
# setting for nothing else here (LSA origination throttling uses the RFC
# constant), so controller-mode hosts render it short. ospf6d's is fixed at 5 s.
OSPF_UPDATE_DELAY_MS = 200
DAEMON = {4: "ospfd", 6: "ospf6d"}
_KW = {4: "ip", 6: "ipv6"}


def block_list(version: int) -> str:
    return f"frrctl-block-v{version}"


def admit_list(version: int) -> str:
    return f"frrctl-admit-v{version}"


def boot_lines(version: int) -> list[str]:
    """The admission gate, closed with nothing admitted, as frr.conf carries it
    on a controller-mode host: a restarted ospfd/ospf6d (or one started before
    the daemon) redistributes nothing until the daemon has put its hold-backs
    in place and opened the gate or admitted what the policy allows."""
    admit = admit_list(version)
    return [_sentinel(_KW[version], admit, "permit"), *_deny_entry(version, ADMIT_SEQ, admit), "!"]


def _sentinel(kw: str, name: str, action: str) -> str:
    """The last entry of a gate list, so that it is never empty."""
    return f"{kw} prefix-list {name} seq {SENTINEL} {action} any"


def _deny_entry(version: int, seq: int, name: str) -> list[str]:
    """A deny entry of only-cloud that matches on the gate list `name`."""
    kw = _KW[version]
    return [f"route-map {ROUTE_MAP[version]} deny {seq}", f" match {kw} address prefix-list {name}",
            "exit"]  # fmt: skip


def admission_closed(announced: int, maximum: int, require_neighbor: bool) -> bool:
    """Whether new OSPF routes must wait for the daemon's admission.

    Always with require-neighbor (a route may come before its neighbour entry).
    Otherwise once the announced prefixes come within a tenth of the maximum:
    a burst of new routes up to that headroom cannot pass the maximum before
    the gate is closed, and a host far from it announces without delay.
    """
    headroom = max(1, maximum // 10)
    return require_neighbor or announced + headroom >= maximum


@dataclass
class OspfGateState:
    blocked: dict[IPNetwork, int] = field(default_factory=dict)  # prefix -> seq
    sentinel: bool = False
    block_entry: bool = False
    drained: bool = False
    admitted: dict[IPNetwork, int] = field(default_factory=dict)  # prefix -> seq
    admit_sentinel: bool = False
    admit_entry: bool = False


def parse_gate(running_config: str, version: int) -> OspfGateState:
    """The gate as the daemon's `show running-config` prints it."""
    kw, block, admit = _KW[version], block_list(version), admit_list(version)
    state = OspfGateState()
    entry: int | None = None
    for raw in running_config.splitlines():
        words = raw.split()
        if not raw.startswith(" "):
            entry = None
            if words[:2] == [kw, "prefix-list"] and len(words) >= 7 and words[3] == "seq":
                seq, action, what = int(words[4]), words[5], words[6]
                if words[2] == block:
                    if seq == SENTINEL and [action, what] == ["deny", "any"]:
                        state.sentinel = True
                    elif action == "permit":
                        state.blocked[ipaddress.ip_network(what)] = seq
                elif words[2] == admit:
                    if seq == SENTINEL and [action, what] == ["permit", "any"]:
                        state.admit_sentinel = True
                    elif action == "deny":
                        state.admitted[ipaddress.ip_network(what)] = seq
            elif words[:3] == ["route-map", ROUTE_MAP[version], "deny"] and len(words) == 4:
                entry = int(words[3])
                if entry == DRAIN_SEQ:
                    state.drained = True
        elif entry == BLOCK_SEQ and words == ["match", kw, "address", "prefix-list", block]:
            state.block_entry = True
        elif entry == ADMIT_SEQ and words == ["match", kw, "address", "prefix-list", admit]:
            state.admit_entry = True
        elif entry == DRAIN_SEQ and words:
            state.drained = False  # a deny 2 with a match is not frrctl's drain
    return state


def _list_commands(
    kw: str, name: str, have: dict[IPNetwork, int], want: set[IPNetwork], action: str
) -> list[str]:
    """Entries to remove and to add (at free sequence numbers) so that list
    `name` holds `want` with `action`; its sentinel is handled by the caller."""
    body = [
        f"no {kw} prefix-list {name} seq {have[prefix]} {action} {prefix}"
        for prefix in sorted(set(have) - want, key=prefix_key)
    ]
    used = {seq for p, seq in have.items() if p in want}
    seq = 0
    for prefix in sorted(want - set(have), key=prefix_key):
        seq += 1
        while seq in used:
            seq += 1
        body.append(f"{kw} prefix-list {name} seq {seq} {action} {prefix}")
    return body


def gate_commands(
    state: OspfGateState,
    blocked: Iterable[IPNetwork],
    drain: bool,
    version: int,
    admitted: Collection[IPNetwork] | None = None,
) -> list[str]:
    """Commands that turn `state` into the wanted gate; [] when it already is.

    `admitted` None leaves the gate open; a collection closes it to all but those.
    """
    kw, rmap = _KW[version], ROUTE_MAP[version]
    block, admit = block_list(version), admit_list(version)
    want = {p for p in blocked if p.version == version}
    body: list[str] = []
    # Route-map entries go after the lists they match on and are removed
    # before them: an entry never matches on a list that is half there. What
    # blocks is put in place before admission opens.
    opening: list[str] = []
    if admitted is None:
        if state.admit_entry:
            opening.append(f"no route-map {rmap} deny {ADMIT_SEQ}")
        if state.admit_sentinel or state.admitted:
            opening.append(f"no {kw} prefix-list {admit}")
    if not want and not drain and admitted is None:
        # Nothing held back, drained or admitted: no gate at all.
        body += opening
        if state.drained:
            body.append(f"no route-map {rmap} deny {DRAIN_SEQ}")
        if state.block_entry:
            body.append(f"no route-map {rmap} deny {BLOCK_SEQ}")
        if state.sentinel or state.blocked:
            body.append(f"no {kw} prefix-list {block}")
        return ["configure terminal", *body, "end"] if body else []
    if not state.sentinel:
        body.append(_sentinel(kw, block, "deny"))
    body += _list_commands(kw, block, state.blocked, want, "permit")
    if not state.block_entry:
        body += _deny_entry(version, BLOCK_SEQ, block)
    if drain and not state.drained:
        body += [f"route-map {rmap} deny {DRAIN_SEQ}", "exit"]
    elif not drain and state.drained:
        body.append(f"no route-map {rmap} deny {DRAIN_SEQ}")
    body += opening
    if admitted is not None:
        if not state.admit_sentinel:
            body.append(_sentinel(kw, admit, "permit"))
        mine = {p for p in admitted if p.version == version}
        body += _list_commands(kw, admit, state.admitted, mine, "deny")
        if not state.admit_entry:
            body += _deny_entry(version, ADMIT_SEQ, admit)
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

    def reconcile(
        self,
        blocked: Iterable[IPNetwork],
        drain: bool,
        admitted: Collection[IPNetwork] | None = None,
    ) -> bool:
        """Make the gate block exactly `blocked` (and all when `drain`) and, when
        `admitted` is given, pass only those; True if it changed."""
        want = [p for p in blocked if p.version == self.version]
        mine = None if admitted is None else {p for p in admitted if p.version == self.version}
        commands = gate_commands(self.read(), want, drain, self.version, mine)
        if not commands:
            return False
        bad = failures(self.retry.call(self.daemon, lambda: self._client.run(commands)))
        if bad:
            detail = "; ".join(f"{r.command!r}: {r.output.strip() or r.status}" for r in bad[:3])
            raise DriverError(f"{self.daemon} refused the OSPF gate: {detail}")
        after = self.read()
        if gate_commands(after, want, drain, self.version, mine):
            raise DriverError(f"{self.daemon}: OSPF gate differs after applying it")
        return True

    def redistributed(self) -> set[IPNetwork]:
        """The kernel routes ospf6d redistributes now (`show ipv6 ospf6 redistribute`)."""
        (reply,) = self.retry.call(
            self.daemon, lambda: self._client.run(["show ipv6 ospf6 redistribute"])
        )
        return parse_redistributed(reply.output)

    def close(self) -> None:
        self._client.close()


def parse_redistributed(text: str, kind: str = "K") -> set[IPNetwork]:
    """Prefixes of the `K ...` (kernel; `S`: static) lines of `show ipv6 ospf6 redistribute`."""
    out: set[IPNetwork] = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == kind:
            with contextlib.suppress(ValueError):
                out.add(ipaddress.ip_network(words[1]))
    return out
