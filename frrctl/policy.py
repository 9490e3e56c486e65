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
import functools
import itertools
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from frrctl.pools import IPAddress, IPNetwork, Pools, network_from_int, parse_network

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
STATIC_MIN_METRIC = 2 << 24  # what `frrctl instance plug` sets (frrctl.host.netlink)


class Drain(enum.Enum):
    """Operator drain state of the host."""

    NONE = "none"
    WITHDRAW = "withdraw"  # announce nothing
    GRACEFUL = "graceful"  # keep announcing, with GRACEFUL_SHUTDOWN


class KernelRoute(NamedTuple):
    """One kernel route, as the netlink watcher reports it (a named tuple: the
    watcher makes one per route event, 10,000 in a burst)."""

    prefix: IPNetwork
    ifname: str | None  # output interface; None for multipath or unresolved
    gateway: IPAddress | None = None
    rtype: str = "unicast"  # unicast, blackhole, unreachable, local, ...
    protocol: int = 3  # RTPROT_BOOT: what `ip route add` sets
    table: int = MAIN_TABLE
    metric: int = 0  # RTA_PRIORITY; zebra's distance for it is metric >> 24


@dataclass(frozen=True)
class PolicyConfig:
    """The host's announcement rules (from its inventory entry and the operator)."""

    pools: Pools
    bridge: str = "cloudbr0"
    require_neighbor: bool = False
    max_prefixes: int = 10_000
    held: frozenset[IPNetwork] = frozenset()
    drain: Drain = Drain.NONE
    # A staticd route (distance 1: grpc, and either driver on an OSPF host) is selected and
    # redistributed only over a kernel route whose distance (metric >> 24) is
    # higher, i.e. metric >= STATIC_MIN_METRIC. 0: any metric will do.
    min_metric: int = 0
    # Whether the bridge has carrier (a port up: IFF_LOWER_UP and operstate up,
    # the watcher's view), and whether the announcer needs it: zebra keeps a
    # static route to an interface without carrier inactive, so a staticd
    # driver's announcement of it would never be redistributed. A kernel route
    # stays selected (flag linkdown) and bgpd `network` announces it anyway.
    carrier: bool = True
    needs_carrier: bool = False


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
    KERNEL_METRIC = "kernel-metric"
    NO_CARRIER = "no-carrier"

    # Members are singletons: identity hashes them (in C; Enum's own __hash__
    # is Python code, and the policy counts verdicts by code per prefix).
    __hash__ = object.__hash__


_ANNOUNCING = frozenset((Code.ANNOUNCE, Code.DRAINED_GRACEFUL))


class Verdict(NamedTuple):
    """A candidate prefix's verdict (a named tuple: one per prefix and pass)."""

    prefix: IPNetwork
    code: Code
    reason: str
    graceful_shutdown: bool = False

    @property
    def announce(self) -> bool:
        return self.code in _ANNOUNCING


# A Verdict from a 4-tuple in C: NamedTuple's own constructor is Python code,
# and a burst makes one verdict per prefix.
_verdict: Callable[[tuple[IPNetwork, Code, str, bool]], Verdict] = functools.partial(
    tuple.__new__, Verdict
)
_ANNOUNCE = "direct host route in pool"
_GRACEFUL = "host is drained gracefully: announced with GRACEFUL_SHUTDOWN"


@dataclass(frozen=True)
class Decision:
    """A verdict per candidate prefix and what follows from them. Build it with
    `Decision.of`; `redecide` derives one from another without a full pass."""

    by_prefix: Mapping[IPNetwork, Verdict]
    desired: Mapping[IPNetwork, bool]  # what to announce: prefix -> graceful_shutdown
    counts: Mapping[Code, int]  # verdicts per code
    alerts: tuple[str, ...] = ()
    # the inputs `redecide` must know: the policy and FRR's announced set
    config: PolicyConfig | None = field(default=None, compare=False, repr=False)
    announced: frozenset[IPNetwork] = field(default=frozenset(), compare=False, repr=False)
    # from `redecide`: the only prefixes whose verdicts may differ from the
    # decision it started from (None: a full decide, anything may differ)
    touched: frozenset[IPNetwork] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        verdicts: Iterable[Verdict],
        alerts: tuple[str, ...] = (),
        config: PolicyConfig | None = None,
        announced: Iterable[IPNetwork] = (),
    ) -> Decision:
        by_prefix = {v.prefix: v for v in verdicts}
        desired = {v.prefix: v.graceful_shutdown for v in by_prefix.values() if v.announce}
        counts: dict[Code, int] = {}
        for verdict in by_prefix.values():
            counts[verdict.code] = counts.get(verdict.code, 0) + 1
        return cls(by_prefix, desired, counts, alerts, config, frozenset(announced))

    @functools.cached_property
    def verdicts(self) -> tuple[Verdict, ...]:
        """All verdicts, sorted by prefix."""
        return tuple(sorted(self.by_prefix.values(), key=lambda v: prefix_key(v.prefix)))

    def verdict(self, prefix: IPNetwork) -> Verdict | None:
        return self.by_prefix.get(prefix)

    @property
    def over_maximum(self) -> int:
        return self.counts.get(Code.OVER_MAXIMUM, 0)


def prefix_key(prefix: IPNetwork) -> tuple[int, int, int]:
    """Sort IPv4 before IPv6, then numerically: the order of every output here."""
    # ipaddress's own fields: its properties cost a call each, and a burst
    # sorts 10,000 prefixes
    net: Any = prefix
    return (net._version, net.network_address._ip, net._prefixlen)


def route_refusal(route: KernelRoute, bridge: str, min_metric: int = 0) -> tuple[Code, str] | None:
    """Why this kernel route cannot back an announcement, or None if it can."""
    if route.table != MAIN_TABLE:
        return Code.OTHER_TABLE, f"route is in table {route.table}, not main"
    if route.rtype != "unicast":
        return Code.NOT_UNICAST, f"{route.rtype} route, not unicast"
    if route.protocol in FRR_PROTOCOLS:
        return Code.FRR_ROUTE, f"installed by FRR (proto {FRR_PROTOCOLS[route.protocol]})"
    net: Any = route.prefix  # (ipaddress's fields: its properties cost a call each)
    if net._prefixlen != net._max_prefixlen:
        return Code.NOT_HOST_ROUTE, f"/{net._prefixlen} is not a host route"
    if route.ifname != bridge:
        where = route.ifname or "several or unknown interfaces"
        return Code.OTHER_INTERFACE, f"route is on {where}, not {bridge}"
    if route.gateway is not None:
        return Code.VIA_GATEWAY, f"route goes via gateway {route.gateway}, not directly on {bridge}"
    if route.metric < min_metric:
        return Code.KERNEL_METRIC, (
            f"kernel route metric {route.metric} outranks the static route frrctl "
            f"announces (zebra distance {route.metric >> 24} < 2): put it at metric "
            f"{min_metric} (`ip route del {route.prefix} dev {bridge}; ip route add "
            f"{route.prefix} dev {bridge} metric {min_metric}`: `replace` would add a second "
            "route), or plug it with `frrctl instance plug`"
        )
    return None


def carrier_reason(bridge: str) -> str:
    return (
        f"{bridge} has no carrier (no port up): the VM's port must be up; zebra keeps a "
        "static route to a down interface inactive, so it would not be announced"
    )


def _eligibility(
    prefix: IPNetwork,
    routes: Sequence[KernelRoute],
    config: PolicyConfig,
    neighbors: frozenset[IPAddress],
) -> tuple[Code, str] | None:
    """The first rule a prefix breaks, before drain and the maximum; None if none."""
    if not routes:
        return Code.NOT_IN_KERNEL, "no kernel route on the host any more"
    # Every route for the prefix must qualify: a second route elsewhere would
    # send the traffic we attract somewhere else.
    for route in routes:
        refusal = route_refusal(route, config.bridge, config.min_metric)
        if refusal is not None:
            return refusal
    # (its routes are host routes now: the pools are asked for the address)
    net: Any = prefix
    if not config.pools.holds(net._version, net.network_address._ip):
        return Code.OUTSIDE_POOLS, "address is outside the host's pools"
    if config.require_neighbor and prefix.network_address not in neighbors:
        return Code.NO_NEIGHBOR, f"no permanent neighbour entry on {config.bridge}"
    if config.held and prefix in config.held:
        return Code.HELD, "held back by the operator"
    if config.needs_carrier and not config.carrier:
        return Code.NO_CARRIER, carrier_reason(config.bridge)
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
            ordered[index] = _verdict((prefix, refusal[0], refusal[1], False))

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
            ordered[index] = _verdict((prefix, Code.DRAINED_GRACEFUL, _GRACEFUL, True))
        else:
            ordered[index] = _verdict((prefix, Code.ANNOUNCE, _ANNOUNCE, False))

    alerts: list[str] = []
    refused = len(ranked) - min(len(ranked), limit)
    if refused:
        alerts.append(
            f"maximum of {limit} announced prefixes reached: {refused} eligible "
            "prefix(es) not announced"
        )
    return Decision.of((v for v in ordered if v is not None), tuple(alerts), config, current)


def redecide(
    previous: Decision,
    changed: Mapping[IPNetwork, Sequence[KernelRoute]],
    config: PolicyConfig,
    announced: Announced | Iterable[IPNetwork] = (),
    neighbors: Iterable[IPAddress] = (),
) -> Decision | None:
    """`decide` for a burst, at the cost of what it touched: `changed` maps each
    prefix whose routes or neighbour entry changed to its routes now (all
    other prefixes' routes are as `previous` saw them).

    The answer equals decide() over everything (a unit test checks it on
    random bursts). None when it cannot be had cheaply: the policy changed,
    or the maximum is in play (ranking then depends on every prefix); the
    caller then runs decide().
    """
    limit = max(config.max_prefixes, 0)
    if previous.config != config or previous.over_maximum:
        return None
    current = frozenset(announced)
    # A prefix entering or leaving FRR's set is looked at as well: with no
    # route, being announced is what makes it a candidate (not-in-kernel).
    moved = (current ^ previous.announced).difference(changed)
    neighbor_set = frozenset(neighbors)
    graceful = config.drain is Drain.GRACEFUL
    by_prefix = dict(previous.by_prefix)
    desired = dict(previous.desired)
    counts = dict(previous.counts)
    no_routes: Sequence[KernelRoute] = ()
    judged: list[IPNetwork] = []  # whose verdict may differ: what `touched` tells diff_touched
    pairs: Iterable[tuple[IPNetwork, Sequence[KernelRoute] | None]] = itertools.chain(
        changed.items(), ((net, None) for net in moved)
    )
    for net, routes in pairs:
        old = by_prefix.get(net)
        if routes is None:
            if old is not None and old.code is not Code.NOT_IN_KERNEL:
                continue  # routes unchanged and present: FRR's set does not matter
            routes = no_routes
        judged.append(net)
        if not routes and net not in current:  # no route, not announced: no candidate
            if old is not None:
                del by_prefix[net]
                counts[old.code] -= 1
                desired.pop(net, None)
            continue
        refusal = _eligibility(net, routes, config, neighbor_set)
        if refusal is not None:
            verdict = _verdict((net, refusal[0], refusal[1], False))
        else:
            verdict = _verdict(
                (net, Code.DRAINED_GRACEFUL, _GRACEFUL, True)
                if graceful
                else (net, Code.ANNOUNCE, _ANNOUNCE, False)
            )
        # (one dict write per prefix, no delete and re-insert: a burst hashes
        # each prefix as few times as it can)
        if old is not None:
            counts[old.code] -= 1
            if refusal is not None and old.code in _ANNOUNCING:
                del desired[net]
        by_prefix[net] = verdict
        counts[verdict.code] = counts.get(verdict.code, 0) + 1
        if refusal is None:
            desired[net] = graceful
    if len(desired) > limit:
        return None
    return Decision(by_prefix, desired, counts, (), config, current, frozenset(judged))


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


def diff_touched(desired: Announced, announced: Announced, touched: Iterable[IPNetwork]) -> Plan:
    """`diff` when `desired` and `announced` can differ only on `touched`
    prefixes (FRR held the previous desired set exactly): the same plan,
    without walking every prefix."""
    add: list[tuple[IPNetwork, bool]] = []
    gone: list[IPNetwork] = []
    for prefix in touched:
        want = desired.get(prefix)
        have = announced.get(prefix)
        if want is not None and want != have:
            add.append((prefix, want))
        elif want is None and have is not None:
            gone.append(prefix)
    add.sort(key=lambda item: prefix_key(item[0]))
    gone.sort(key=prefix_key)
    return Plan(tuple(add), tuple(gone), len(desired) - len(add))


def parse_prefix(text: str) -> IPNetwork:
    """A prefix as FRR prints it (`192.0.2.1/32`); a bare address is a host route."""
    return canonical(parse_network(text.strip()))


# One object per prefix while anything holds it: the watcher's routes, what
# FRR was read to announce and the decisions share it. An ipaddress /32 costs
# ~530 bytes (its address, a __dict__, a `hosts` closure); at 10,000 prefixes
# the daemon held four copies of each, ~16 MB more than one.
_CANONICAL: dict[tuple[int, int, int], _KeyedRef] = {}


class _KeyedRef(weakref.ref[IPNetwork]):
    """A weak reference that knows its key in _CANONICAL. Kept by hand, not in
    a WeakValueDictionary: its get and set are Python code, and a burst of
    10,000 new routes paid ~1.5 us per prefix for them."""

    __slots__ = ("key",)
    key: tuple[int, int, int]


def _forget(ref: _KeyedRef) -> None:
    # the prefix died; a newer object may hold the key already
    if _CANONICAL.get(ref.key) is ref:
        del _CANONICAL[ref.key]


def _intern(key: tuple[int, int, int], prefix: IPNetwork) -> IPNetwork:
    ref = _KeyedRef(prefix, _forget)
    ref.key = key
    _CANONICAL[key] = ref
    return prefix


def _live(key: tuple[int, int, int]) -> IPNetwork | None:
    ref = _CANONICAL.get(key)
    return None if ref is None else ref()


def canonical(prefix: IPNetwork) -> IPNetwork:
    """The live object equal to `prefix` (`prefix` itself if there is none)."""
    key = (prefix.version, int(prefix.network_address), prefix.prefixlen)
    found = _live(key)
    return _intern(key, prefix) if found is None else found


def canonical_of(version: int, value: int, length: int) -> IPNetwork:
    """`canonical` of the network `value`/`length` (host bits clear), made only
    if no live object is equal: a withdrawal burst makes none."""
    key = (version, value, length)
    found = _live(key)
    if found is None:
        found = network_from_int(version, value, length)
        if int(found.network_address) != value:  # host bits were set: key it as canonical does
            return canonical(found)
        _intern(key, found)
    return found
