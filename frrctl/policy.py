"""What a host may announce: pure decisions, each with a reason.

Inputs are plain values (kernel routes, permanent neighbours, what FRR
announces now, the operator's settings); the output is a verdict per
candidate prefix and the desired announcement set. Nothing here touches
netlink or FRR, so every rule is unit-tested in microseconds.

A desired or announced set is a mapping prefix -> graceful_shutdown flag:
True means "announce it with the GRACEFUL_SHUTDOWN community" (graceful drain).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from frrctl.pools import IPAddress, IPNetwork, Pools

Announced = Mapping[IPNetwork, bool]

# Kernel route protocols that FRR itself installs (rtnetlink RTPROT_*). Such
# a route on the bridge is FRR's own output, never a VM: announcing it would
# loop routes back into BGP.
FRR_PROTOCOLS = {
    11: "zebra",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    190: "ripng",
    191: "nhrp",
    192: "eigrp",
    193: "ldp",
    194: "sharp",
    195: "pbr",
    196: "static",  # FRR staticd (RTPROT_ZSTATIC), not `ip route ... proto static`
    197: "openfabric",
    198: "srte",
}
MAIN_TABLE = 254


class Drain(enum.Enum):
    """Operator drain state of the host."""

    NONE = "none"
    WITHDRAW = "withdraw"  # announce nothing
    GRACEFUL = "graceful"  # keep announcing, with GRACEFUL_SHUTDOWN


@dataclass(frozen=True)
class KernelRoute:
    """One kernel route, as the netlink watcher reports it."""

    prefix: IPNetwork
    ifname: str | None  # output interface; None for multipath or unresolved
    gateway: IPAddress | None = None
    rtype: str = "unicast"  # unicast, blackhole, unreachable, local, ...
    protocol: int = 3  # RTPROT_BOOT: what `ip route add` sets
    table: int = MAIN_TABLE


@dataclass(frozen=True)
class PolicyConfig:
    """The host's announcement rules (from its inventory entry and the operator)."""

    pools: Pools
    bridge: str = "cloudbr0"
    require_neighbor: bool = False
    max_prefixes: int = 10_000
    held: frozenset[IPNetwork] = frozenset()
    drain: Drain = Drain.NONE


class Code(enum.Enum):
    """Why a prefix is (not) announced; the value is stable for status and metrics."""

    ANNOUNCE = "announce"
    DRAINED_GRACEFUL = "drained-graceful"
    NOT_IN_KERNEL = "not-in-kernel"
    OTHER_TABLE = "other-table"
    NOT_UNICAST = "not-unicast"
    FRR_ROUTE = "frr-route"
    NOT_HOST_ROUTE = "not-host-route"
    OTHER_INTERFACE = "other-interface"
    VIA_GATEWAY = "via-gateway"
    OUTSIDE_POOLS = "outside-pools"
    NO_NEIGHBOR = "no-permanent-neighbor"
    HELD = "held"
    DRAINED = "drained"
    OVER_MAXIMUM = "over-maximum"


@dataclass(frozen=True)
class Verdict:
    prefix: IPNetwork
    code: Code
    reason: str
    graceful_shutdown: bool = False

    @property
    def announce(self) -> bool:
        return self.code in (Code.ANNOUNCE, Code.DRAINED_GRACEFUL)


@dataclass(frozen=True)
class Decision:
    verdicts: tuple[Verdict, ...]  # sorted by prefix
    alerts: tuple[str, ...] = ()

    @property
    def desired(self) -> dict[IPNetwork, bool]:
        return {v.prefix: v.graceful_shutdown for v in self.verdicts if v.announce}

    def verdict(self, prefix: IPNetwork) -> Verdict | None:
        for verdict in self.verdicts:
            if verdict.prefix == prefix:
                return verdict
        return None

    @property
    def over_maximum(self) -> int:
        return sum(1 for v in self.verdicts if v.code is Code.OVER_MAXIMUM)


def prefix_key(prefix: IPNetwork) -> tuple[int, int, int]:
    """Sort IPv4 before IPv6, then numerically: the order of every output here."""
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def route_refusal(route: KernelRoute, bridge: str) -> tuple[Code, str] | None:
    """Why this kernel route cannot back an announcement, or None if it can."""
    if route.table != MAIN_TABLE:
        return Code.OTHER_TABLE, f"route is in table {route.table}, not main"
    if route.rtype != "unicast":
        return Code.NOT_UNICAST, f"{route.rtype} route, not unicast"
    if route.protocol in FRR_PROTOCOLS:
        return Code.FRR_ROUTE, f"installed by FRR (proto {FRR_PROTOCOLS[route.protocol]})"
    if route.prefix.prefixlen != route.prefix.max_prefixlen:
        return Code.NOT_HOST_ROUTE, f"/{route.prefix.prefixlen} is not a host route"
    if route.ifname != bridge:
        where = route.ifname or "several or unknown interfaces"
        return Code.OTHER_INTERFACE, f"route is on {where}, not {bridge}"
    if route.gateway is not None:
        return Code.VIA_GATEWAY, f"route goes via gateway {route.gateway}, not directly on {bridge}"
    return None


def _eligibility(
    prefix: IPNetwork,
    routes: list[KernelRoute],
    config: PolicyConfig,
    neighbors: frozenset[IPAddress],
) -> tuple[Code, str] | None:
    """The first rule a prefix breaks, before drain and the maximum; None if none."""
    if not routes:
        return Code.NOT_IN_KERNEL, "no kernel route on the host any more"
    # Every route for the prefix must qualify: a second route elsewhere would
    # send the traffic we attract somewhere else.
    for route in routes:
        refusal = route_refusal(route, config.bridge)
        if refusal is not None:
            return refusal
    if not config.pools.contains_host_route(prefix):
        return Code.OUTSIDE_POOLS, "address is outside the host's pools"
    if config.require_neighbor and prefix.network_address not in neighbors:
        return Code.NO_NEIGHBOR, f"no permanent neighbour entry on {config.bridge}"
    if config.held and prefix in config.held:
        return Code.HELD, "held back by the operator"
    if config.drain is Drain.WITHDRAW:
        return Code.DRAINED, "host is drained: everything withdrawn"
    return None


def decide(
    routes: Iterable[KernelRoute],
    config: PolicyConfig,
    announced: Announced | Iterable[IPNetwork] = (),
    neighbors: Iterable[IPAddress] = (),
) -> Decision:
    """Judge every candidate (in the kernel or announced now) and pick what to announce.

    `announced` is what FRR announces now (read back from FRR): those prefixes
    keep their place under the maximum, so a full host announces nothing new
    instead of swapping announcements around.
    """
    by_prefix: dict[IPNetwork, list[KernelRoute]] = {}
    for route in routes:
        entry = by_prefix.get(route.prefix)
        if entry is None:
            by_prefix[route.prefix] = [route]
        else:
            entry.append(route)
    current = set(announced)
    neighbor_set = frozenset(neighbors)
    graceful = config.drain is Drain.GRACEFUL

    # One pass in prefix order; verdicts go into `ordered` by position (no
    # second sort, few hashes of IPv6 networks: this runs per burst at 10,000).
    candidates = sorted(by_prefix.keys() | current, key=prefix_key)
    ordered: list[Verdict | None] = [None] * len(candidates)
    kept: list[int] = []  # eligible and announced now: they keep their place
    new: list[int] = []  # eligible, not announced yet
    no_routes: list[KernelRoute] = []
    for index, prefix in enumerate(candidates):
        refusal = _eligibility(prefix, by_prefix.get(prefix, no_routes), config, neighbor_set)
        if refusal is None:
            (kept if prefix in current else new).append(index)
        else:
            ordered[index] = Verdict(prefix, refusal[0], refusal[1])

    # Already announced first, then new ones in prefix order, up to the maximum.
    ranked = kept + new
    limit = max(config.max_prefixes, 0)
    for rank, index in enumerate(ranked):
        prefix = candidates[index]
        if rank >= limit:
            ordered[index] = Verdict(
                prefix, Code.OVER_MAXIMUM, f"maximum of {limit} announced prefixes reached"
            )
        elif graceful:
            ordered[index] = Verdict(
                prefix,
                Code.DRAINED_GRACEFUL,
                "host is drained gracefully: announced with GRACEFUL_SHUTDOWN",
                graceful_shutdown=True,
            )
        else:
            ordered[index] = Verdict(prefix, Code.ANNOUNCE, "direct host route in pool")

    alerts: list[str] = []
    refused = len(ranked) - min(len(ranked), limit)
    if refused:
        alerts.append(
            f"maximum of {limit} announced prefixes reached: {refused} eligible "
            "prefix(es) not announced"
        )
    return Decision(tuple(v for v in ordered if v is not None), tuple(alerts))


@dataclass(frozen=True)
class Plan:
    """The change from announced to desired: one batch for a driver."""

    announce: tuple[tuple[IPNetwork, bool], ...] = ()  # new, or graceful flag changed
    withdraw: tuple[IPNetwork, ...] = ()
    unchanged: int = field(default=0, compare=False)

    def __bool__(self) -> bool:
        return bool(self.announce or self.withdraw)

    def summary(self) -> str:
        return f"+{len(self.announce)} -{len(self.withdraw)} ={self.unchanged}"


def diff(desired: Announced, announced: Announced) -> Plan:
    """What to announce and withdraw so that FRR's `announced` becomes `desired`."""
    add = sorted(
        ((p, g) for p, g in desired.items() if p not in announced or announced[p] != g),
        key=lambda item: prefix_key(item[0]),
    )
    gone = sorted((p for p in announced if p not in desired), key=prefix_key)
    same = sum(1 for p, g in desired.items() if p in announced and announced[p] == g)
    return Plan(tuple(add), tuple(gone), same)


def parse_prefix(text: str) -> IPNetwork:
    """A prefix as FRR prints it (`192.0.2.1/32`); a bare address is a host route."""
    return ipaddress.ip_network(text.strip(), strict=True)
