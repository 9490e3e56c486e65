"""NetlinkWatcher in a real, throw-away network namespace."""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from frrctl.policy import parse_prefix
from frrctl.watch import KernelSnapshot, NetlinkWatcher

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
P = parse_prefix


class Netns:
    def __init__(self) -> None:
        self.name = f"fg4-{secrets.token_hex(3)}-watch"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def ip(self, *args: str, check: bool = True) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, "ip", *args], check=check, capture_output=True
        )

    def batch(self, tmp: Path, lines: list[str]) -> None:
        path = tmp / f"batch-{secrets.token_hex(2)}"
        path.write_text("".join(f"{line}\n" for line in lines))
        self.ip("-batch", str(path))

    def routes(self, family: str) -> set[str]:
        out = subprocess.run(
            ["ip", "netns", "exec", self.name, "ip", family, "route", "show", "dev", "cloudbr0"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        return {line.split()[0] for line in out.splitlines() if line and "/" not in line.split()[0]}

    def bridge(self) -> None:
        self.ip("link", "add", "cloudbr0", "type", "bridge")
        # the port survives a deleted bridge; then it only needs re-attaching
        self.ip("link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest", check=False)
        self.ip("link", "set", "vm0", "master", "cloudbr0", "up")
        self.ip("link", "set", "vm0-guest", "up")
        self.ip("addr", "add", "169.254.0.1/32", "dev", "cloudbr0")
        self.ip("link", "set", "cloudbr0", "up")

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def ns() -> Iterator[Netns]:
    netns = Netns()
    try:
        netns.bridge()
        yield netns
    finally:
        netns.close()


def host_routes(snap: KernelSnapshot) -> set[str]:
    return {
        str(r.prefix)
        for r in snap.routes
        if r.ifname == "cloudbr0" and r.prefix.prefixlen in (32, 128)
    }


def wait_for(watcher: NetlinkWatcher, cond, timeout: float = 5.0) -> KernelSnapshot:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = watcher.poll(0.2)
        if snap is not None and cond(snap):
            return snap
    raise AssertionError("watcher never reported the expected state")


def test_initial_dump_and_events(ns: Netns) -> None:
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0")
    ns.ip("-6", "route", "add", "2001:db8:100::80/128", "dev", "cloudbr0")
    ns.ip(
        "neigh",
        "add",
        "192.0.2.30",
        "lladdr",
        "52:02:45:76:d2:35",
        "dev",
        "cloudbr0",
        "nud",
        "permanent",
    )
    ns.ip("link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
    ns.ip("link", "set", "eth9", "up")
    ns.ip("link", "set", "eth9p", "up")
    ns.ip("route", "add", "203.0.113.9/32", "dev", "eth9")  # host route elsewhere: kept
    ns.ip("route", "add", "198.51.100.0/24", "dev", "eth9")  # not relevant: dropped
    with NetlinkWatcher(netns=ns.name) as watcher:
        snap = watcher.start()
        assert snap.bridge_up and snap.bridge_index
        assert host_routes(snap) == {"192.0.2.30/32", "2001:db8:100::80/128"}
        assert {str(r.prefix) for r in snap.routes if r.ifname == "eth9"} == {"203.0.113.9/32"}
        assert snap.permanent_neighbors == {ipaddress.ip_address("192.0.2.30")}
        assert "169.254.0.1/32" in snap.bridge_addresses
        assert watcher.poll(0.1) is None  # quiet

        ns.ip("route", "add", "192.0.2.31/32", "dev", "cloudbr0")
        ns.ip(
            "-6",
            "neigh",
            "add",
            "2001:db8:100::80",
            "lladdr",
            "52:02:45:76:d2:35",
            "dev",
            "cloudbr0",
            "nud",
            "permanent",
        )
        ns.ip("route", "del", "192.0.2.30/32", "dev", "cloudbr0")
        snap = wait_for(
            watcher,
            lambda s: (
                "192.0.2.31/32" in host_routes(s)
                and "192.0.2.30/32" not in host_routes(s)
                and len(s.permanent_neighbors) == 2
            ),
        )
        assert snap.cause == "events" and snap.generation == 1


def test_without_neighbours_only_routes_are_watched(ns: Netns) -> None:
    """neighbors=False (no require-neighbor): no neighbour dump and no neighbour
    events, so a burst of plugs costs half the messages."""
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0")
    neigh = ["neigh", "add", "192.0.2.30", "lladdr", "52:02:45:76:d2:35", "dev", "cloudbr0",
             "nud", "permanent"]  # fmt: skip
    ns.ip(*neigh)
    with NetlinkWatcher(netns=ns.name, neighbors=False) as watcher:
        snap = watcher.start()
        assert host_routes(snap) == {"192.0.2.30/32"}
        assert snap.permanent_neighbors == frozenset()
        ns.ip("neigh", "del", "192.0.2.30", "dev", "cloudbr0")
        ns.ip(*neigh)
        assert watcher.poll(0.3) is None  # neighbour changes are not even received
        ns.ip("route", "add", "192.0.2.31/32", "dev", "cloudbr0")
        snap = wait_for(watcher, lambda s: "192.0.2.31/32" in host_routes(s))
        assert snap.changed is not None and set(map(str, snap.changed)) == {"192.0.2.31/32"}


def test_burst_is_batched(ns: Netns, tmp_path: Path) -> None:
    with NetlinkWatcher(netns=ns.name, window=0.05, max_window=2.0) as watcher:
        watcher.start()
        lines = [f"route add 198.18.{i // 250}.{i % 250 + 1}/32 dev cloudbr0" for i in range(2000)]
        ns.batch(tmp_path, lines)
        snaps = []
        while True:
            snap = watcher.poll(1.0)
            if snap is None:
                break
            snaps.append(snap)
        assert len(host_routes(snaps[-1])) == 2000
        # batched: a handful of snapshots, not one per route (the exact count
        # depends on scheduling, so only the order of magnitude is checked)
        assert len(snaps) <= 50, len(snaps)
        print(f"2,000 routes reported in {len(snaps)} snapshot(s)")


def test_bridge_recreated_resyncs_without_stale_routes(ns: Netns) -> None:
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0")
    with NetlinkWatcher(netns=ns.name) as watcher:
        first = watcher.start()
        assert host_routes(first) == {"192.0.2.30/32"}
        ns.ip("link", "del", "cloudbr0")
        snap = wait_for(watcher, lambda s: s.bridge_index is None)
        assert snap.cause.startswith("resync") and host_routes(snap) == set()
        ns.bridge()
        ns.ip("route", "add", "192.0.2.40/32", "dev", "cloudbr0")
        snap = wait_for(watcher, lambda s: host_routes(s) == {"192.0.2.40/32"})
        assert snap.bridge_index != first.bridge_index


def test_bridge_down_resyncs(ns: Netns) -> None:
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0")
    with NetlinkWatcher(netns=ns.name) as watcher:
        watcher.start()
        ns.ip("link", "set", "cloudbr0", "down")  # IPv4 routes flushed silently
        snap = wait_for(watcher, lambda s: not s.bridge_up)
        assert "192.0.2.30/32" not in host_routes(snap)
        assert snap.cause.startswith("resync")


def test_overrun_enobufs_resyncs_to_the_truth(ns: Netns, tmp_path: Path) -> None:
    with NetlinkWatcher(netns=ns.name, rcvbuf=4096) as watcher:
        watcher.start()
        # Not reading while 5,000 routes change overruns the tiny buffer.
        v4 = [f"route add 198.18.{i // 250}.{i % 250 + 1}/32 dev cloudbr0" for i in range(3000)]
        v6 = [f"route add 2001:db8:1::{i:x}/128 dev cloudbr0" for i in range(1, 2001)]
        ns.batch(tmp_path, v4 + v6)  # ip infers the family per line
        snaps = []
        while (snap := watcher.poll(0.5)) is not None:
            snaps.append(snap)
        assert any("ENOBUFS" in s.cause for s in snaps), [s.cause for s in snaps]
        final = snaps[-1]
        truth = {f"{r}/32" for r in ns.routes("-4")} | {f"{r}/128" for r in ns.routes("-6")}
        assert host_routes(final) == truth
        assert len(truth) == 5000
        assert watcher.resyncs.get("initial dump") == 1


def test_route_replaced_onto_other_device(ns: Netns) -> None:
    ns.ip("link", "add", "eth9", "type", "veth", "peer", "name", "eth9p")
    ns.ip("link", "set", "eth9", "up")
    ns.ip("link", "set", "eth9p", "up")
    ns.ip("route", "add", "192.0.2.30/32", "dev", "eth9")
    with NetlinkWatcher(netns=ns.name) as watcher:
        snap = watcher.start()
        assert [r.ifname for r in snap.routes if str(r.prefix) == "192.0.2.30/32"] == ["eth9"]
        ns.ip("route", "replace", "192.0.2.30/32", "dev", "cloudbr0")
        snap = wait_for(watcher, lambda s: "192.0.2.30/32" in host_routes(s))
        # the eth9 route is gone, not kept as a stale second route
        assert [r.ifname for r in snap.routes if str(r.prefix) == "192.0.2.30/32"] == ["cloudbr0"]
        ns.ip("route", "replace", "192.0.2.30/32", "dev", "eth9")
        snap = wait_for(watcher, lambda s: "192.0.2.30/32" not in host_routes(s))
        assert [r.ifname for r in snap.routes if str(r.prefix) == "192.0.2.30/32"] == ["eth9"]


def test_audit_finds_what_the_view_missed_and_nothing_when_in_sync(ns: Netns) -> None:
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0")
    ns.ip("route", "add", "2001:db8:100::30/128", "dev", "cloudbr0")
    with NetlinkWatcher(netns=ns.name) as watcher:
        watcher.start()
        clean = watcher.audit()
        assert clean is not None and not clean.differs and clean.routes >= 2
        # The watcher does not read its events (a deaf daemon): the audit sees
        # both what came and what went behind its back.
        ns.ip("route", "add", "192.0.2.31/32", "dev", "cloudbr0")
        ns.ip("route", "del", "192.0.2.30/32", "dev", "cloudbr0")
        audit = watcher.audit()
        assert audit is not None
        assert {k[1] for k in audit.missing} == {int(ipaddress.ip_address("192.0.2.31"))}
        assert {k[1] for k in audit.extra} == {int(ipaddress.ip_address("192.0.2.30"))}
        wait_for(watcher, lambda s: "192.0.2.31/32" in host_routes(s))
        after = watcher.audit()
        assert after is not None and not after.differs


def test_resync_reopens_the_socket_as_another_object(ns: Netns) -> None:
    """What the daemon relies on to re-register it (issue 10, 4.1): the fd
    number is usually the same, the object never is."""
    with NetlinkWatcher(netns=ns.name) as watcher:
        watcher.start()
        before = watcher.selectable()
        fd = before.fileno()
        watcher.resync("resync: test")
        after = watcher.selectable()
        assert after is not before and before.fileno() == -1
        print(f"fd before {fd}, after {after.fileno()}")
