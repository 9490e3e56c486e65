"""OSPF redistribution after a zebra restart: the pure pieces (staticd's parsers
and command builder, checks.RedistRepair) and aftermath's use of them with a
fake announcer. The real-FRR proof is tests/daemon/test_daemon_ospf_zebra.py."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from frrctl.daemon.aftermath import check_redistribution
from frrctl.daemon.checks import (
    CONFIRM_AFTER,
    REGISTER_RETRY,
    REGISTER_SETTLE,
    WITHDRAW_BOUND,
    RedistAction,
    RedistRepair,
)
from frrctl.frr import registry
from frrctl.frr.base import AnnounceDriver, Redistributed, TableCheck
from frrctl.frr.staticd import (
    StaticdDriver,
    StaticdVtyDriver,
    StaticLayout,
    nudge_commands,
    parse_self_external,
    redistributed,
)
from frrctl.metrics import Metrics
from frrctl.policy import Plan, parse_prefix
from frrctl.pools import IPNetwork

P = parse_prefix
V4, V4B, V6, V6B = (
    P("192.0.2.30/32"),
    P("192.0.2.34/32"),
    P("2001:db8:100::30/128"),
    P("2001:db8:100::34/128"),
)

# FRR 8.4.4 `show ip ospf database self-originate`, NSSA area (a live and a MaxAge LSA)
SELF_ORIGINATE = """
       OSPF Router with ID (198.51.100.21)

                Router Link States (Area 0.0.0.3 [NSSA])

Link ID         ADV Router      Age  Seq#       CkSum  Link count
198.51.100.21  198.51.100.21      1 0x80000004 0x2809 2

                NSSA-external Link States (Area 0.0.0.3 [NSSA])

Link ID         ADV Router      Age  Seq#       CkSum  Route
192.0.2.30     198.51.100.21      0 0x80000001 0x99ed E2 192.0.2.30/32 [0x0]
192.0.2.34     198.51.100.21   3600 0x80000001 0x7112 E2 192.0.2.34/32 [0x0]

                AS External Link States

Link ID         ADV Router      Age  Seq#       CkSum  Route
192.0.2.30     198.51.100.21      0 0x80000001 0xca9f E2 192.0.2.30/32 [0x0]
192.0.2.34     198.51.100.21   3600 0x80000001 0xa2c3 E2 192.0.2.34/32 [0x0]
0.0.0.0        198.51.100.21     12 0x80000001 0xa2c3 E2 0.0.0.0/0 [0x0]
"""


def test_nudge_is_an_empty_deny_after_the_last_entry_added_and_removed() -> None:
    assert nudge_commands(StaticLayout()) == [
        "configure terminal", "route-map static-cloud-v6 deny 65535", "exit",
        "no route-map static-cloud-v6 deny 65535", "end",
    ]  # fmt: skip
    assert nudge_commands(StaticLayout(base="x"), 4)[1] == "route-map x deny 65535"


def test_self_originated_externals_live_host_prefixes_only() -> None:
    assert parse_self_external(SELF_ORIGINATE) == {V4}  # MaxAge gone, no default, no router LSA
    assert parse_self_external("") == set()


def test_redistributed_splits_missing_and_stale_per_family() -> None:
    got = redistributed("ospfd", {V4B, V6}, [V4, V6, V6B])
    assert got == Redistributed("ospfd", frozenset({V4}), frozenset({V4B}))
    six = redistributed("ospf6d", {V6, V6B, P("2001:db8:100::/64")}, [V4, V6])
    assert six == Redistributed("ospf6d", frozenset(), frozenset({V6B}))


NONE: frozenset[IPNetwork] = frozenset()


def six(missing: Iterable[IPNetwork] = NONE, stale: Iterable[IPNetwork] = NONE) -> Redistributed:
    return Redistributed("ospf6d", frozenset(missing), frozenset(stale))


def four(missing: Iterable[IPNetwork] = NONE, stale: Iterable[IPNetwork] = NONE) -> Redistributed:
    return Redistributed("ospfd", frozenset(missing), frozenset(stale))


def test_ospf6_stale_nudge_then_withdraw_then_alert_past_the_bound() -> None:
    r = RedistRepair()
    t = CONFIRM_AFTER
    assert r.decide(0.0, [six(stale={V6B})]) == RedistAction()  # once: may be in flight
    assert r.decide(1.0, [six(stale={V6B})]) == RedistAction()  # not CONFIRM_AFTER yet
    assert not r.confirmed
    first = r.decide(t, [six(stale={V6B})])
    assert first.register and not first.withdraw and r.confirmed == {V6B}
    assert not r.decide(t + 1, [six(stale={V6B})]).withdraw  # ospf6d registers 5 s later
    act = r.decide(t + REGISTER_SETTLE, [six(stale={V6B})])
    assert act.withdraw == {V6B} and not act.register
    assert not r.decide(t + 0.5 + REGISTER_SETTLE, [six(stale={V6B})]).withdraw  # in 2 s
    assert r.decide(t + REGISTER_RETRY, [six(stale={V6B})]).register  # a lost nudge: again
    late = r.decide(t + WITHDRAW_BOUND, [six(stale={V6B})])
    assert late.alert_stale == {"ospf6d": frozenset({V6B})}
    assert not r.decide(t + 1 + WITHDRAW_BOUND, [six(stale={V6B})]).alert_stale  # once
    cured = r.decide(t + 2 + WITHDRAW_BOUND, [six()])
    assert cured == RedistAction() and not r.confirmed and r.stale_since is None


def test_a_gap_between_sightings_starts_the_confirmation_again() -> None:
    r = RedistRepair()
    r.decide(0.0, [six(missing={V6})])
    r.decide(3.0, [six()])  # the LSA came (MinLSInterval), then went again
    assert not r.decide(CONFIRM_AFTER, [six(missing={V6})]).alert_missing
    assert not r.decide(CONFIRM_AFTER + 1, [six(missing={V6})]).alert_missing
    act = r.decide(2 * CONFIRM_AFTER, [six(missing={V6})])
    assert act.alert_missing == {"ospf6d": frozenset({V6})}


def test_what_nothing_cures_is_alerted_once_and_stays_unhealthy() -> None:
    r = RedistRepair()
    t = CONFIRM_AFTER
    checks = [four(missing={V4}, stale={V4B}), six(missing={V6})]
    r.decide(0.0, checks)
    act = r.decide(t, checks)
    assert act.alert_missing == {"ospfd": frozenset({V4}), "ospf6d": frozenset({V6})}
    assert act.alert_stale == {"ospfd": frozenset({V4B})}
    assert not act.register and not act.withdraw  # nudging ospf6d cures no missing prefix
    assert r.confirmed == {V4, V4B, V6}
    again = r.decide(t + 1, checks)
    assert not again.alert_missing and not again.alert_stale and r.confirmed == {V4, V4B, V6}
    more = [four(missing={V4, P("192.0.2.36/32")}, stale={V4B}), six(missing={V6})]
    assert r.decide(t + 2, more).alert_missing == {}  # 192.0.2.36 just seen
    assert r.decide(2 * t + 2, more).alert_missing == {"ospfd": frozenset({V4, P("192.0.2.36/32")})}
    r.decide(2 * t + 3, [four(), six()])
    assert not r.confirmed


def test_watch_after_a_zebra_restart_every_interval() -> None:
    r = RedistRepair()
    assert not r.watch_due(0.0)  # no zebra restart seen
    r.watching = True
    assert r.watch_due(0.0) and not r.watch_due(5.0) and r.watch_due(10.0)


class Losing(AnnounceDriver):
    """An announcer whose OSPF daemons answer `checks`; records the repairs."""

    name = "fake"

    def __init__(self, checks: list[Redistributed] | None) -> None:
        self.checks = checks
        self.registers = 0
        self.withdrawn: list[list[IPNetwork]] = []

    def read(self) -> dict[IPNetwork, bool]:
        return {}

    def apply(self, plan: Plan) -> None:
        pass

    def redistribution(self, desired: Mapping[IPNetwork, bool]) -> list[Redistributed] | None:
        return self.checks

    def register_redistribution(self) -> bool:
        self.registers += 1
        return True

    def withdraw_redistributed(self, prefixes: list[IPNetwork]) -> bool:
        self.withdrawn.append(prefixes)
        # ospf6d withdrew them; ospfd is as it was
        self.checks = [c if c.daemon == "ospfd" else six() for c in self.checks or []]
        return True


def test_check_redistribution_repairs_ospf6d_and_alerts_ospfd(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = Losing([four(missing={V4}), six(stale={V6B})])
    repair, metrics = RedistRepair(), Metrics()
    caplog.set_level(logging.WARNING)
    t = CONFIRM_AFTER
    assert not check_redistribution(fake, {V4: False}, repair, metrics, 0.0)
    assert not check_redistribution(fake, {V4: False}, repair, metrics, t)
    assert fake.registers == 1 and "ALERT: ospfd does not redistribute" in caplog.text
    assert check_redistribution(fake, {V4: False}, repair, metrics, t + REGISTER_SETTLE)
    assert fake.withdrawn == [[V6B]]
    assert repair.confirmed == {V4, V6B}  # unhealthy until seen cured
    check_redistribution(fake, {V4: False}, repair, metrics, t + REGISTER_SETTLE + 1)
    assert repair.confirmed == {V4}  # ospf6d cured; ospfd's missing prefix keeps it unhealthy
    assert "ALERT: ospf6d still" not in caplog.text


def test_check_redistribution_without_a_check_does_nothing() -> None:
    nothing = RedistRepair()
    for now in (0.0, CONFIRM_AFTER):
        assert not check_redistribution(Losing(None), {}, nothing, Metrics(), now)
    assert not nothing.confirmed


def test_registry_gives_ospfd_hosts_the_ospfd_check(tmp_path: Path) -> None:
    spec = registry.AnnouncerSpec(bridge="cloudbr0", vty_dir=tmp_path, asn=64512)
    both = dataclasses.replace(spec, runs_bgp=False, ospf_versions=(4, 6), asn=None)
    grpc = registry.make_announcer("grpc", both)
    assert isinstance(grpc, StaticdDriver) and grpc.ospf and grpc.ospf6
    vty = registry.make_announcer("vtysh", dataclasses.replace(both, ospf_versions=(4,)))
    assert isinstance(vty, StaticdVtyDriver) and vty.ospf and not vty.ospf6
    assert not vty.register_redistribution()  # no ospf6d: ospfd has no way to register
    assert not vty.withdraw_redistributed([V4B])
    plain = registry.make_announcer("grpc", spec)
    assert isinstance(plain, StaticdDriver) and plain.redistribution({}) is None


def test_withdraw_on_a_bgp_host_only_what_bgpd_still_announces(tmp_path: Path) -> None:
    """The add of the add-and-delete reaches a registered bgpd too: a prefix
    bgpd has withdrawn already must not pass (a new NLRI for a moment)."""

    class Redist:
        ospf6d = object()

        def __init__(self) -> None:
            self.withdrawn: list[list[IPNetwork]] = []

        def withdraw(self, driver: AnnounceDriver, prefixes: list[IPNetwork]) -> None:
            self.withdrawn.append(list(prefixes))

    class Host(StaticdVtyDriver):
        def check_table(self) -> TableCheck | None:
            return TableCheck(missing=[], stale=[V6B]) if self.bgp else None

    for bgp, want in ((True, [[V6B]]), (False, [[V6, V6B]])):
        drv = Host(tmp_path, bgp=bgp, ospf6=True)
        fake = Redist()
        drv._redist = fake  # type: ignore[assignment]
        assert drv.withdraw_redistributed([V6, V6B])
        assert fake.withdrawn == want
    drv = Host(tmp_path, bgp=True, ospf6=True)
    drv._redist = Redist()  # type: ignore[assignment]
    assert not drv.withdraw_redistributed([V6])  # bgpd withdrew it: nothing to do
