"""An OSPF-only host in controller mode: ospfd with the controller-mode config
(only-cloud, as frrctl.render writes it, built here by hand), and `frrctl
daemon` holding back and draining through the OSPF gate.

Checked in ospfd's own LSDB (self-originated NSSA-external LSAs): ExaBGP speaks
no OSPF. ospfd applies route-map changes after its distribute-list update
delay (200 ms as rendered for controller mode); nothing is timed.
"""

from __future__ import annotations

import copy
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from frrctl.frr.ospf import boot_lines
from frrctl.frr.sandbox import FrrSandbox
from frrctl.status import request

from .conftest import DaemonProc, needs_lab, start_daemon_in

pytestmark = [needs_lab, pytest.mark.lab]

INVENTORY = {
    "fabric": {"bridge": "cloudbr0", "pools": {"ipv4": ["192.0.2.0/25"]}},
    "hosts": [
        {
            "hostname": "hv1",
            "router-id": "198.18.0.2",
            "mode": "controller",
            "uplinks": [{"interface": "up0", "addresses": ["198.18.0.2/31"], "ospf": {"area": 1}}],
            "controller": {"metrics-port": 9343},
        }
    ],
}


OSPFD_CONF = (
    """frr defaults datacenter
hostname hv1
interface up0
 ip ospf area 0.0.0.1
 ip ospf network point-to-point
exit
router ospf
 ospf router-id 198.18.0.2
 timers throttle lsa all 200
 redistribute kernel route-map only-cloud
 area 0.0.0.1 nssa
exit
ip prefix-list cloud-pool-v4 seq 10 permit 192.0.2.0/25 ge 32
route-map only-cloud permit 10
 match interface cloudbr0
 match ip address prefix-list cloud-pool-v4
exit
"""
    + "\n".join(boot_lines(4))
    + "\n"
)  # as rendered for controller mode: admission closed


class OspfHost:
    """An OSPFv2 host: ospfd, IPv4 pool."""

    inventory_data: dict[str, Any] = INVENTORY
    conf = OSPFD_CONF
    daemon_name = "ospfd"
    never_seconds = 4.0  # well past ospfd's update delay (200 ms)

    def __init__(self) -> None:
        self.sandbox = FrrSandbox(f"fg4-{secrets.token_hex(3)}-os")
        self.inventory = self.sandbox.workdir / "fleet.yaml"
        self.state_dir = self.sandbox.workdir / "state"
        self.daemon: DaemonProc | None = None

    def setup(self, controller: dict[str, object] | None = None) -> None:
        s = self.sandbox
        for cmd in (
            ["link", "add", "cloudbr0", "type", "bridge"],
            ["link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest"],
            ["link", "set", "vm0", "master", "cloudbr0", "up"],
            ["link", "set", "vm0-guest", "up"],
            ["link", "set", "cloudbr0", "up"],
            ["link", "add", "up0", "type", "veth", "peer", "name", "up0-peer"],
            ["addr", "add", "198.18.0.2/31", "dev", "up0"],
            ["link", "set", "up0", "up"],
            ["link", "set", "up0-peer", "up"],
        ):
            s.ns_exec(["ip", *cmd])
        inventory = copy.deepcopy(self.inventory_data)
        inventory["hosts"][0]["controller"].update(controller or {})  # type: ignore[index]
        self.inventory.write_text(yaml.safe_dump(inventory))
        s.start("zebra", "hostname hv1\n")
        s.start(self.daemon_name, self.conf)

    def start_daemon(self) -> DaemonProc:
        self.daemon = start_daemon_in(self.sandbox, self.inventory, self.state_dir)
        return self.daemon

    def cli(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "frrctl.cli", *args, "--state-dir", str(self.state_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def lsas(self) -> set[str]:
        """Live self-originated external prefixes in ospfd's LSDB."""
        out = self.sandbox.vtysh("show ip ospf database")
        live = set()
        for line in out.splitlines():
            words = line.split()
            if (
                len(words) >= 7
                and words[1] == "198.18.0.2"
                and words[5] in ("E1", "E2")
                and words[2] != "3600"
            ):
                live.add(words[6])
        return live

    def wait(self, cond: Callable[[set[str]], bool], timeout: float = 40) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.lsas()
            if cond(got):
                return got
            assert time.monotonic() < deadline, f"LSDB never reached the wanted state: {got}"
            time.sleep(0.2)

    def never(self, prefixes: set[str]) -> None:
        """None of `prefixes` shows up for a while (well past the daemon's
        distribute-list update delay, so a late re-evaluation is seen too)."""
        deadline = time.monotonic() + self.never_seconds
        while time.monotonic() < deadline:
            leaked = self.lsas() & prefixes
            assert not leaked, f"announced though refused: {leaked}"
            time.sleep(0.2)

    def admission(self) -> str:
        return str(request(self.state_dir, {"cmd": "status", "peers": False})["ospf_admission"])

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.sandbox.close()


INVENTORY6 = {
    "fabric": {"bridge": "cloudbr0", "pools": {"ipv6": ["2001:db8:100::/64"]}},
    "hosts": [
        {
            "hostname": "hv1",
            "router-id": "198.18.0.2",
            "mode": "controller",
            "uplinks": [{"interface": "up0", "ospf6": {"area": 1}}],
            "controller": {"metrics-port": 9343},
        }
    ],
}

OSPF6D_CONF = (
    """frr defaults datacenter
hostname hv1
interface up0
 ipv6 ospf6 area 0.0.0.1
 ipv6 ospf6 network point-to-point
exit
router ospf6
 ospf6 router-id 198.18.0.2
 redistribute kernel route-map only-cloud-v6
 area 0.0.0.1 nssa
exit
ipv6 prefix-list cloud-pool-v6 seq 10 permit 2001:db8:100::/64 ge 128
route-map only-cloud-v6 permit 10
 match interface cloudbr0
 match ipv6 address prefix-list cloud-pool-v6
exit
"""
    + "\n".join(boot_lines(6))
    + "\n"
)


class Ospf6Host(OspfHost):
    """An OSPFv3 host: ospf6d, IPv6 pool. ospf6d's update delay is fixed at 5 s."""

    inventory_data = INVENTORY6
    conf = OSPF6D_CONF
    daemon_name = "ospf6d"
    never_seconds = 8.0

    def lsas(self) -> set[str]:
        """Live self-originated NSSA (Type7) prefixes in ospf6d's LSDB."""
        live = set()
        for line in self.sandbox.vtysh("show ipv6 ospf6 database").splitlines():
            words = line.split()
            mine = len(words) >= 6 and words[0] == "Type7" and words[2] == "198.18.0.2"
            if mine and words[3] != "3600":  # 3600: withdrawn (MaxAge)
                live.add(words[5])
        return live


@pytest.fixture
def host6() -> Iterator[Ospf6Host]:
    h = Ospf6Host()
    try:
        h.setup({"require-neighbor": True})
        yield h
    finally:
        h.close()


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Iterator[OspfHost]:
    h = OspfHost()
    try:
        h.setup(getattr(request, "param", None))
        yield h
    finally:
        h.close()


def route(host: OspfHost, verb: str, address: str) -> None:
    host.sandbox.ns_exec(["ip", "route", verb, f"{address}/32", "dev", "cloudbr0"])


@pytest.mark.parametrize("host", [{"max-prefixes": 3}], indirect=True)
def test_ospf_never_announces_past_the_maximum(host: OspfHost) -> None:
    host.start_daemon()
    route(host, "add", "192.0.2.30")
    route(host, "add", "192.0.2.31")
    host.wait(lambda got: {"192.0.2.30/32", "192.0.2.31/32"} <= got)
    # two of three announced: within the headroom, so admission is closed now
    deadline = time.monotonic() + 10
    while host.admission() != "closed":
        assert time.monotonic() < deadline, "admission never closed"
        time.sleep(0.1)
    route(host, "add", "192.0.2.32")  # the third fits: admitted, after ospfd's delay
    host.wait(lambda got: "192.0.2.32/32" in got)
    route(host, "add", "192.0.2.33")  # the fourth does not
    host.never({"192.0.2.33/32"})
    status = request(host.state_dir, {"cmd": "status", "peers": False})
    verdicts = {p["prefix"]: p["verdict"] for p in status["prefixes"]}
    assert verdicts["192.0.2.33/32"] == "over-maximum"
    assert host.lsas() == {"192.0.2.30/32", "192.0.2.31/32", "192.0.2.32/32"}
    # a place frees up: the waiting prefix takes it
    route(host, "del", "192.0.2.30")
    host.wait(lambda got: got == {"192.0.2.31/32", "192.0.2.32/32", "192.0.2.33/32"})


def neighbor(host: OspfHost, address: str) -> None:
    host.sandbox.ns_exec(["ip", "neigh", "add", address, "lladdr", "02:00:00:00:00:30",
                          "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip


@pytest.mark.parametrize("host", [{"require-neighbor": True}], indirect=True)
def test_ospf_require_neighbor_admits_only_backed_routes(host: OspfHost) -> None:
    host.start_daemon()
    assert host.admission() == "closed"
    neighbor(host, "192.0.2.31")
    route(host, "add", "192.0.2.31")
    host.wait(lambda got: got == {"192.0.2.31/32"})  # ospfd is an ASBR now
    route(host, "add", "192.0.2.30")  # before its neighbour entry
    host.never({"192.0.2.30/32"})
    neighbor(host, "192.0.2.30")
    host.wait(lambda got: got == {"192.0.2.30/32", "192.0.2.31/32"})


def test_ospf_hold_and_drain(host: OspfHost) -> None:
    host.cli("hold", "192.0.2.33")  # before the route exists, before the daemon runs
    host.start_daemon()
    host.sandbox.ns_exec(["ip", "route", "add", "203.0.113.5/32", "dev", "cloudbr0"])
    host.sandbox.ns_exec(["ip", "route", "add", "192.0.2.33/32", "dev", "cloudbr0"])
    host.sandbox.ns_exec(["ip", "route", "add", "192.0.2.30/32", "dev", "cloudbr0"])
    host.wait(lambda got: "192.0.2.30/32" in got)
    seen: set[str] = set()
    for _ in range(10):  # the held one never shows up
        seen |= host.lsas()
        time.sleep(0.2)
    assert "192.0.2.33/32" not in seen and "203.0.113.5/32" not in seen
    status = request(host.state_dir, {"cmd": "status", "peers": False})
    assert status["ospf_daemons"] == ["ospfd"] and "192.0.2.33/32" in status["ospf_blocked"]
    host.cli("release", "192.0.2.33")
    host.wait(lambda got: {"192.0.2.30/32", "192.0.2.33/32"} <= got)
    host.cli("hold", "192.0.2.30/32")
    host.wait(lambda got: "192.0.2.30/32" not in got and "192.0.2.33/32" in got)
    host.cli("release", "--all")
    host.cli("drain")
    host.wait(lambda got: not got)
    host.cli("undrain")
    host.wait(lambda got: {"192.0.2.30/32", "192.0.2.33/32"} <= got)
    assert "203.0.113.5/32" not in host.lsas()
    # nothing held or drained: no gate left, the running config is the rendered one
    running = host.sandbox.vtysh("show running-config")
    assert "frrctl-block" not in running and "deny 1" not in running


def test_ospfd_restart_announces_nothing_refused(host: OspfHost) -> None:
    host.cli("hold", "192.0.2.33")
    host.start_daemon()
    route(host, "add", "192.0.2.30")
    route(host, "add", "192.0.2.33")
    host.wait(lambda got: "192.0.2.30/32" in got)
    host.sandbox.kill("ospfd")
    # The held route is in the kernel while ospfd starts: the rendered config
    # starts with admission closed, so nothing passes before the daemon's gate.
    host.sandbox.start("ospfd", OSPFD_CONF)
    deadline = time.monotonic() + 40
    while "192.0.2.30/32" not in host.lsas():
        assert "192.0.2.33/32" not in host.lsas(), "held prefix announced after the restart"
        assert time.monotonic() < deadline, "allowed prefix never announced again"
        time.sleep(0.2)
    host.never({"192.0.2.33/32"})
    running = host.sandbox.vtysh("show running-config")
    assert "frrctl-block-v4 seq 1 permit 192.0.2.33/32" in running
    assert "frrctl-admit" not in running  # far from the maximum: admission open


def test_ospf6_require_neighbor_admits_only_backed_routes(host6: Ospf6Host) -> None:
    host6.start_daemon()
    assert host6.admission() == "closed"
    s = host6.sandbox
    s.ns_exec(["ip", "-6", "neigh", "add", "2001:db8:100::31", "lladdr", "02:00:00:00:00:31",
               "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip
    s.ns_exec(["ip", "-6", "route", "add", "2001:db8:100::31/128", "dev", "cloudbr0"])
    host6.wait(lambda got: got == {"2001:db8:100::31/128"})
    s.ns_exec(["ip", "-6", "route", "add", "2001:db8:100::30/128", "dev", "cloudbr0"])
    host6.never({"2001:db8:100::30/128"})
    s.ns_exec(["ip", "-6", "neigh", "add", "2001:db8:100::30", "lladdr", "02:00:00:00:00:30",
               "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip
    host6.wait(lambda got: got == {"2001:db8:100::30/128", "2001:db8:100::31/128"})
    running = s.vtysh("show running-config")
    assert "ipv6 prefix-list frrctl-admit-v6 seq 2 deny 2001:db8:100::30/128" in running


@pytest.fixture
def host6_open() -> Iterator[Ospf6Host]:
    h = Ospf6Host()
    try:
        h.setup()
        yield h
    finally:
        h.close()


def test_ospf6_after_a_zebra_restart_is_alerted_and_a_restart_cures_it(
    host6_open: Ospf6Host,
) -> None:
    """FRR 8.4: after a zebra restart ospf6d never redistributes a kernel route
    added since (found by `frrctl lab chaos`). No vty action repairs it: the
    daemon alerts, status is unhealthy, and an ospf6d restart cures it."""
    h = host6_open
    daemon = h.start_daemon()
    s = h.sandbox
    s.ns_exec(["ip", "-6", "route", "add", "2001:db8:100::30/128", "dev", "cloudbr0"])
    h.wait(lambda got: got == {"2001:db8:100::30/128"})
    s.kill("zebra")
    s.start("zebra", "hostname hv1\n")
    s.ns_exec(["ip", "-6", "route", "add", "2001:db8:100::31/128", "dev", "cloudbr0"])
    deadline = time.monotonic() + 30
    while "ospf6d does not redistribute" not in daemon.log.read_text():
        assert time.monotonic() < deadline, "no alert"
        time.sleep(0.2)
    status = request(h.state_dir, {"cmd": "status", "peers": False})
    assert "2001:db8:100::31/128" in status["ospf6_not_redistributed"]
    assert status["healthy"] is False
    s.kill("ospf6d")
    s.start("ospf6d", OSPF6D_CONF)
    h.wait(lambda got: got == {"2001:db8:100::30/128", "2001:db8:100::31/128"}, timeout=40)
    deadline = time.monotonic() + 30  # the kernel view check (every 10 s) clears the alert
    while request(h.state_dir, {"cmd": "status", "peers": False})["ospf6_not_redistributed"]:
        assert time.monotonic() < deadline, "alert never cleared"
        time.sleep(0.5)
