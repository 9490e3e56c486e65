"""The grpc (staticd) driver against real FRR (gRPC build) and an ExaBGP peer:
the bridge's carrier, and staticd restarts.

zebra keeps a static route to an interface without carrier inactive, so on a
bridge with no port up a staticd route is never redistributed: the daemon must
refuse such prefixes with a reason in `frrctl status` (not announce them into
nothing), and announce them as soon as the first port comes up. A killed
staticd takes every route with it: the daemon must notice (status unhealthy)
and re-apply as soon as it is back, not at the next periodic verify.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from .conftest import Lab, grpc_skip_reason, make_lab, needs_lab

pytestmark = [
    needs_lab,
    pytest.mark.lab,
    pytest.mark.skipif(bool(grpc_skip_reason()), reason=grpc_skip_reason() or ""),
]

VERIFY = "60"  # the periodic verify must not be what repairs anything here
BEFORE = ["192.0.2.60/32", "2001:db8:100::60/128"]  # announced before the carrier goes
DURING = ["192.0.2.61/32", "2001:db8:100::61/128"]  # plugged while there is none


@pytest.fixture(scope="module")
def glab() -> Iterator[Lab]:
    yield from make_lab("grpc")


def wait(cond: Callable[[], object], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - start


def status(lab: Lab) -> dict[str, object]:
    return dict(json.loads(lab.cli("status", "--json", "--no-peers").stdout))


def verdicts(lab: Lab) -> dict[str, tuple[str, str]]:
    items = status(lab)["prefixes"]
    assert isinstance(items, list)
    return {p["prefix"]: (p["verdict"], p["reason"]) for p in items}


def test_no_carrier_is_refused_with_the_reason_and_announced_when_a_port_comes_up(
    glab: Lab,
) -> None:
    lab = glab
    for prefix in BEFORE:
        lab.add_route(prefix)
    daemon = lab.start_daemon("--verify-interval", VERIFY)
    try:
        lab.wait_peer(lambda got: set(BEFORE) <= set(got))
        lab.ip("link", "set", "vm0", "down")  # the bridge's only port: no carrier
        for prefix in DURING:
            lab.add_route(prefix)
        want = {*BEFORE, *DURING}
        wait(lambda: {verdicts(lab).get(p, ("",))[0] for p in want} == {"no-carrier"}, 10,
             "no-carrier verdicts")  # fmt: skip
        got = verdicts(lab)
        for prefix in want:
            verdict, reason = got[prefix]
            assert verdict == "no-carrier", (prefix, got[prefix])
            assert reason.startswith("cloudbr0 has no carrier (no port up)"), reason
            assert "the VM's port must be up" in reason
        text = lab.cli("status", "--no-peers").stdout
        assert "no-carrier" in text and "cloudbr0 has no carrier" in text
        lab.wait_peer(lambda held: not want & set(held), timeout=10)
        time.sleep(1.0)  # nothing trickles out later either
        assert not want & set(lab.peer_has())
        assert "cloudbr0 lost carrier" in daemon.log.read_text()
        # the first port comes up: everything at the peer at once
        mark = lab.mark()
        started = time.time()
        lab.ip("link", "set", "vm0", "up")
        lab.wait_peer(lambda held: want <= set(held), timeout=5)
        arrived = {e.prefix: e.time for e in lab.events()[mark:] if e.kind == "announce"}
        took = max(arrived[p] for p in want) - started
        print(f"\ncarrier back -> all {len(want)} prefixes at the peer in {took * 1000:.0f} ms")
        assert took < 3, took  # far below the verify interval
        assert {verdicts(lab)[p][0] for p in want} == {"announce"}
    finally:
        lab.ip("link", "set", "vm0", "up")
        for prefix in (*BEFORE, *DURING):
            lab.del_route(prefix)
        daemon.stop()


STATICD = ["192.0.2.70/32", "192.0.2.71/32", "2001:db8:100::70/128"]


def test_staticd_restart_is_repaired_at_once_and_unhealthy_meanwhile(glab: Lab) -> None:
    lab = glab
    for prefix in STATICD:
        lab.add_route(prefix)
    daemon = lab.start_daemon("--verify-interval", VERIFY)
    try:
        lab.wait_peer(lambda got: set(STATICD) <= set(got))
        wait(lambda: status(lab)["healthy"], 10, "healthy")
        killed = time.monotonic()
        lab.host.kill("staticd")  # SIGKILL: zebra drops its routes, bgpd withdraws them
        seen = wait(lambda: not lab.status(peers=False)["healthy"], 5, "unhealthy")
        print(f"\nstaticd killed: status unhealthy after {seen * 1000:.0f} ms")
        t0 = time.monotonic()
        down = status(lab)  # `frrctl status --json`
        print(f"frrctl status --json while staticd is gone: {time.monotonic() - t0:.2f} s")
        assert not down["healthy"] and down["frr_daemons_down"] == ["staticd"], down
        lab.wait_peer(lambda got: not set(STATICD) & set(got), timeout=10)
        time.sleep(0.5)
        assert not status(lab)["healthy"]
        restarted = time.monotonic()
        lab.start_staticd()  # empty config, as watchfrr would start it
        lab.wait_peer(lambda got: set(STATICD) <= set(got), timeout=5)
        back = time.monotonic() - restarted
        print(f"staticd restarted: every prefix at the peer {back * 1000:.0f} ms after its start "
              f"({(time.monotonic() - killed):.2f} s after the kill)")  # fmt: skip
        assert back < 3, back
        wait(lambda: status(lab)["healthy"], 10, "healthy again")
        assert "FRR daemon(s) back: staticd" in daemon.log.read_text()
    finally:
        if "staticd" not in lab.host.pids:
            lab.start_staticd()
        for prefix in STATICD:
            lab.del_route(prefix)
        daemon.stop()
