"""Announcement policy and diff: pure, fast."""

from __future__ import annotations

import ipaddress
import random

import pytest

from frrctl.policy import (
    Code,
    Drain,
    KernelRoute,
    Plan,
    PolicyConfig,
    decide,
    diff,
    diff_touched,
    parse_prefix,
    redecide,
)
from frrctl.pools import Pools

POOLS = Pools.parse(
    ipv4=["192.0.2.0/25", "198.51.100.10-198.51.100.20"], ipv6=["2001:db8:100::/64"]
)
P = parse_prefix


def route(prefix: str, **kw: object) -> KernelRoute:
    kw.setdefault("ifname", "cloudbr0")
    return KernelRoute(P(prefix), **kw)  # type: ignore[arg-type]


def config(**kw: object) -> PolicyConfig:
    return PolicyConfig(pools=POOLS, **kw)  # type: ignore[arg-type]


def test_direct_host_routes_in_pool_are_announced() -> None:
    d = decide([route("192.0.2.30/32"), route("2001:db8:100::80/128")], config())
    assert d.desired == {P("192.0.2.30/32"): False, P("2001:db8:100::80/128"): False}
    assert all(v.code is Code.ANNOUNCE and v.reason for v in d.verdicts)
    assert d.alerts == ()


@pytest.mark.parametrize(
    ("r", "code"),
    [
        (route("192.0.2.30/32", ifname="eth0"), Code.OTHER_INTERFACE),
        (route("192.0.2.30/32", ifname=None), Code.OTHER_INTERFACE),
        (route("192.0.2.0/26"), Code.NOT_HOST_ROUTE),
        (route("2001:db8:100::/120"), Code.NOT_HOST_ROUTE),
        (route("192.0.2.30/32", gateway=ipaddress.ip_address("192.0.2.1")), Code.VIA_GATEWAY),
        (route("192.0.2.30/32", rtype="blackhole"), Code.NOT_UNICAST),
        (route("192.0.2.30/32", protocol=186), Code.FRR_ROUTE),
        (route("192.0.2.30/32", table=100), Code.OTHER_TABLE),
        (route("192.0.2.200/32"), Code.OUTSIDE_POOLS),
        (route("203.0.113.5/32"), Code.OUTSIDE_POOLS),
        (route("2001:db8:200::1/128"), Code.OUTSIDE_POOLS),
    ],
)
def test_refusals_carry_code_and_reason(r: KernelRoute, code: Code) -> None:
    d = decide([r], config())
    assert d.desired == {}
    (verdict,) = d.verdicts
    assert verdict.code is code
    assert verdict.reason and not verdict.announce


def test_a_second_route_elsewhere_disqualifies_the_prefix() -> None:
    d = decide([route("192.0.2.30/32"), route("192.0.2.30/32", ifname="eth0")], config())
    assert d.desired == {}
    assert d.verdicts[0].code is Code.OTHER_INTERFACE


def test_permanent_neighbour_required_when_configured() -> None:
    routes = [route("192.0.2.30/32"), route("192.0.2.31/32")]
    d = decide(
        routes, config(require_neighbor=True), neighbors=[ipaddress.ip_address("192.0.2.31")]
    )
    assert d.desired == {P("192.0.2.31/32"): False}
    assert d.verdict(P("192.0.2.30/32")).code is Code.NO_NEIGHBOR  # type: ignore[union-attr]
    assert decide(routes, config()).desired.keys() == {P("192.0.2.30/32"), P("192.0.2.31/32")}


def test_operator_hold_back() -> None:
    d = decide([route("192.0.2.30/32")], config(held=frozenset({P("192.0.2.30/32")})))
    assert d.desired == {}
    assert d.verdicts[0].code is Code.HELD


def test_announced_but_gone_from_kernel_is_withdrawn_with_reason() -> None:
    d = decide([], config(), announced={P("192.0.2.30/32"): False})
    assert d.desired == {}
    assert d.verdicts[0].code is Code.NOT_IN_KERNEL


def test_drain_withdraw_and_graceful() -> None:
    routes = [route("192.0.2.30/32"), route("203.0.113.1/32")]
    drained = decide(routes, config(drain=Drain.WITHDRAW))
    assert drained.desired == {}
    assert drained.verdict(P("192.0.2.30/32")).code is Code.DRAINED  # type: ignore[union-attr]
    # a prefix refused for its own reason keeps that reason while drained
    assert drained.verdict(P("203.0.113.1/32")).code is Code.OUTSIDE_POOLS  # type: ignore[union-attr]
    graceful = decide(routes, config(drain=Drain.GRACEFUL))
    assert graceful.desired == {P("192.0.2.30/32"): True}
    assert graceful.verdict(P("192.0.2.30/32")).code is Code.DRAINED_GRACEFUL  # type: ignore[union-attr]


def test_maximum_keeps_announced_and_refuses_new_with_alert() -> None:
    routes = [route(f"192.0.2.{i}/32") for i in range(1, 11)]
    announced = {P("192.0.2.9/32"): False, P("192.0.2.10/32"): False}
    d = decide(routes, config(max_prefixes=3), announced=announced)
    assert set(d.desired) == {P("192.0.2.9/32"), P("192.0.2.10/32"), P("192.0.2.1/32")}
    assert d.over_maximum == 7
    assert d.alerts and "maximum of 3" in d.alerts[0]
    # full: nothing new, even for a lower address
    again = decide(routes, config(max_prefixes=3), announced=d.desired)
    assert again.desired == d.desired


def test_lowered_maximum_caps_the_total() -> None:
    routes = [route(f"192.0.2.{i}/32") for i in range(1, 6)]
    announced = {r.prefix: False for r in routes}
    assert len(decide(routes, config(max_prefixes=2), announced=announced).desired) == 2
    assert decide(routes, config(max_prefixes=0)).desired == {}


def test_diff() -> None:
    a, b, c = P("192.0.2.1/32"), P("192.0.2.2/32"), P("2001:db8:100::1/128")
    plan = diff({a: False, b: True, c: False}, {a: False, b: False, P("192.0.2.3/32"): False})
    assert plan.announce == ((b, True), (c, False))
    assert plan.withdraw == (P("192.0.2.3/32"),)
    assert plan.unchanged == 1
    assert plan.summary() == "+2 -1 =1"
    assert not diff({a: False}, {a: False})
    assert diff({}, {}) == Plan()


def _random_world(rng: random.Random) -> tuple[list[KernelRoute], dict[object, bool], PolicyConfig]:
    routes = []
    for _ in range(rng.randrange(0, 60)):
        v6 = rng.random() < 0.3
        if v6:
            prefix = f"2001:db8:{rng.choice(['100', '200'])}::{rng.randrange(1, 300):x}/128"
        else:
            prefix = (
                f"{rng.choice(['192.0.2', '198.51.100', '203.0.113'])}.{rng.randrange(1, 255)}/32"
            )
        routes.append(
            route(
                prefix,
                ifname=rng.choice(["cloudbr0"] * 5 + ["eth0", None]),
                protocol=rng.choice([3, 3, 3, 4, 186]),
            )
        )
    announced: dict[object, bool] = {
        r.prefix: False for r in rng.sample(routes, k=min(len(routes), rng.randrange(0, 10)))
    }
    cfg = config(
        max_prefixes=rng.randrange(0, 40),
        require_neighbor=rng.random() < 0.3,
        drain=rng.choice(list(Drain)),
    )
    return routes, announced, cfg


@pytest.mark.parametrize("seed", range(300))
def test_invariants_random(seed: int) -> None:
    """Property test: whatever the input, nothing unsafe is ever desired."""
    rng = random.Random(seed)
    routes, announced, cfg = _random_world(rng)
    neighbors = [r.prefix.network_address for r in routes if rng.random() < 0.5]
    d = decide(routes, cfg, announced=announced, neighbors=neighbors)  # type: ignore[arg-type]
    desired = d.desired
    assert len(desired) <= cfg.max_prefixes
    by_prefix: dict[object, list[KernelRoute]] = {}
    for r in routes:
        by_prefix.setdefault(r.prefix, []).append(r)
    for prefix, gshut in desired.items():
        assert prefix.prefixlen == prefix.max_prefixlen
        assert all(r.ifname == "cloudbr0" and r.protocol != 186 for r in by_prefix[prefix])
        assert cfg.pools.contains_host_route(prefix)
        if cfg.require_neighbor:
            assert prefix.network_address in neighbors
        assert gshut is (cfg.drain is Drain.GRACEFUL)
    if cfg.drain is Drain.WITHDRAW:
        assert desired == {}
    # every candidate has exactly one verdict with a reason, sorted
    assert {v.prefix for v in d.verdicts} == set(by_prefix) | set(announced)
    assert all(v.reason for v in d.verdicts)
    # deterministic, and stable: deciding again from the result changes nothing
    assert decide(routes, cfg, announced=announced, neighbors=neighbors) == d  # type: ignore[arg-type]
    again = decide(routes, cfg, announced=desired, neighbors=neighbors)
    assert again.desired == desired
    # applying the diff to the announced set gives the desired set
    plan = diff(desired, announced)  # type: ignore[arg-type]
    result = dict(announced)
    for p in plan.withdraw:
        del result[p]
    result.update(dict(plan.announce))
    assert result == desired


def _random_prefix(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"2001:db8:{rng.choice(['100', '200'])}::{rng.randrange(1, 40):x}/128"
    return f"{rng.choice(['192.0.2', '203.0.113'])}.{rng.randrange(1, 60)}/32"


@pytest.mark.parametrize("seed", range(200))
def test_redecide_equals_decide_on_random_bursts(seed: int) -> None:
    """The daemon's cheap path: per burst, `redecide` from the previous decision
    and the touched prefixes must give exactly what a full `decide` gives, and
    `diff_touched` exactly what `diff` gives, whenever they answer at all."""
    rng = random.Random(seed)
    kernel: dict[object, tuple[KernelRoute, ...]] = {}
    neighbors: set[object] = set()
    cfg = config(max_prefixes=rng.choice([5, 1000]), require_neighbor=rng.random() < 0.3)
    announced: dict[object, bool] = {}
    previous = decide((), cfg, announced, ())
    synced = True  # FRR holds previous.desired exactly
    answered = 0
    for _ in range(12):
        changed: dict[object, tuple[KernelRoute, ...]] = {}
        for _ in range(rng.randrange(0, 8)):  # one burst of kernel changes
            prefix = P(_random_prefix(rng))
            if rng.random() < 0.4 and prefix in kernel:
                del kernel[prefix]
            elif rng.random() < 0.2:
                neighbors ^= {prefix.network_address}
            else:
                kernel[prefix] = (
                    route(
                        str(prefix),
                        ifname=rng.choice(["cloudbr0"] * 4 + ["eth0"]),
                        protocol=rng.choice([3, 3, 186]),
                    ),
                )
            changed[prefix] = kernel.get(prefix, ())
        if rng.random() < 0.1:  # the operator changes the policy
            cfg = config(max_prefixes=cfg.max_prefixes, held=frozenset(list(kernel)[:1]))
        if rng.random() < 0.15:  # FRR read back: lost or gained something
            announced = {P(_random_prefix(rng)): False for _ in range(rng.randrange(0, 4))}
            synced = False
        routes = [r for rs in kernel.values() for r in rs]
        full = decide(routes, cfg, announced, neighbors)  # type: ignore[arg-type]
        fast = redecide(previous, changed, cfg, announced, neighbors)  # type: ignore[arg-type]
        if fast is not None:
            answered += 1
            assert fast.by_prefix == full.by_prefix
            assert fast.desired == full.desired
            assert {c: n for c, n in fast.counts.items() if n} == dict(full.counts)
            assert fast.verdicts == full.verdicts
            assert fast.alerts == full.alerts
            if synced:
                assert fast.touched is not None
                touched = diff_touched(fast.desired, announced, fast.touched)  # type: ignore[arg-type]
                assert touched == diff(full.desired, announced)  # type: ignore[arg-type]
                assert touched.unchanged == diff(full.desired, announced).unchanged  # type: ignore[arg-type]
        previous = fast or full
        announced = dict(previous.desired)  # the pass applied its plan
        synced = True
    if cfg.max_prefixes == 1000:
        assert answered  # the cheap path is taken, not always refused


def test_static_driver_refuses_a_kernel_route_that_outranks_its_static_route() -> None:
    """gRPC driver: `ip route add ... dev cloudbr0` (metric 0) beats the staticd
    route in zebra, so it would never be redistributed: refused, with the fix."""
    cfg = config(min_metric=2 << 24)
    d = decide([route("192.0.2.30/32"), route("2001:db8:100::80/128", metric=1024)], cfg)
    assert d.desired == {}
    for verdict in d.verdicts:
        assert verdict.code is Code.KERNEL_METRIC
        assert "metric 33554432" in verdict.reason and "frrctl instance plug" in verdict.reason
    assert "metric 0 outranks" in d.verdicts[0].reason
    ok = decide([route("192.0.2.30/32", metric=2 << 24)], cfg)
    assert ok.desired == {P("192.0.2.30/32"): False}
    # the other drivers take any metric
    assert decide([route("192.0.2.30/32")], config()).desired == {P("192.0.2.30/32"): False}
