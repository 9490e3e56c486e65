"""Every back end behind the one announcer interface, against real FRR rendered
from an inventory: announce, withdraw, read back, apply idempotently, recover
after a restart of the daemon that holds the announcements.

Every back end is driven through read/apply/reconcile: bgpd `network`
statements (vtysh on a BGP host) and staticd routes (grpc; vtysh on an OSPFv2 +
OSPFv3 host, over staticd's vty). What a BGP host announces is checked in
bgpd's own table, what an OSPF host announces in ospfd's and ospf6d's
databases. Run the gRPC back ends with FRRCTL_FRR_GRPC set.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from frrctl.frr.base import AnnounceDriver
from frrctl.policy import parse_prefix
from frrctl.pools import IPNetwork

from .conftest import Host, wait_for

pytestmark = [pytest.mark.lab]

P = parse_prefix
V4, V6 = P("192.0.2.30/32"), P("2001:db8:100::30/128")
SECOND = P("192.0.2.31/32")
THIRD = P("192.0.2.32/32")  # plugged after a zebra restart


def bgp_table(host: Host) -> dict[str, Any]:
    """bgpd's local table: prefix -> its paths."""
    out: dict[str, Any] = {}
    for afi in ("ipv4", "ipv6"):
        out |= json.loads(host.vtysh(f"show bgp {afi} unicast json") or "{}").get("routes", {})
    return out


def ospf_lsas(host: Host) -> set[str]:
    """Live self-originated external prefixes in ospfd's and ospf6d's databases."""
    live = set()
    for line in host.vtysh("show ip ospf database").splitlines():
        w = line.split()
        if len(w) >= 7 and w[1] == "198.18.0.2" and w[5] in ("E1", "E2") and w[2] != "3600":
            live.add(w[6])
    for line in host.vtysh("show ipv6 ospf6 database").splitlines():
        w = line.split()
        mine = len(w) >= 6 and w[0] in ("Type7", "AS-Ext") and w[2] == "198.18.0.2"
        if mine and w[3] != "3600":  # 3600: withdrawn (MaxAge)
            live.add(w[5])
    return live


def seen(host: Host, want: set[IPNetwork], timeout: float = 15.0, ospf: bool = True) -> None:
    """Each protocol the host runs announces exactly `want` (of the prefixes
    this suite uses); `ospf=False`: bgpd's table only."""
    ours = {str(p) for p in (V4, V6, SECOND, THIRD)}
    runs = ((bgp_table, host.backend.bgp), (ospf_lsas, host.backend.ospf and ospf))
    tables = [table for table, on in runs if on]
    wanted = {str(p) for p in want}
    last: set[str] = set()

    def check() -> bool:
        nonlocal last
        for table in tables:
            last = set(table(host)) & ours
            if last != wanted:
                return False
        return True

    try:
        wait_for(f"{sorted(wanted)} announced", check, timeout)
    except AssertionError:
        raise AssertionError(f"announced {sorted(last)}, wanted {sorted(wanted)}") from None


def bgp_only(host: Host) -> None:
    if not host.backend.bgp:
        pytest.skip("OSPF has no GRACEFUL_SHUTDOWN community")


@pytest.fixture(scope="module")
def announcer(host: Host) -> AnnounceDriver:
    for prefix in (V4, V6, SECOND):
        host.add_route(str(prefix))
    return host.announcer()


def test_announce_reads_back_and_reaches_the_protocol(
    host: Host, announcer: AnnounceDriver
) -> None:
    result = announcer.reconcile({V4: False, V6: False})
    assert result.announced == {V4: False, V6: False} and result.plan
    assert announcer.read() == {V4: False, V6: False}
    seen(host, {V4, V6})


def test_withdraw_reads_back_and_leaves_the_protocol(host: Host, announcer: AnnounceDriver) -> None:
    announcer.reconcile({V6: False})
    assert announcer.read() == {V6: False}
    seen(host, {V6})


def test_graceful_flag_reads_back(host: Host, announcer: AnnounceDriver) -> None:
    """As a graceful drain sets it: on every prefix (the grpc gate marks all or none)."""
    bgp_only(host)
    announcer.reconcile({V6: True, SECOND: True})
    assert announcer.read() == {V6: True, SECOND: True}
    seen(host, {V6, SECOND})
    announcer.reconcile({V6: False})
    assert announcer.read() == {V6: False}
    seen(host, {V6})


def test_apply_is_idempotent(host: Host, announcer: AnnounceDriver) -> None:
    state = {V6: False}
    announcer.reconcile(state)
    again = announcer.reconcile(state)
    assert not again.plan and again.announced == state  # nothing to do: nothing applied
    assert not announcer.compare(state)
    seen(host, {V6})


def test_drain_withdraws_everything_and_undrain_restores(
    host: Host, announcer: AnnounceDriver
) -> None:
    announcer.reconcile({})
    assert announcer.read() == {}
    seen(host, set())
    announcer.reconcile({V4: False, V6: False})
    seen(host, {V4, V6})


def test_a_restarted_daemon_is_recovered_by_a_fresh_announcer(host: Host) -> None:
    """The daemon holding the announcements restarts with the rendered config:
    a new announcer (a restarted frrctl) reads what is left and restores it."""
    host.restart("bgpd" if host.backend.name == "vtysh" else "staticd")
    fresh = host.announcer()
    wait_for("bgpd's config loaded", fresh.config_loaded)
    wait_for("FRR answers", lambda: _reads(fresh))
    assert fresh.read() != {V4: False, V6: False}  # the restart lost them
    fresh.reconcile({V4: False, V6: False})
    assert fresh.read() == {V4: False, V6: False}
    seen(host, {V4, V6}, timeout=25)


def test_restarted_ospf_daemons_redistribute_staticd_routes_again(host: Host) -> None:
    """ospfd and ospf6d restart with the rendered config: staticd still holds the
    routes, so a fresh announcer has nothing to apply and both announce again."""
    if not host.backend.ospf:
        pytest.skip("an OSPF host")
    announcer = host.announcer()
    announcer.reconcile({V4: False, V6: False})
    seen(host, {V4, V6})
    for daemon in ("ospfd", "ospf6d"):
        host.restart(daemon)
    fresh = host.announcer()
    wait_for("FRR answers", lambda: _reads(fresh))
    assert not fresh.reconcile({V4: False, V6: False}).plan
    seen(host, {V4, V6}, timeout=25)


def test_ospf_externals_survive_a_zebra_restart(host: Host) -> None:
    """zebra restarts with the rendered config applied to it alone (watchfrr):
    ospfd and ospf6d keep what they originate all through the window. The whole
    frr.conf into every daemon entered `ospf6 router-id` again, which resets
    ospf6d's redistribution: FRR 8.4.4's ospf6d then flushed its externals for
    good (restart_in did that). Second to last: it leaves the OSPF daemons deaf
    to routes added later (FRR 8.4.4)."""
    if not host.backend.ospf:
        pytest.skip("an OSPF host")
    host.announcer().reconcile({V4: False, V6: False})
    seen(host, {V4, V6})
    host.restart("zebra")
    want = {str(V4), str(V6)}
    deadline = time.monotonic() + 15  # past the zclients' reconnect (10 s)
    while time.monotonic() < deadline:
        live = ospf_lsas(host) & want
        assert live == want, f"flushed after a zebra restart: {sorted(want - live)}"
        time.sleep(0.2)


def test_zebra_restart_withdraws_through_zebra_and_announces_later_ones(host: Host) -> None:
    """Last (it leaves ospfd and ospf6d as FRR 8.4.4 leaves them after a zebra
    restart: deaf to routes added later). zebra restarts with the rendered
    config applied to it alone; a prefix withdrawn before bgpd is registered
    with the new zebra stays in bgpd until the announcer passes it through
    zebra again (withdraw_stale), one plugged later reaches bgpd once it is
    registered again (reregister, as the daemon's repair rounds do), and what
    stays never leaves bgpd's table."""
    if not host.backend.bgp:
        pytest.skip("a BGP host")
    announcer = host.announcer()
    if host.backend.name == "vtysh":
        pytest.skip("bgpd `network` statements: a withdraw never goes through zebra")
    announcer.reconcile({V4: False, V6: False, SECOND: False})

    def registered() -> bool:
        # bgp-ospf: the zebra restart of the OSPF case left bgpd registered for
        # nothing; the daemon's repair rounds register it again (reregister)
        announcer.reregister([V4, V6, SECOND])
        return {str(V4), str(V6), str(SECOND)} <= set(bgp_table(host))

    wait_for("bgpd registered with zebra", registered, timeout=30)
    seen(host, {V4, V6, SECOND}, ospf=False)  # ospfd and ospf6d: deaf since (FRR 8.4.4)
    host.restart("zebra")
    announcer.reconcile({V4: False, V6: False})  # staticd is not connected to the new zebra yet
    host.add_route(str(THIRD))
    started, rounds, withdrawn = time.monotonic(), 0, 0
    while True:
        table = set(bgp_table(host))
        assert {str(V4), str(V6)} <= table, f"what stays left bgpd's table: {sorted(table)}"
        if str(SECOND) not in table:
            break
        assert time.monotonic() - started < 30, "the stale prefix stayed in bgpd"
        announcer.reregister([V4, V6])
        check = announcer.check_table()
        assert check is not None
        if SECOND in check.stale:
            assert announcer.withdraw_stale([SECOND])
            withdrawn += 1
        rounds += 1
        time.sleep(1.0)
    print(f"stale prefix withdrawn after {time.monotonic() - started:.1f} s, "
          f"{rounds} rounds, {withdrawn} withdraw_stale calls")  # fmt: skip
    assert withdrawn >= 1
    announcer.reconcile({V4: False, V6: False, THIRD: False})
    seen(host, {V4, V6, THIRD}, timeout=5, ospf=False)  # registered again: at once


def _reads(announcer: AnnounceDriver) -> bool:
    try:
        announcer.read()
    except Exception:
        return False
    return True
