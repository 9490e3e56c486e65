"""Real FRR for the announcer conformance suite, configured from an inventory.

Each back end gets a host namespace whose FRR config is what `frrctl render`
makes of a one-host inventory (controller mode, that driver), loaded the way
`vtysh -b` loads it at boot, with the bridge (a port for carrier) and an uplink
veth to a peer namespace. No session comes up: what a back end announces is read
from the host's own daemons (bgpd's table, the OSPF databases).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from frrctl.frr.base import AnnounceDriver
from frrctl.frr.netns import NetnsPortForwarder
from frrctl.frr.registry import AnnouncerSpec, make_announcer
from frrctl.frr.sandbox import FrrInstall
from frrctl.inventory import Fleet, parse_inventory
from frrctl.lab import netns
from frrctl.lab.frrproc import daemon_modules, enabled_daemons, prepare_dir, restart_in, start_frr
from frrctl.policy import STATIC_MIN_METRIC
from frrctl.render import render_host
from tests.conftest import lab_skip_reason

HOSTNAME = "hv1"
ASN = 64512
GRPC_PORT = 50051
POOL4, POOL6 = "192.0.2.0/25", "2001:db8:100::/64"


def grpc_install() -> FrrInstall | None:
    prefix = Path(os.environ.get("FRRCTL_FRR_GRPC", "/var/cache/frrctl/frr-grpc"))
    install = FrrInstall.prefix(prefix)
    return install if install.has_grpc() and (install.sbin / "bgpd").exists() else None


@dataclass(frozen=True)
class Backend:
    """One back end of the suite: a driver on a BGP host, an OSPFv2 + OSPFv3
    host, or a host running both (where it is checked in bgpd's table)."""

    name: str
    driver: str
    protocol: str  # bgp | ospf (OSPFv2 and OSPFv3) | bgp+ospf

    @property
    def grpc(self) -> bool:
        return self.driver == "grpc"

    @property
    def bgp(self) -> bool:
        return "bgp" in self.protocol

    @property
    def ospf(self) -> bool:
        return "ospf" in self.protocol


BACKENDS = [
    Backend("vtysh", "vtysh", "bgp"),
    Backend("grpc", "grpc", "bgp"),
    Backend("ospf", "vtysh", "ospf"),  # staticd routes over staticd's vty, redistributed
    Backend("ospf-grpc", "grpc", "ospf"),  # the same routes over gRPC
    Backend("bgp-ospf", "vtysh", "bgp+ospf"),  # staticd's vty serving bgpd too
]


def skip_reason(backend: Backend) -> str | None:
    if reason := lab_skip_reason():
        return reason
    if backend.grpc and grpc_install() is None:
        return "gRPC-enabled FRR not found: set FRRCTL_FRR_GRPC (lab/build-frr-grpc.sh)"
    return None


def inventory(backend: Backend) -> dict[str, Any]:
    uplink: dict[str, Any] = {
        "interface": "up0",
        "addresses": ["198.18.0.2/31", "2001:db8:fffe::2/127"],
    }
    host: dict[str, Any] = {
        "hostname": HOSTNAME,
        "router-id": "198.18.0.2",
        "mode": "controller",
        "uplinks": [uplink],
        "controller": {"driver": backend.driver, "grpc-port": GRPC_PORT, "max-prefixes": 100},
    }
    if backend.bgp:
        host["asn"] = ASN
        # both families: the renderer gives bgpd an address-family per neighbour family
        uplink["bgp"] = {"neighbors": ["198.18.0.3", "2001:db8:fffe::3"], "remote-as": 64513}
    if backend.ospf:
        uplink["ospf"] = {"area": 1}
        uplink["ospf6"] = {"area": 1}
    return {
        "fabric": {"bridge": "cloudbr0", "pools": {"ipv4": [POOL4], "ipv6": [POOL6]}},
        "hosts": [host],
    }


@dataclass
class Host:
    """A rendered host running in real FRR, and the announcer the daemon would build."""

    backend: Backend
    fleet: Fleet
    files: dict[str, str]
    ns: str
    workdir: Path
    sbin: Path
    forwarder: NetnsPortForwarder | None = None
    announcers: list[AnnounceDriver] = field(default_factory=list)

    @property
    def vty(self) -> Path:
        return self.workdir / "vty"

    def announcer(self) -> AnnounceDriver:
        """A fresh announcer, as a (re)started daemon builds it: frrctl.frr.registry."""
        host = self.fleet.host(HOSTNAME)
        target = self.forwarder.target if self.forwarder else f"127.0.0.1:{GRPC_PORT}"
        spec = AnnouncerSpec(
            bridge="cloudbr0",
            vty_dir=self.vty,
            asn=host.asn,
            grpc_target=target,
            runs_bgp=host.runs_bgp,
            ospf_versions=tuple(v for v, on in ((4, host.runs_ospf), (6, host.runs_ospf6)) if on),
        )
        made = make_announcer(self.backend.driver, spec)
        self.announcers.append(made)
        return made

    def vtysh(self, *commands: str) -> str:
        return netns.vtysh(self.ns, self.vty, *commands)

    def add_route(self, prefix: str) -> None:
        # at the metric `frrctl instance plug` sets (a staticd route must outrank it)
        netns.ip(self.ns, "route", "replace", prefix, "dev", "cloudbr0",
                 "metric", str(STATIC_MIN_METRIC))  # fmt: skip

    def restart(self, daemon: str) -> None:
        """Kill one daemon and start it again with the rendered config applied to
        it alone (watchfrr + vtysh -b -d DAEMON)."""
        restart_in(self.ns, HOSTNAME, self.workdir, daemon, self.workdir / "frr.conf",
                   self.files["daemons"], self.sbin)  # fmt: skip

    def close(self) -> None:
        for announcer in self.announcers:
            announcer.close()
        if self.forwarder is not None:
            self.forwarder.close()


@contextlib.contextmanager
def running(backend: Backend) -> Iterator[Host]:
    fleet = parse_inventory(inventory(backend))
    files = render_host(fleet, fleet.host(HOSTNAME))
    install = grpc_install() if backend.grpc else None
    sbin = install.sbin if install else netns.FRR_SBIN
    tag = secrets.token_hex(3)
    ns, peer = f"fg4-{tag}-cf", f"fg4-{tag}-cp"
    workdir = Path(f"/run/frrctl-cf-{tag}")  # FRR runs as user frr: not under tmp_path
    host: Host | None = None
    try:
        netns.add_namespace(ns)
        netns.add_namespace(peer)
        netns.veth(ns, "up0", peer, "up0")
        for cmd in (
            ["addr", "add", "198.18.0.2/31", "dev", "up0"],
            ["addr", "add", "2001:db8:fffe::2/127", "dev", "up0", "nodad"],
            ["link", "set", "up0", "up"],
            ["link", "add", "cloudbr0", "type", "bridge"],
            ["link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest"],
            ["link", "set", "vm0", "master", "cloudbr0", "up"],  # carrier for staticd
            ["link", "set", "vm0-guest", "up"],
            ["addr", "add", "169.254.0.1/32", "dev", "cloudbr0"],
            ["link", "set", "cloudbr0", "up"],
        ):
            netns.ip(ns, *cmd)
        netns.ip(peer, "link", "set", "up0", "up")
        prepare_dir(workdir)
        conf = workdir / "frr.conf"
        conf.write_text(files["frr.conf"])
        daemons = ["zebra", *enabled_daemons(files["daemons"])]
        start_frr(ns, HOSTNAME, workdir, daemons, conf, sbin, daemon_modules(files["daemons"]))
        forwarder = (
            NetnsPortForwarder(ns, "127.0.0.1", GRPC_PORT, "fg4-cf-fwd-") if backend.grpc else None
        )
        host = Host(backend, fleet, files, ns, workdir, sbin, forwarder)
        yield host
    finally:
        if host is not None:
            host.close()
        netns.delete_namespace(ns)
        netns.delete_namespace(peer)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(b, id=b.name, marks=pytest.mark.skipif(bool(skip_reason(b)),
                                                            reason=skip_reason(b) or ""))
        for b in BACKENDS
    ],
)  # fmt: skip
def host(request: pytest.FixtureRequest) -> Iterator[Host]:
    with running(request.param) as h:
        yield h
