"""An OSPFv2 + OSPFv3 host with the grpc driver, end to end: the host's frr.conf is
rendered from the inventory (ospfd and ospf6d `redistribute static route-map
static-cloud[-v6]`, no admission gate), staticd runs the gRPC module, and
`frrctl daemon` announces each allowed prefix as a staticd route.

Every refusal (hold, drain, the maximum, require-neighbor) is a route that is
not in staticd, so it never reaches an LSDB: both LSDBs are sampled throughout,
and new routes are originated at once (no 5 s wait in ospf6d). Needs the gRPC
build (FRRCTL_FRR_GRPC).
"""

from __future__ import annotations

import copy
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from frrctl.frr.sandbox import FrrSandbox
from frrctl.frr.vty import VtyClient
from frrctl.inventory import parse_inventory
from frrctl.policy import STATIC_MIN_METRIC
from frrctl.render import render_host
from frrctl.status import request

from .conftest import DaemonProc, grpc_install, grpc_skip_reason, needs_lab, start_daemon_in

pytestmark = [
    needs_lab,
    pytest.mark.lab,
    pytest.mark.skipif(bool(grpc_skip_reason()), reason=grpc_skip_reason() or ""),
]
ROUTER_ID = "198.18.0.2"
INVENTORY: dict[str, Any] = {
    "fabric": {
        "bridge": "cloudbr0",
        "pools": {"ipv4": ["192.0.2.0/25"], "ipv6": ["2001:db8:100::/64"]},
    },
    "hosts": [
        {
            "hostname": "hv1",
            "router-id": ROUTER_ID,
            "mode": "controller",
            "uplinks": [
                {
                    "interface": "up0",
                    "addresses": ["198.18.0.2/31"],
                    "ospf": {"area": 1},
                    "ospf6": {"area": 1},
                }
            ],
            "controller": {"driver": "grpc", "metrics-port": 9344},
        }
    ],
}


def lsa_lines(ospfd: str, ospf6d: str) -> set[str]:
    """Live self-originated external prefixes of `show ip ospf database` and
    `show ipv6 ospf6 database` (MaxAge 3600 counts as withdrawn)."""
    live = set()
    for line in ospfd.splitlines():
        w = line.split()
        if len(w) >= 7 and w[1] == ROUTER_ID and w[5] in ("E1", "E2") and w[2] != "3600":
            live.add(w[6])
    for line in ospf6d.splitlines():
        w = line.split()
        if len(w) >= 6 and w[0] == "Type7" and w[2] == ROUTER_ID and w[3] != "3600":
            live.add(w[5])
    return live


class StaticOspfHost:
    def __init__(self, controller: dict[str, object]) -> None:
        install = grpc_install()
        assert install is not None
        self.sandbox = FrrSandbox(f"fg4-{secrets.token_hex(3)}-so", install)
        self.inventory = self.sandbox.workdir / "fleet.yaml"
        self.state_dir = self.sandbox.workdir / "state"
        self.daemon: DaemonProc | None = None
        data = copy.deepcopy(INVENTORY)
        data["hosts"][0]["controller"].update(controller)
        self.inventory.write_text(yaml.safe_dump(data))
        fleet = parse_inventory(data)
        self.conf = render_host(fleet, fleet.hosts[0])["frr.conf"]
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
        s.start("zebra", "hostname hv1\n")
        s.start("staticd", "hostname hv1\n", ("-M", "grpc:50051"))
        for daemon in ("ospfd", "ospf6d"):
            s.start(daemon, "hostname hv1\n")
        conf = s.workdir / "frr.conf"
        conf.write_text(self.conf)
        s.ns_exec([str(s.install.vtysh), "--vty_socket", str(s.vtydir), "-f", str(conf)])
        self.v4 = VtyClient(s.vtydir / "ospfd.vty", timeout=10)
        self.v6 = VtyClient(s.vtydir / "ospf6d.vty", timeout=10)

    def start_daemon(self) -> DaemonProc:
        self.daemon = start_daemon_in(self.sandbox, self.inventory, self.state_dir)
        return self.daemon

    def route(self, verb: str, *prefixes: str) -> None:
        """As `frrctl instance plug` writes it (metric 2 << 24), or removes it."""
        for p in prefixes:
            self.sandbox.ns_exec(["ip", "route", verb, p, "dev", "cloudbr0", "metric",
                                  str(STATIC_MIN_METRIC)])  # fmt: skip

    def cli(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "frrctl.cli", *args, "--state-dir", str(self.state_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def lsas(self) -> set[str]:
        (a,) = self.v4.run(["show ip ospf database"])
        (b,) = self.v6.run(["show ipv6 ospf6 database"])
        return lsa_lines(a.output, b.output)

    def wait(self, cond: Callable[[set[str]], bool], timeout: float = 20) -> float:
        started = time.monotonic()
        while True:
            got = self.lsas()
            if cond(got):
                return time.monotonic() - started
            log = self.daemon.log.read_text()[-1500:] if self.daemon else ""
            assert time.monotonic() - started < timeout, f"LSDB never got there: {got}\n{log}"
            time.sleep(0.01)

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        self.v4.close()
        self.v6.close()
        self.sandbox.close()


class Sampler(threading.Thread):
    """Every prefix any LSDB sample held, sampled back to back until stopped."""

    def __init__(self, host: StaticOspfHost) -> None:
        super().__init__(daemon=True)
        self.v4 = VtyClient(host.sandbox.vtydir / "ospfd.vty", timeout=10)
        self.v6 = VtyClient(host.sandbox.vtydir / "ospf6d.vty", timeout=10)
        self.seen: set[str] = set()
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            (a,) = self.v4.run(["show ip ospf database"])
            (b,) = self.v6.run(["show ipv6 ospf6 database"])
            self.seen |= lsa_lines(a.output, b.output)
            self.samples += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        self.v4.close()
        self.v6.close()


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Iterator[StaticOspfHost]:
    h = StaticOspfHost(getattr(request, "param", {}))
    try:
        yield h
    finally:
        h.close()


def test_rendered_config_has_no_gate(host: StaticOspfHost) -> None:
    assert "redistribute static route-map static-cloud\n" in host.conf
    assert "redistribute static route-map static-cloud-v6\n" in host.conf
    assert "frrctl-admit" not in host.conf and "redistribute kernel" not in host.conf


def test_release_drain_undrain_and_new_routes_come_at_once(host: StaticOspfHost) -> None:
    host.cli("hold", "192.0.2.33")
    host.cli("hold", "2001:db8:100::33")
    host.start_daemon()
    held = {"192.0.2.33/32", "2001:db8:100::33/128"}
    good = {"192.0.2.30/32", "2001:db8:100::30/128"}
    host.route("add", *held)
    t0 = time.monotonic()
    host.route("add", *good)
    host.wait(lambda got: got == good)
    print(f"kernel route -> both LSDBs through the daemon: {time.monotonic() - t0:.3f} s")
    t0 = time.monotonic()
    host.cli("release", "--all")
    host.wait(lambda got: got == good | held)
    print(f"release -> both LSDBs: {time.monotonic() - t0:.3f} s (no 5 s route-map delay)")
    host.cli("drain")  # withdraw everything: the staticd routes go
    host.wait(lambda got: not got)
    host.cli("undrain")
    host.wait(lambda got: got == good | held)
    host.route("del", *good, *held)
    host.wait(lambda got: not got)


def test_hold_never_reaches_the_lsdb(host: StaticOspfHost) -> None:
    host.cli("hold", "192.0.2.33")
    host.cli("hold", "2001:db8:100::33")
    host.start_daemon()
    sampler = Sampler(host)
    sampler.start()
    try:
        host.route("add", "192.0.2.33/32", "2001:db8:100::33/128", "203.0.113.5/32")
        host.route("add", "192.0.2.30/32", "2001:db8:100::30/128")
        host.wait(lambda got: {"192.0.2.30/32", "2001:db8:100::30/128"} <= got)
        time.sleep(2.0)
    finally:
        sampler.stop()
    assert sampler.seen == {"192.0.2.30/32", "2001:db8:100::30/128"}, sampler.seen


@pytest.mark.parametrize("host", [{"max-prefixes": 3}], indirect=True)
def test_never_past_the_maximum(host: StaticOspfHost) -> None:
    host.start_daemon()
    sampler = Sampler(host)
    sampler.start()
    try:
        first = {"192.0.2.30/32", "192.0.2.31/32", "2001:db8:100::30/128"}
        host.route("add", *sorted(first))
        host.wait(lambda got: got == first)
        host.route("add", "192.0.2.32/32", "2001:db8:100::32/128")  # over the maximum
        time.sleep(2.0)
        assert host.lsas() == first
    finally:
        sampler.stop()
    assert sampler.seen == first, sampler.seen
    status = request(host.state_dir, {"cmd": "status", "peers": False})
    verdicts = {p["prefix"]: p["verdict"] for p in status["prefixes"]}
    assert verdicts["192.0.2.32/32"] == "over-maximum"
    host.route("del", "192.0.2.30/32")  # a place frees up: one waiting prefix takes it
    host.wait(lambda got: len(got) == 3 and "192.0.2.30/32" not in got)


@pytest.mark.parametrize("host", [{"require-neighbor": True}], indirect=True)
def test_require_neighbor_announces_only_backed_routes(host: StaticOspfHost) -> None:
    host.start_daemon()
    s = host.sandbox
    sampler = Sampler(host)
    sampler.start()
    try:
        s.ns_exec(["ip", "-6", "neigh", "add", "2001:db8:100::31", "lladdr",
                   "02:00:00:00:00:31", "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip
        host.route("add", "2001:db8:100::31/128", "2001:db8:100::30/128", "192.0.2.30/32")
        host.wait(lambda got: got == {"2001:db8:100::31/128"})
        time.sleep(2.0)
        assert host.lsas() == {"2001:db8:100::31/128"}
    finally:
        sampler.stop()
    assert sampler.seen == {"2001:db8:100::31/128"}, sampler.seen
    s.ns_exec(["ip", "neigh", "add", "192.0.2.30", "lladdr", "02:00:00:00:00:30",
               "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip
    t0 = time.monotonic()
    host.wait(lambda got: "192.0.2.30/32" in got)
    print(f"neighbour entry -> LSA: {time.monotonic() - t0:.3f} s")
