"""An OSPFv2 + OSPFv3 host in controller mode for the daemon tests, either driver.

The host's frr.conf is rendered from a one-host inventory (ospfd and ospf6d
`redistribute static route-map static-cloud[-v6]`, no admission gate) and
loaded the way `vtysh -b` loads it; staticd runs with the gRPC module for the
grpc driver, plain for vtysh (staticd's vty). `frrctl daemon` announces each
allowed prefix as a staticd route. ExaBGP speaks no OSPF: what the host
announces is read from its own LSDBs (self-originated external LSAs), and a
Sampler reads both back to back to catch a refusal that leaks for a moment.
"""

from __future__ import annotations

import copy
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import yaml

from frrctl.frr.sandbox import FrrInstall, FrrSandbox
from frrctl.frr.vty import VtyClient
from frrctl.inventory import parse_inventory
from frrctl.policy import STATIC_MIN_METRIC
from frrctl.render import render_host
from frrctl.status import request

from .conftest import DaemonProc, grpc_install, start_daemon_in

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
            "controller": {"metrics-port": 9344},
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


class OspfHost:
    """hv1 in a sandbox: zebra, staticd, ospfd, ospf6d with the rendered config."""

    def __init__(self, driver: str, controller: dict[str, object]) -> None:
        install = grpc_install() if driver == "grpc" else FrrInstall.debian()
        assert install is not None
        self.driver = driver
        self.sandbox = FrrSandbox(f"fg4-{secrets.token_hex(3)}-so", install)
        try:
            self._setup(driver, controller)
        except BaseException:
            self.sandbox.close()  # the caller never gets an object to close
            raise

    def _setup(self, driver: str, controller: dict[str, object]) -> None:
        self.inventory = self.sandbox.workdir / "fleet.yaml"
        self.state_dir = self.sandbox.workdir / "state"
        self.daemon: DaemonProc | None = None
        data = copy.deepcopy(INVENTORY)
        data["hosts"][0]["controller"].update({"driver": driver, **controller})
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
        s.start("staticd", "hostname hv1\n", ("-M", "grpc:50051") if driver == "grpc" else ())
        for daemon in ("ospfd", "ospf6d"):
            s.start(daemon, "hostname hv1\n")
        self.load_conf()
        self.v4 = VtyClient(s.vtydir / "ospfd.vty", timeout=10)
        self.v6 = VtyClient(s.vtydir / "ospf6d.vty", timeout=10)

    def load_conf(self) -> None:
        """The rendered frr.conf into every running daemon, as `vtysh -b` does."""
        s = self.sandbox
        conf = s.workdir / "frr.conf"
        conf.write_text(self.conf)
        s.ns_exec([str(s.install.vtysh), "--vty_socket", str(s.vtydir), "-f", str(conf)])

    def restart(self, daemon: str) -> None:
        """SIGKILL one daemon, start it again and load the rendered config (watchfrr)."""
        self.sandbox.kill(daemon)
        self.sandbox.start(daemon, "hostname hv1\n")
        self.load_conf()
        self.v4.close()  # reconnect on the next use
        self.v6.close()

    def start_daemon(self) -> DaemonProc:
        self.daemon = start_daemon_in(self.sandbox, self.inventory, self.state_dir)
        return self.daemon

    def route(self, verb: str, *prefixes: str, metric: int = STATIC_MIN_METRIC) -> None:
        """As `frrctl instance plug` writes it (metric 2 << 24), or removes it."""
        for p in prefixes:
            self.sandbox.ns_exec(["ip", "route", verb, p, "dev", "cloudbr0", "metric",
                                  str(metric)])  # fmt: skip

    def neighbor(self, address: str) -> None:
        family = "-6" if ":" in address else "-4"
        mac = "02:00:00:00:00:30"
        self.sandbox.ns_exec(["ip", family, "neigh", "add", address, "lladdr", mac,
                              "dev", "cloudbr0", "nud", "permanent"])  # fmt: skip

    def cli(self, *args: str) -> None:
        cmd = [sys.executable, "-m", "frrctl.cli", *args, "--state-dir", str(self.state_dir)]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr

    def status(self) -> dict[str, Any]:
        return dict(request(self.state_dir, {"cmd": "status", "peers": False}))

    def verdicts(self) -> dict[str, str]:
        return {p["prefix"]: p["verdict"] for p in self.status()["prefixes"]}

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
    """Every prefix any LSDB sample held, sampled back to back until stopped. A
    daemon being restarted answers nothing for a moment: that sample is skipped."""

    def __init__(self, host: OspfHost) -> None:
        super().__init__(daemon=True)
        self.vtydir = host.sandbox.vtydir
        self.seen: set[str] = set()
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        v4 = VtyClient(self.vtydir / "ospfd.vty", timeout=10)
        v6 = VtyClient(self.vtydir / "ospf6d.vty", timeout=10)
        try:
            while not self.halt.is_set():
                try:
                    (a,) = v4.run(["show ip ospf database"])
                    (b,) = v6.run(["show ipv6 ospf6 database"])
                except Exception:
                    v4.close()
                    v6.close()
                    time.sleep(0.01)
                    continue
                self.seen |= lsa_lines(a.output, b.output)
                self.samples += 1
        finally:
            v4.close()
            v6.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        assert self.samples > 0, "the LSDBs were never sampled"
