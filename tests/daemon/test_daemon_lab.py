"""`frrctl daemon` against real FRR and a real ExaBGP peer, with both drivers.

Every test checks what the peer actually received, including that nothing
that must not be announced was announced, even for a moment, and (for the
restart tests) that nothing that stays valid was withdrawn.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from frrctl.frr.netns import connect_in_netns

from .conftest import GRPC_PORT, GSHUT, MAX_PREFIXES, Lab, needs_lab

pytestmark = [needs_lab, pytest.mark.lab]

GOOD = ["192.0.2.30/32", "2001:db8:100::80/128"]
# Each must never reach the peer: outside the pools, other interface, not a
# host route, blackhole on the bridge's behalf.
BAD = {
    "203.0.113.5/32": "outside-pools",
    "192.0.2.77/32": "other-interface",
    "192.0.2.64/28": "not-host-route",
}


@pytest.fixture(scope="module")
def running(lab: Lab) -> Iterator[Lab]:
    """The daemon, started once for the module (tests that restart it restore it),
    with the GOOD routes in the kernel (tests that remove them restore them)."""
    for prefix in GOOD:
        lab.add_route(prefix)
    lab.start_daemon()
    yield lab
    for daemon in lab.daemons:
        daemon.stop()


def never_announced(lab: Lab, prefixes: list[str]) -> None:
    seen = {e.prefix for e in lab.events() if e.kind == "announce"}
    assert not seen & set(prefixes), f"announced although forbidden: {seen & set(prefixes)}"


def status_by_prefix(lab: Lab) -> dict[str, dict[str, object]]:
    return {item["prefix"]: item for item in lab.status()["prefixes"]}


def wait(cond: Callable[[], object], timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_announces_what_policy_allows_and_nothing_else(running: Lab) -> None:
    lab = running
    lab.add_route("203.0.113.5/32")
    lab.add_route("192.0.2.77/32", dev="other0")
    lab.add_route("192.0.2.64/28")
    for prefix in GOOD:
        lab.add_route(prefix)
    lab.wait_peer(lambda got: set(GOOD) <= set(got))
    status = status_by_prefix(lab)
    for prefix in GOOD:
        item = status[prefix]
        assert item["verdict"] == "announce" and item["in_kernel"] and item["in_frr"]
        assert item["advertised_to"] == ["198.18.0.3"], item
    for prefix, code in BAD.items():
        assert status[prefix]["verdict"] == code, status[prefix]
        assert not status[prefix]["in_frr"]
    # the CLI shows the same, as a table and as JSON
    table = lab.cli("status").stdout
    assert "192.0.2.30/32" in table and "outside-pools" in table
    as_json = json.loads(lab.cli("status", "--json").stdout)
    assert as_json["driver"] == lab.driver and as_json["frr_up"] is True
    time.sleep(1.5)  # the gRPC gate's route-map delay-timer is 1 s
    never_announced(lab, list(BAD))


def test_route_removed_is_withdrawn(running: Lab) -> None:
    lab = running
    lab.add_route("192.0.2.31/32")
    lab.wait_peer(lambda got: "192.0.2.31/32" in got)
    lab.del_route("192.0.2.31/32")
    lab.wait_peer(lambda got: "192.0.2.31/32" not in got)
    assert not status_by_prefix(lab).get("192.0.2.31/32", {}).get("in_frr")


def test_route_moved_to_other_interface_is_withdrawn(running: Lab) -> None:
    lab = running
    lab.add_route("192.0.2.32/32")
    lab.wait_peer(lambda got: "192.0.2.32/32" in got)
    lab.add_route("192.0.2.32/32", dev="other0")  # `ip route replace` onto other0
    lab.wait_peer(lambda got: "192.0.2.32/32" not in got)
    assert status_by_prefix(lab)["192.0.2.32/32"]["verdict"] == "other-interface"
    lab.del_route("192.0.2.32/32", dev="other0")


def test_hold_and_release(running: Lab) -> None:
    lab = running
    lab.cli("hold", "192.0.2.33")
    lab.add_route("192.0.2.33/32")
    lab.add_route("192.0.2.34/32")
    lab.wait_peer(lambda got: "192.0.2.34/32" in got)
    time.sleep(1.5)
    never_announced(lab, ["192.0.2.33/32"])
    assert status_by_prefix(lab)["192.0.2.33/32"]["verdict"] == "held"
    lab.cli("release", "192.0.2.33/32")
    lab.wait_peer(lambda got: "192.0.2.33/32" in got)
    lab.cli("hold", "192.0.2.34/32")  # a hold withdraws an announced prefix
    lab.wait_peer(lambda got: "192.0.2.34/32" not in got)
    lab.cli("release", "--all")
    lab.wait_peer(lambda got: "192.0.2.34/32" in got)
    bad = lab.cli("hold", "192.0.2.0/24", check=False)
    assert bad.returncode == 2 and "not a host route" in bad.stderr
    for prefix in ("192.0.2.33/32", "192.0.2.34/32"):
        lab.del_route(prefix)


def test_drain_graceful_and_undrain(running: Lab) -> None:
    lab = running
    lab.wait_peer(lambda got: set(GOOD) <= set(got))
    lab.cli("drain", "--graceful")
    lab.wait_peer(lambda got: all(GSHUT in [list(c) for c in got[p].communities] for p in GOOD))
    assert lab.status()["drain"] == "graceful"
    lab.cli("drain")
    lab.wait_peer(lambda got: not set(GOOD) & set(got))
    assert status_by_prefix(lab)[GOOD[0]]["verdict"] == "drained"
    lab.cli("undrain")
    lab.wait_peer(
        lambda got: (
            set(GOOD) <= set(got)
            and all(GSHUT not in [list(c) for c in got[p].communities] for p in GOOD)
        )
    )


def test_maximum_announces_nothing_new_and_alerts(running: Lab) -> None:
    lab = running
    before = {p for p, i in status_by_prefix(lab).items() if i["in_frr"]}
    extra = [f"198.18.100.{i}/32" for i in range(1, MAX_PREFIXES + 6)]
    lab.batch([f"route replace {p} dev cloudbr0" for p in extra])
    wait(lambda: lab.status(peers=False)["announced_count"] == MAX_PREFIXES, what="maximum")
    status = lab.status(peers=False)
    assert status["alerts"] and "maximum" in status["alerts"][0]
    items = {i["prefix"]: i for i in status["prefixes"]}
    over = [p for p in extra if items[p]["verdict"] == "over-maximum"]
    assert len(over) == len(before) + len(extra) - MAX_PREFIXES
    assert all(items[p]["in_frr"] for p in before)  # announced ones keep their place
    metrics = scrape(lab)
    assert f"frrctl_over_maximum_prefixes {float(len(over))}" in metrics
    time.sleep(1.5)
    never_announced(lab, over)
    lab.batch([f"route del {p} dev cloudbr0" for p in extra])
    wait(lambda: lab.status(peers=False)["announced_count"] == len(before), what="withdrawals")
    lab.wait_peer(lambda got: not set(extra) & set(got))


def scrape(lab: Lab) -> str:
    sock = connect_in_netns(lab.host.name, "127.0.0.1", 9342)
    try:
        sock.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    return data.decode()


def test_metrics_on_localhost(running: Lab) -> None:
    text = scrape(running)
    for name in (
        'frrctl_prefixes{verdict="announce"}',
        "frrctl_batch_seconds_bucket",
        'frrctl_netlink_resyncs_total{cause="initial"}',
        "frrctl_frr_up 1.0",
        "frrctl_announced_prefixes",
    ):
        assert name in text, name


def test_bgpd_killed_and_restarted_reannounces(running: Lab) -> None:
    lab = running
    lab.wait_peer(lambda got: set(GOOD) <= set(got))
    lab.host.kill("bgpd")
    lab.add_route("192.0.2.35/32")  # changes while FRR is away are not lost
    time.sleep(1.0)
    daemon = lab.daemons[-1]
    assert daemon.alive()
    status = lab.status(peers=False)
    assert status["frr_up"] is False or "bgpd" in status["frr_daemons_down"]
    lab.start_bgpd()
    back = time.monotonic()
    want = [*GOOD, "192.0.2.35/32"]
    wait(lambda: set(want) <= lab.bgp_rib(), what="re-announce in bgpd")
    in_bgpd = time.monotonic() - back
    lab.wait_established()
    lab.wait_peer(lambda got: set(want) <= set(got), timeout=30)
    at_peer = time.monotonic() - back
    print(
        f"\n[{lab.driver}] bgpd restart: announced in bgpd {in_bgpd * 1000:.0f} ms after its "
        f"start returned; at the peer after {at_peer:.2f} s (includes the BGP session setup)"
    )
    assert "frr-unavailable" in daemon.log.read_text() or "closed its vty" in daemon.log.read_text()
    lab.del_route("192.0.2.35/32")
    lab.wait_peer(lambda got: "192.0.2.35/32" not in got)


def test_zebra_restart_recovers(running: Lab) -> None:
    lab = running
    # FRR 8.4's bgpd reconnects to a restarted zebra after ~8 s but registers
    # neither its `network` statements (vtysh driver) nor its kernel
    # redistribution (gRPC gate) again: the daemon's repair must notice and fix
    # both, or 192.0.2.36 is never announced.
    lab.add_route("192.0.2.34/32")
    lab.wait_peer(lambda got: {*GOOD, "192.0.2.34/32"} <= set(got))
    lab.host.kill("zebra")
    lab.host.start("zebra", "hostname fg4-dhost\n")
    lab.add_route("192.0.2.36/32")
    lab.del_route("192.0.2.34/32")  # gone while bgpd is not registered with zebra
    lab.wait_peer(lambda got: {*GOOD, "192.0.2.36/32"} <= set(got), timeout=30)
    daemon = lab.daemons[-1]
    assert daemon.alive()
    if lab.driver == "vtysh":  # grpc: registered again every round, it may lack nothing
        assert "bgpd lacks announced prefixes" in daemon.log.read_text()
    # vtysh: its `network` statement goes; grpc: bgpd, registered again, is
    # told through zebra (StaticdDriver.withdraw_stale)
    lab.wait_peer(lambda got: "192.0.2.34/32" not in got and set(GOOD) <= set(got), timeout=30)
    lab.add_route("192.0.2.39/32")  # bgpd follows the kernel again, not just once
    lab.wait_peer(lambda got: "192.0.2.39/32" in got)
    lab.del_route("192.0.2.39/32")
    lab.del_route("192.0.2.36/32")
    lab.wait_peer(lambda got: "192.0.2.36/32" not in got, timeout=30)


def test_daemon_killed_and_restarted_withdraws_nothing_valid(running: Lab) -> None:
    lab = running
    lab.add_route("192.0.2.37/32")
    keep = [*GOOD, "192.0.2.37/32"]
    lab.wait_peer(lambda got: set(keep) <= set(got))
    lab.add_route("192.0.2.38/32")
    lab.wait_peer(lambda got: "192.0.2.38/32" in got)
    time.sleep(1.0)
    mark = lab.mark()
    lab.daemons[-1].stop(signal.SIGKILL)
    # while it is away: one route goes (stale), one comes (new)
    lab.del_route("192.0.2.38/32")
    lab.add_route("192.0.2.39/32")
    if lab.driver == "vtysh":
        # bgpd's import-check withdraws a `network` whose route went: the stale
        # one may already be gone; the daemon must remove the statement anyway
        pass
    time.sleep(1.0)
    lab.start_daemon()
    lab.wait_peer(lambda got: "192.0.2.39/32" in got and "192.0.2.38/32" not in got)
    wait(lambda: "192.0.2.38/32" not in lab.networks(), what="stale network statement removed")
    time.sleep(1.5)
    after = lab.events()[mark:]
    withdrawn = {e.prefix for e in after if e.kind == "withdraw"}
    assert not withdrawn & set(keep), f"valid prefixes withdrawn across the restart: {withdrawn}"
    assert not any(e.kind == "down" for e in after)
    lab.del_route("192.0.2.37/32")
    lab.del_route("192.0.2.39/32")
    lab.wait_peer(lambda got: not {"192.0.2.37/32", "192.0.2.39/32"} & set(got))


def test_sigterm_leaves_announcements_in_place(running: Lab) -> None:
    lab = running
    lab.wait_peer(lambda got: set(GOOD) <= set(got))
    mark = lab.mark()
    lab.daemons[-1].stop(signal.SIGTERM)
    assert not (lab.state_dir / "control.sock").exists()
    time.sleep(1.5)
    assert not [e for e in lab.events()[mark:] if e.kind == "withdraw" and e.prefix in GOOD]
    down = lab.cli("status", check=False)
    assert down.returncode == 1 and "not running" in down.stderr
    lab.start_daemon()
    lab.wait_peer(lambda got: set(GOOD) <= set(got))


def test_operator_state_applies_while_daemon_is_down(running: Lab) -> None:
    lab = running
    lab.daemons[-1].stop(signal.SIGTERM)
    out = lab.cli("drain").stdout
    assert "not running" in out
    lab.start_daemon()
    lab.wait_peer(lambda got: not set(GOOD) & set(got))
    lab.cli("undrain")
    lab.wait_peer(lambda got: set(GOOD) <= set(got))


def test_grpc_port_closed_to_the_outside(running: Lab) -> None:
    lab = running
    if lab.driver != "grpc":
        pytest.skip("only the gRPC drivers open a gRPC port")
    # from the host itself: open (the daemon uses it)
    connect_in_netns(lab.host.name, "127.0.0.1", GRPC_PORT, timeout=5).close()
    # from the upstream side (the peer's namespace): dropped by the daemon's guard
    with pytest.raises(OSError):
        connect_in_netns(lab.peer_ns, "198.18.0.2", GRPC_PORT, timeout=2).close()
    rules = lab.host.ns_exec(["nft", "list", "table", "inet", "frrctl_grpc_guard"]).stdout
    assert f"tcp dport {GRPC_PORT}" in rules and "drop" in rules


def test_sighup_reloads_the_operator_state(running: Lab) -> None:
    lab = running
    lab.wait_peer(lambda got: set(GOOD) <= set(got))
    (lab.state_dir / "operator.json").write_text(
        json.dumps({"drain": "none", "held": ["192.0.2.30/32"]})
    )
    lab.daemons[-1].proc.send_signal(signal.SIGHUP)  # `ip netns exec` execs: same pid
    lab.wait_peer(lambda got: "192.0.2.30/32" not in got)
    (lab.state_dir / "operator.json").write_text(json.dumps({"drain": "none", "held": []}))
    lab.daemons[-1].proc.send_signal(signal.SIGHUP)
    lab.wait_peer(lambda got: set(GOOD) <= set(got))


@pytest.fixture
def neighbor_lab() -> Iterator[Lab]:
    from .conftest import make_lab

    yield from make_lab("vtysh", require_neighbor=True)


def test_require_neighbor_follows_permanent_neighbours(neighbor_lab: Lab) -> None:
    lab = neighbor_lab
    lab.add_route("192.0.2.40/32")
    lab.add_route("192.0.2.41/32")
    lab.ip("neigh", "replace", "192.0.2.41", "lladdr", "52:02:45:76:d2:35", "dev", "cloudbr0",
           "nud", "permanent")  # fmt: skip
    lab.start_daemon()
    lab.wait_peer(lambda got: "192.0.2.41/32" in got)
    items = status_by_prefix(lab)
    assert items["192.0.2.40/32"]["verdict"] == "no-permanent-neighbor"
    lab.ip("neigh", "replace", "192.0.2.40", "lladdr", "52:02:45:76:d2:36", "dev", "cloudbr0",
           "nud", "permanent")  # fmt: skip
    lab.wait_peer(lambda got: {"192.0.2.40/32", "192.0.2.41/32"} <= set(got))
    lab.ip("neigh", "del", "192.0.2.41", "dev", "cloudbr0")
    lab.wait_peer(lambda got: "192.0.2.41/32" not in got and "192.0.2.40/32" in got)
    # a non-permanent entry does not count
    lab.ip("neigh", "replace", "192.0.2.41", "lladdr", "52:02:45:76:d2:35", "dev", "cloudbr0",
           "nud", "reachable")  # fmt: skip
    time.sleep(1.0)
    assert status_by_prefix(lab)["192.0.2.41/32"]["verdict"] == "no-permanent-neighbor"


def test_grpc_refuses_a_metric_0_route_and_says_how_to_fix_it(running: Lab) -> None:
    """Issue 11 2.3: the seed's `ip route add ... dev cloudbr0` (metric 0) would
    outrank the driver's static route in zebra: refused, with the fix in status."""
    lab = running
    if lab.driver != "grpc":
        pytest.skip("only the grpc (staticd) driver needs the metric")
    lab.ip("route", "add", "192.0.2.45/32", "dev", "cloudbr0")  # metric 0
    wait(lambda: "192.0.2.45/32" in status_by_prefix(lab), what="verdict for 192.0.2.45")
    item = status_by_prefix(lab)["192.0.2.45/32"]
    assert item["verdict"] == "kernel-metric" and not item["in_frr"]
    reason = str(item["reason"])
    assert "metric 0 outranks" in reason and "metric 33554432" in reason
    assert "frrctl instance plug" in reason
    out = lab.cli("status").stdout
    assert "192.0.2.45/32" in out and "frrctl instance plug" in out
    never_announced(lab, ["192.0.2.45/32"])
    lab.ip("route", "del", "192.0.2.45/32", "dev", "cloudbr0")
    lab.add_route("192.0.2.45/32")  # the fix: metric 2 << 24
    lab.wait_peer(lambda got: "192.0.2.45/32" in got)
    lab.del_route("192.0.2.45/32")
    lab.wait_peer(lambda got: "192.0.2.45/32" not in got)
