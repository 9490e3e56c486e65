"""grpc driver, zebra restart, against real FRR (gRPC build) and an ExaBGP peer.

FRR 8.4: every zclient frees its redistribution registrations when zebra goes
(lib/zclient.c zclient_stop) and reconnects 10 s later; staticd then installs
its routes into the new zebra again (zebra_connected -> static_fixup_vrf_ids),
but bgpd is registered for nothing. A route withdrawn meanwhile stayed in bgpd
and at the peer (the new zebra never had it), and a new one never reached bgpd.
The daemon registers bgpd again every repair round and withdraws stale routes
through zebra (StaticdDriver.withdraw_stale): the peer must see the withdraw
and the new prefix, and no withdraw of anything that stays.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from .conftest import Lab, grpc_skip_reason, make_lab, needs_lab

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


@pytest.fixture(scope="module")
def glab() -> Iterator[Lab]:
    yield from make_lab("grpc")


def _first(lab: Lab, kind: str, prefix: str, since: int) -> float | None:
    for event in lab.events()[since:]:
        if event.kind == kind and event.prefix == prefix:
            return event.time
    return None


def test_zebra_restart_then_withdraw_and_announce(glab: Lab) -> None:
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
