"""grpc driver, zebra restart, against real FRR (gRPC build) and an ExaBGP peer.

FRR 8.4: every zclient frees its redistribution registrations when zebra goes
(lib/zclient.c zclient_stop) and reconnects 10 s later; staticd then installs
its routes into the new zebra again (zebra_connected -> static_fixup_vrf_ids),
but bgpd is registered for nothing. A route withdrawn meanwhile stayed in bgpd
and at the peer (the new zebra never had it), and a new one never reached bgpd.
The daemon registers bgpd again every repair round and withdraws stale routes
through zebra (StaticdDriver.withdraw_stale): the peer must see the withdraw
and the new prefix, and no withdraw of anything that stays.

Both staticd drivers (StaticdRepairs): grpc on a BGP host, and vtysh on a BGP +
OSPFv2 + OSPFv3 host (staticd over its vty, StaticdVtyDriver; ospfd and ospf6d
run with the rendered frr.conf applied to each alone, `vtysh -d`). The FRR
side is the same for both: bgpd redistributes staticd routes (the gRPC build
serves the vtysh case too; its staticd module is then unused).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import yaml

from frrctl.inventory import parse_inventory
from frrctl.lab.netns import vtysh_load
from frrctl.render import render_host

from .conftest import HOSTNAME, MAX_PREFIXES, Lab, grpc_skip_reason, inventory, make_lab, needs_lab

pytestmark = [
    needs_lab,
    pytest.mark.lab,
    pytest.mark.skipif(bool(grpc_skip_reason()), reason=grpc_skip_reason() or ""),
]

STAY = ["192.0.2.30/32", "192.0.2.31/32", "2001:db8:100::80/128"]
GOES = "192.0.2.34/32"
GOES6 = "2001:db8:100::84/128"
NEW = "192.0.2.36/32"
NEW6 = "2001:db8:100::86/128"
BOUND = 30.0  # zclient reconnect 10 s + stale confirmation 3 s + rounds of 1 s


OSPF_UPLINK = {"interface": "eth-ospf", "addresses": ["198.18.0.4/31"],
               "ospf": {"area": 1}, "ospf6": {"area": 1}}  # fmt: skip


def add_ospf(lab: Lab) -> None:
    """Make the lab's host a vtysh BGP + OSPF host: the inventory gets an OSPF
    uplink, ospfd and ospf6d start with the rendered config applied to each."""
    data = inventory(MAX_PREFIXES, "vtysh")
    data["hosts"][0]["uplinks"].append(OSPF_UPLINK)
    lab.inventory.write_text(yaml.safe_dump(data))
    for cmd in (
        ["link", "add", "eth-ospf", "type", "veth", "peer", "name", "eth-ospf-p"],
        ["addr", "add", "198.18.0.4/31", "dev", "eth-ospf"],
        ["link", "set", "eth-ospf", "up"],
        ["link", "set", "eth-ospf-p", "up"],
    ):
        lab.ip(*cmd)
    fleet = parse_inventory(data)
    conf = lab.workdir / "frr.conf"
    conf.write_text(render_host(fleet, fleet.host(HOSTNAME))["frr.conf"])
    for daemon in ("ospfd", "ospf6d"):
        lab.host.start(daemon, "hostname fg4-dhost\n")
        vtysh_load(lab.host.name, lab.host.vtydir, conf, daemon)


@pytest.fixture(scope="module", params=["grpc", "vtysh"])
def glab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    labs = make_lab("grpc")  # bgpd redistributes staticd routes: both drivers' FRR side
    lab = next(labs)
    try:
        if request.param == "vtysh":
            add_ospf(lab)
        yield lab
    finally:
        labs.close()


def test_the_host_runs_the_driver_under_test(glab: Lab, request: pytest.FixtureRequest) -> None:
    """vtysh: the announcer is StaticdVtyDriver serving BGP and both OSPFs."""
    data = yaml.safe_load(glab.inventory.read_text())
    want = "vtysh" if "vtysh" in request.node.name else "grpc"
    assert data["hosts"][0]["controller"]["driver"] == want
    if want == "vtysh":
        assert "redistribute static route-map static-cloud" in glab.host.vtysh(
            "show running-config ospfd"
        )
        assert "ospf6 router-id" in glab.host.vtysh("show running-config ospf6d")


def _first(lab: Lab, kind: str, prefix: str, since: int) -> float | None:
    for event in lab.events()[since:]:
        if event.kind == kind and event.prefix == prefix:
            return event.time
    return None


def test_zebra_restart_then_withdraw_and_announce(
    glab: Lab, request: pytest.FixtureRequest
) -> None:
    lab = glab
    for prefix in (*STAY, GOES, GOES6):
        lab.add_route(prefix)
    daemon = lab.start_daemon()
    lab.wait_peer(lambda got: {*STAY, GOES, GOES6} <= set(got))
    mark = lab.mark()
    restarted = time.time()
    lab.restart_zebra()
    lab.del_route(GOES)
    lab.del_route(GOES6)
    lab.add_route(NEW)
    lab.add_route(NEW6)
    want_gone = {GOES, GOES6}
    lab.wait_peer(
        lambda got: not want_gone & set(got) and {*STAY, NEW, NEW6} <= set(got), timeout=BOUND
    )
    times = {
        "withdraw v4": _first(lab, "withdraw", GOES, mark),
        "withdraw v6": _first(lab, "withdraw", GOES6, mark),
        "new v4": _first(lab, "announce", NEW, mark),
        "new v6": _first(lab, "announce", NEW6, mark),
    }
    print({k: round(v - restarted, 2) if v else None for k, v in times.items()})
    after = lab.events()[mark:]
    assert not [e for e in after if e.kind == "down"], "the BGP session flapped"
    flapped = [e.prefix for e in after if e.kind == "withdraw" and e.prefix in STAY]
    assert not flapped, f"withdrawn although it stays: {flapped}"
    # no whole-table storm: what stays is announced again at most once (implicit)
    again = [e.prefix for e in after if e.kind == "announce" and e.prefix in STAY]
    assert len(again) <= len(STAY), again
    log = daemon.log.read_text()
    # the repair of the driver under test (vtysh on an OSPF host: StaticdVtyDriver)
    driver = "staticd-vty" if "vtysh" in request.node.name else "grpc"
    assert f"through zebra ({driver} driver)" in log, log[-3000:]
    rounds = log.count("withdrawing them through zebra")
    print("withdraw_stale rounds:", rounds)  # one per second until bgpd is back (~10 s)
    assert rounds >= 1
    assert "ALERT: bgpd still announces" not in log
    # registered again for good: a later withdraw and a later announcement go
    # through as without a restart (well within the 1 s rounds of the window)
    mark = lab.mark()
    started = time.monotonic()
    lab.del_route(NEW)
    lab.add_route("192.0.2.39/32")
    lab.wait_peer(lambda got: NEW not in got and "192.0.2.39/32" in got, timeout=5)
    print("later change at the peer after", round(time.monotonic() - started, 2), "s")
    assert not [e for e in lab.events()[mark:] if e.kind == "withdraw" and e.prefix in STAY]
    for prefix in (NEW6, "192.0.2.39/32"):
        lab.del_route(prefix)
    lab.wait_peer(lambda got: not {NEW6, "192.0.2.39/32"} & set(got), timeout=5)
