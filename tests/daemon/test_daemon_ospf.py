"""An OSPFv2 + OSPFv3 host in controller mode, end to end, with either driver:
`frrctl daemon` announces each allowed prefix as a staticd route (vtysh:
over staticd's vty, any FRR build; grpc: over its northbound gRPC), and
ospfd/ospf6d redistribute those routes (tests/daemon/ospf_host.py).

Every refusal (hold, drain, the maximum, require-neighbor, a kernel route at
a metric a static route cannot outrank) is a route that is not in staticd, so
it never reaches an LSDB, not even for a moment, also across an ospfd/ospf6d
restart: both LSDBs are sampled back to back throughout. New routes are
originated at once (no 5 s wait in ospf6d). A zebra restart is
tests/daemon/test_daemon_ospf_zebra.py's. The grpc cases need the gRPC build
(FRRCTL_FRR_GRPC).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from frrctl.inventory import parse_inventory
from frrctl.policy import STATIC_MIN_METRIC
from frrctl.render import render_host

from .conftest import grpc_skip_reason, needs_lab
from .ospf_host import INVENTORY, OspfHost, Sampler

pytestmark = [needs_lab, pytest.mark.lab]

MakeHost = Callable[..., OspfHost]
HELD = {"192.0.2.33/32", "2001:db8:100::33/128"}
GOOD = {"192.0.2.30/32", "2001:db8:100::30/128"}


@pytest.fixture(
    params=[
        "vtysh",
        pytest.param(
            "grpc",
            marks=pytest.mark.skipif(bool(grpc_skip_reason()), reason=grpc_skip_reason() or ""),
        ),
    ]
)
def make_host(request: pytest.FixtureRequest) -> Iterator[MakeHost]:
    """OspfHost(driver, controller settings), closed at the end."""
    made: list[OspfHost] = []

    def make(**controller: object) -> OspfHost:
        made.append(OspfHost(request.param, controller))
        return made[-1]

    try:
        yield make
    finally:
        for h in made:
            h.close()


@pytest.mark.parametrize("driver", ["vtysh", "grpc"])
def test_rendered_config_redistributes_static_routes_and_has_no_gate(driver: str) -> None:
    data = {**INVENTORY, "hosts": [dict(INVENTORY["hosts"][0], controller={"driver": driver})]}
    fleet = parse_inventory(data)
    files = render_host(fleet, fleet.hosts[0])
    conf = files["frr.conf"]
    assert "redistribute static route-map static-cloud\n" in conf
    assert "redistribute static route-map static-cloud-v6\n" in conf
    assert "frrctl-" not in conf and "redistribute kernel" not in conf
    assert ("-M grpc:" in files["daemons"]) is (driver == "grpc")


def test_hold_and_refused_metric_never_reach_the_lsdb(make_host: MakeHost) -> None:
    host = make_host()
    host.cli("hold", "192.0.2.33")  # before the routes exist, before the daemon runs
    host.cli("hold", "2001:db8:100::33")
    host.start_daemon()
    sampler = Sampler(host)
    sampler.start()
    try:
        host.route("add", *sorted(HELD), "203.0.113.5/32")  # held; outside the pools
        host.route("add", "192.0.2.34/32", metric=0)  # `ip route add`: outranks a static route
        host.route("add", *sorted(GOOD))
        host.wait(lambda got: got >= GOOD)
        time.sleep(2.0)
    finally:
        sampler.stop()
    assert sampler.seen == GOOD, sampler.seen
    status = host.status()
    items = {p["prefix"]: p for p in status["prefixes"]}
    assert items["192.0.2.34/32"]["verdict"] == "kernel-metric"
    fix = f"ip route add 192.0.2.34/32 dev cloudbr0 metric {STATIC_MIN_METRIC}"
    assert "ip route del 192.0.2.34/32 dev cloudbr0" in items["192.0.2.34/32"]["reason"]
    assert fix in items["192.0.2.34/32"]["reason"]
    assert {items[p]["verdict"] for p in HELD} == {"held"}
    assert "ospf_admission" not in status and "ospf_blocked" not in status
    # the fix the reason names (`ip route replace` with another metric would add a
    # second route and leave the one at metric 0 outranking it)
    host.route("del", "192.0.2.34/32", metric=0)
    host.route("add", "192.0.2.34/32")
    host.wait(lambda got: got == GOOD | {"192.0.2.34/32"})


def test_release_drain_undrain_and_new_routes_come_at_once(make_host: MakeHost) -> None:
    host = make_host()
    host.cli("hold", "192.0.2.33")
    host.cli("hold", "2001:db8:100::33")
    host.start_daemon()
    host.route("add", *sorted(HELD))
    t0 = time.monotonic()
    host.route("add", *sorted(GOOD))
    host.wait(lambda got: got == GOOD)
    print(f"{host.driver}: kernel route -> both LSDBs: {time.monotonic() - t0:.3f} s")
    t0 = time.monotonic()
    host.cli("release", "--all")
    host.wait(lambda got: got == GOOD | HELD, timeout=3)  # well under ospf6d's 5 s
    print(f"{host.driver}: release -> both LSDBs: {time.monotonic() - t0:.3f} s")
    host.cli("hold", "192.0.2.30/32")
    host.wait(lambda got: got == (GOOD | HELD) - {"192.0.2.30/32"})
    host.cli("release", "--all")
    host.cli("drain")  # withdraw everything: the staticd routes go
    host.wait(lambda got: not got)
    host.cli("undrain")
    host.wait(lambda got: got == GOOD | HELD)
    host.route("del", *sorted(GOOD | HELD))
    host.wait(lambda got: not got)


def test_never_past_the_maximum(make_host: MakeHost) -> None:
    host = make_host(**{"max-prefixes": 3})
    host.start_daemon()
    sampler = Sampler(host)
    sampler.start()
    first = {"192.0.2.30/32", "192.0.2.31/32", "2001:db8:100::30/128"}
    try:
        host.route("add", *sorted(first))
        host.wait(lambda got: got == first)
        host.route("add", "192.0.2.32/32", "2001:db8:100::32/128")  # over the maximum
        time.sleep(2.0)
        assert host.lsas() == first
    finally:
        sampler.stop()
    assert sampler.seen == first, sampler.seen
    verdicts = host.verdicts()
    assert verdicts["192.0.2.32/32"] == verdicts["2001:db8:100::32/128"] == "over-maximum"
    host.route("del", "192.0.2.30/32")  # a place frees up: one waiting prefix takes it
    host.wait(lambda got: len(got) == 3 and "192.0.2.30/32" not in got)


def test_require_neighbor_announces_only_backed_routes(make_host: MakeHost) -> None:
    host = make_host(**{"require-neighbor": True})
    host.start_daemon()
    sampler = Sampler(host)
    sampler.start()
    try:
        host.neighbor("2001:db8:100::31")
        host.route("add", "2001:db8:100::31/128", "2001:db8:100::30/128", "192.0.2.30/32")
        host.wait(lambda got: got == {"2001:db8:100::31/128"})
        time.sleep(2.0)
        assert host.lsas() == {"2001:db8:100::31/128"}
    finally:
        sampler.stop()
    assert sampler.seen == {"2001:db8:100::31/128"}, sampler.seen
    assert host.verdicts()["192.0.2.30/32"] == "no-permanent-neighbor"
    t0 = time.monotonic()
    host.neighbor("192.0.2.30")
    host.wait(lambda got: "192.0.2.30/32" in got)
    print(f"{host.driver}: neighbour entry -> LSA: {time.monotonic() - t0:.3f} s")


def test_ospf_daemons_restart_announce_nothing_refused(make_host: MakeHost) -> None:
    """The held routes are in the kernel while ospfd and ospf6d start again:
    they redistribute staticd's routes, which never held them."""
    host = make_host()
    host.cli("hold", "192.0.2.33")
    host.cli("hold", "2001:db8:100::33")
    host.start_daemon()
    host.route("add", *sorted(GOOD | HELD))
    host.wait(lambda got: got == GOOD)
    sampler = Sampler(host)
    sampler.start()
    try:
        host.restart("ospfd")
        host.restart("ospf6d")
        host.wait(lambda got: got == GOOD, timeout=40)
        time.sleep(2.0)
    finally:
        sampler.stop()
    assert sampler.seen == GOOD, sampler.seen
    assert host.daemon is not None and host.daemon.alive()
