"""The bridge's carrier in the policy (pure): a staticd driver's route to a bridge
without carrier would stay inactive in zebra, so it is refused with the fix."""

from __future__ import annotations

from frrctl.policy import Code, Drain, KernelRoute, PolicyConfig, decide, parse_prefix, redecide
from frrctl.pools import Pools

POOLS = Pools.parse(ipv4=["192.0.2.0/25"], ipv6=["2001:db8:100::/64"])
P = parse_prefix
PLUG = 2 << 24
ROUTES = [
    KernelRoute(P("192.0.2.30/32"), "cloudbr0", metric=PLUG),
    KernelRoute(P("2001:db8:100::80/128"), "cloudbr0", metric=PLUG),
]
BOTH = {P("192.0.2.30/32"): False, P("2001:db8:100::80/128"): False}


def cfg(**kw: object) -> PolicyConfig:
    base: dict[str, object] = {"pools": POOLS, "min_metric": PLUG, "needs_carrier": True}
    return PolicyConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_no_carrier_refuses_with_the_fix() -> None:
    d = decide(ROUTES, cfg(carrier=False))
    assert d.desired == {}
    assert d.counts == {Code.NO_CARRIER: 2}
    for verdict in d.verdicts:
        assert not verdict.announce
        assert verdict.reason.startswith("cloudbr0 has no carrier (no port up)")
        assert "the VM's port must be up" in verdict.reason and "inactive" in verdict.reason


def test_carrier_or_an_announcer_that_does_not_need_it_announces() -> None:
    assert decide(ROUTES, cfg(carrier=True)).desired == BOTH
    # vtysh: bgpd `network` and kernel redistribution announce on a carrierless bridge
    assert decide(ROUTES, cfg(carrier=False, needs_carrier=False)).desired == BOTH


def test_announced_prefixes_are_withdrawn_when_carrier_goes() -> None:
    d = decide(ROUTES, cfg(carrier=False), announced=BOTH)
    assert d.desired == {} and d.counts == {Code.NO_CARRIER: 2}
    # gone from the kernel says so, not "no carrier"
    gone = decide([], cfg(carrier=False), announced=BOTH)
    assert gone.counts == {Code.NOT_IN_KERNEL: 2}


def test_route_and_operator_reasons_come_first() -> None:
    routes = [
        KernelRoute(P("192.0.2.31/32"), "cloudbr0"),  # metric 0: the kernel route wins
        KernelRoute(P("192.0.2.32/32"), "cloudbr0", metric=PLUG),
        KernelRoute(P("192.0.2.33/32"), "cloudbr0", metric=PLUG),
        KernelRoute(P("192.0.2.34/32"), "cloudbr0", metric=PLUG),
    ]
    d = decide(routes, cfg(carrier=False, held=frozenset({P("192.0.2.32/32")})))
    codes = {str(v.prefix): v.code for v in d.verdicts}
    assert codes == {
        "192.0.2.31/32": Code.KERNEL_METRIC,
        "192.0.2.32/32": Code.HELD,
        "192.0.2.33/32": Code.NO_CARRIER,
        "192.0.2.34/32": Code.NO_CARRIER,
    }
    drained = decide(routes[2:], cfg(carrier=False, drain=Drain.GRACEFUL))
    assert drained.counts == {Code.NO_CARRIER: 2}


def test_a_carrier_change_is_judged_again_in_full() -> None:
    """redecide cannot carry verdicts across a carrier change: every prefix's
    verdict depends on it, so it answers None (the caller runs decide)."""
    without = decide(ROUTES, cfg(carrier=False))
    assert redecide(without, {}, cfg(carrier=True)) is None
    with_carrier = decide(ROUTES, cfg(carrier=True))
    assert redecide(with_carrier, {}, cfg(carrier=False), announced=BOTH) is None
    # unchanged carrier: the cheap path holds, and a new prefix is refused too
    new = KernelRoute(P("192.0.2.40/32"), "cloudbr0", metric=PLUG)
    fast = redecide(without, {new.prefix: (new,)}, cfg(carrier=False))
    assert fast is not None and fast.desired == {}
    assert fast.counts == {Code.NO_CARRIER: 3}
