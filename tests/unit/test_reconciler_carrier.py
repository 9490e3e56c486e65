"""The reconciler and the bridge's carrier, with a fake staticd-like announcer
(pure): refused while the bridge has no carrier, announced in the pass the
carrier's return brings (no wait for the periodic verify); the daemons a
staticd announcer needs are monitored."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from frrctl.daemon import Reconciler
from frrctl.daemon.monitor import MONITORED, monitored
from frrctl.daemon.report import build_status
from frrctl.frr.staticd import StaticdDriver, StaticdVtyDriver
from frrctl.frr.vtysh import VtyshDriver
from frrctl.metrics import Metrics
from frrctl.policy import STATIC_MIN_METRIC, Code, KernelRoute, parse_prefix
from frrctl.watch import KernelSnapshot
from tests.unit.test_daemon_unit import Clock, FakeDriver, settings

P = parse_prefix
ROUTES = ("192.0.2.30/32", "2001:db8:100::80/128")


class FakeStatic(FakeDriver):
    min_metric = STATIC_MIN_METRIC
    needs_carrier = True
    monitored_daemons = ("staticd",)


def snap(carrier: bool, generation: int = 1) -> KernelSnapshot:
    routes = tuple(KernelRoute(P(p), "cloudbr0", metric=STATIC_MIN_METRIC) for p in ROUTES)
    return KernelSnapshot(
        bridge="cloudbr0", bridge_index=2, bridge_up=carrier, routes=routes,
        permanent_neighbors=frozenset(), bridge_addresses=frozenset(), generation=generation,
        cause="test", changed=None, bridge_carrier=carrier,
    )  # fmt: skip


def test_refused_without_carrier_then_announced_when_it_returns(tmp_path: Path) -> None:
    clock = Clock()
    driver = FakeStatic()
    rec = Reconciler(settings(tmp_path), driver, Metrics(), clock=clock)
    rec.new_snapshot(snap(carrier=False))
    rec.maybe_pass(clock(), bgpd_down=False)
    assert driver.state == {} and not rec.pending
    status = build_status(rec, driver.state, set(), {})
    assert {p.verdict for p in status.prefixes} == {Code.NO_CARRIER.value}
    assert all("cloudbr0 has no carrier" in p.reason for p in status.prefixes)
    # the first port comes up: the watcher's link event (a snapshot with
    # `changed` None) makes a pass due now, long before the periodic verify
    clock.now += 0.01
    rec.new_snapshot(dataclasses.replace(snap(carrier=True), changed=None))
    assert rec.pending and rec.next_verify > clock() + 1
    rec.maybe_pass(clock(), bgpd_down=False)
    assert driver.state == {P(p): False for p in ROUTES}
    # and the carrier going again withdraws them (zebra would keep them inactive)
    rec.new_snapshot(snap(carrier=False, generation=2))
    rec.maybe_pass(clock(), bgpd_down=False)
    assert driver.state == {}


def test_an_announcer_that_needs_no_carrier_announces_anyway(tmp_path: Path) -> None:
    driver = FakeDriver()
    rec = Reconciler(settings(tmp_path), driver, Metrics(), clock=Clock())
    rec.new_snapshot(snap(carrier=False))
    assert rec.reconcile()
    assert driver.state == {P(p): False for p in ROUTES}


def test_staticd_is_monitored_for_staticd_announcers_only() -> None:
    assert monitored(FakeDriver()) == MONITORED and "staticd" not in MONITORED
    assert monitored(FakeStatic()) == (*MONITORED, "staticd")
    # the real back ends: both staticd transports need carrier and staticd, vtysh neither
    for cls in (StaticdDriver, StaticdVtyDriver):
        assert cls.needs_carrier and cls.monitored_daemons == ("staticd",)
    assert not VtyshDriver.needs_carrier and VtyshDriver.monitored_daemons == ()
