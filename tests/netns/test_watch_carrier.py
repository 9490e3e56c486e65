"""NetlinkWatcher: the bridge's carrier, in a real namespace. A bridge loses it
when its last port goes down (routes stay, flagged linkdown) and gets it back
with the first port up; a bridge that never had a port has it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from frrctl.watch import NetlinkWatcher
from tests.netns.test_watch import Netns, host_routes, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")


@pytest.fixture
def ns() -> Iterator[Netns]:
    netns = Netns()
    try:
        netns.bridge()  # cloudbr0 up, port vm0 up
        yield netns
    finally:
        netns.close()


def test_carrier_follows_the_ports(ns: Netns) -> None:
    ns.ip("route", "add", "192.0.2.30/32", "dev", "cloudbr0", "metric", str(2 << 24))
    with NetlinkWatcher(netns=ns.name) as watcher:
        snap = watcher.start()
        assert snap.bridge_carrier and host_routes(snap) == {"192.0.2.30/32"}
        ns.ip("link", "set", "vm0", "down")  # the last port: no carrier
        snap = wait_for(watcher, lambda s: not s.bridge_carrier)
        assert host_routes(snap) == {"192.0.2.30/32"}  # the route stays (linkdown)
        assert snap.bridge_index is not None
        ns.ip("link", "set", "vm0", "up")  # the first port up: carrier at once
        snap = wait_for(watcher, lambda s: s.bridge_carrier, timeout=3)
        assert snap.cause == "events" and host_routes(snap) == {"192.0.2.30/32"}


def test_initial_dump_of_a_bridge_whose_ports_are_down(ns: Netns) -> None:
    ns.ip("link", "set", "vm0", "down")
    with NetlinkWatcher(netns=ns.name) as watcher:
        assert not watcher.start().bridge_carrier


def test_a_bridge_that_never_had_a_port_has_carrier() -> None:
    netns = Netns()
    try:
        netns.ip("link", "add", "cloudbr0", "type", "bridge")
        netns.ip("link", "set", "cloudbr0", "up")
        with NetlinkWatcher(netns=netns.name) as watcher:
            assert watcher.start().bridge_carrier
    finally:
        netns.close()
