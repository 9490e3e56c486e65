"""Real FRR in throw-away namespaces: a host (zebra + bgpd, cloudbr0) and an upstream peer.

Needs root and FRR. The gRPC tests also need the build from
lab/build-frr-grpc.sh: FRRCTL_FRR_GRPC names its prefix (the script's default
/var/cache/frrctl/frr-grpc is used when it exists).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from frrctl.frr.sandbox import FrrInstall, FrrSandbox

HOST_ASN = 64512
UPSTREAM_ASN = 64513
GRPC_PORT = 50051
DEFAULT_GRPC_PREFIX = Path("/var/cache/frrctl/frr-grpc")


def _skip_reason_debian() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not (Path("/usr/lib/frr/bgpd").exists() and shutil.which("ip")):
        return "needs Debian's frr package (/usr/lib/frr) and iproute2"
    return None


def grpc_install() -> FrrInstall | None:
    env = os.environ.get("FRRCTL_FRR_GRPC")
    prefix = Path(env) if env else DEFAULT_GRPC_PREFIX
    install = FrrInstall.prefix(prefix)
    return install if install.has_grpc() and (install.sbin / "bgpd").exists() else None


def grpc_skip_reason() -> str | None:
    if reason := _skip_reason_debian():
        return reason
    if grpc_install() is None:
        return (
            "gRPC-enabled FRR not found: run lab/build-frr-grpc.sh and/or set "
            "FRRCTL_FRR_GRPC to its prefix"
        )
    return None


needs_frr = pytest.mark.skipif(bool(_skip_reason_debian()), reason=_skip_reason_debian() or "")
needs_grpc_frr = pytest.mark.skipif(bool(grpc_skip_reason()), reason=grpc_skip_reason() or "")


def unique(tag: str) -> str:
    return f"fg4-{secrets.token_hex(3)}-{tag}"


def host_bgpd_config(extra: str = "", af_v4: str = "", af_v6: str = "") -> str:
    return f"""frr defaults datacenter
hostname fg4-host
bgp route-map delay-timer 1
{extra}
router bgp {HOST_ASN}
 bgp router-id 198.18.0.0
 no bgp ebgp-requires-policy
 neighbor 198.18.0.1 remote-as {UPSTREAM_ASN}
 neighbor 198.18.0.1 timers connect 1
 neighbor 2001:db8:ffff::1 remote-as {UPSTREAM_ASN}
 neighbor 2001:db8:ffff::1 timers connect 1
 address-family ipv4 unicast
  no neighbor 2001:db8:ffff::1 activate
{af_v4}
 exit-address-family
 address-family ipv6 unicast
  neighbor 2001:db8:ffff::1 activate
{af_v6}
 exit-address-family
"""


UPSTREAM_BGPD = f"""frr defaults datacenter
hostname fg4-upstream
router bgp {UPSTREAM_ASN}
 bgp router-id 198.18.0.1
 no bgp ebgp-requires-policy
 neighbor 198.18.0.0 remote-as {HOST_ASN}
 neighbor 198.18.0.0 timers connect 1
 neighbor 2001:db8:ffff:: remote-as {HOST_ASN}
 neighbor 2001:db8:ffff:: timers connect 1
 address-family ipv4 unicast
  no neighbor 2001:db8:ffff:: activate
 exit-address-family
 address-family ipv6 unicast
  neighbor 2001:db8:ffff:: activate
 exit-address-family
"""


@dataclass
class Fabric:
    """A host with cloudbr0 and one upstream, connected by a veth pair."""

    host: FrrSandbox
    upstream: FrrSandbox

    def add_route(self, prefix: str, metric: int | None = None) -> None:
        tail = ["metric", str(metric)] if metric is not None else []
        self.host.ns_exec(["ip", "route", "replace", prefix, "dev", "cloudbr0", *tail])

    def add_routes(self, prefixes: list[str], metric: int | None = None) -> None:
        batch = self.host.workdir / "routes.batch"
        tail = f" metric {metric}" if metric is not None else ""
        batch.write_text("".join(f"route replace {p} dev cloudbr0{tail}\n" for p in prefixes))
        self.host.ns_exec(["ip", "-batch", str(batch)])

    def del_route(self, prefix: str) -> None:
        self.host.ns_exec(["ip", "route", "del", prefix, "dev", "cloudbr0"], check=False)

    def upstream_routes(self, afi: str = "ipv4") -> dict[str, dict[str, object]]:
        out = self.upstream.vtysh(f"show bgp {afi} unicast json")
        return dict(json.loads(out).get("routes", {}))

    def upstream_prefixes(self) -> set[str]:
        return set(self.upstream_routes("ipv4")) | set(self.upstream_routes("ipv6"))

    def upstream_communities(self, prefix: str) -> str:
        afi = "ipv6" if ":" in prefix else "ipv4"
        data = json.loads(self.upstream.vtysh(f"show bgp {afi} unicast {prefix} json"))
        paths = data.get("paths", [])
        return " ".join(str(p.get("community", {}).get("string", "")) for p in paths)

    def wait_upstream(self, want: Callable[[set[str]], bool], timeout: float = 15) -> set[str]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.upstream_prefixes()
            if want(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"upstream never reached the wanted state; has {sorted(got)}")
            time.sleep(0.1)

    def wait_established(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            peers = json.loads(self.upstream.vtysh("show bgp summary json"))
            states = [
                peer.get("state")
                for afi in ("ipv4Unicast", "ipv6Unicast")
                for peer in peers.get(afi, {}).get("peers", {}).values()
            ]
            if len(states) == 2 and all(s == "Established" for s in states):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"BGP sessions not established: {states}")
            time.sleep(0.2)


def make_fabric(
    install: FrrInstall,
    bgpd_args: tuple[str, ...] = (),
    bgpd_config: str = "",
    staticd_args: tuple[str, ...] | None = None,
) -> Iterator[Fabric]:
    """A fabric; with `staticd_args`, the host also runs staticd (from `install`)."""
    tag = secrets.token_hex(3)
    host = FrrSandbox(f"fg4-{tag}-h", install)
    upstream: FrrSandbox | None = None
    try:
        upstream = FrrSandbox(f"fg4-{tag}-u", FrrInstall.debian())
        host.ns_exec(
            [
                "ip",
                "link",
                "add",
                "eth-up",
                "type",
                "veth",
                "peer",
                "name",
                "eth-host",
                "netns",
                upstream.name,
            ]
        )
        host.ns_exec(["ip", "addr", "add", "198.18.0.0/31", "dev", "eth-up"])
        host.ns_exec(["ip", "addr", "add", "2001:db8:ffff::/127", "dev", "eth-up", "nodad"])
        host.ns_exec(["ip", "link", "set", "eth-up", "up"])
        upstream.ns_exec(["ip", "addr", "add", "198.18.0.1/31", "dev", "eth-host"])
        upstream.ns_exec(["ip", "addr", "add", "2001:db8:ffff::1/127", "dev", "eth-host", "nodad"])
        upstream.ns_exec(["ip", "link", "set", "eth-host", "up"])
        # cloudbr0 needs a port with carrier (a veth: no dummy module here),
        # else its routes are linkdown and bgpd's import-check refuses them.
        host.ns_exec(["ip", "link", "add", "cloudbr0", "type", "bridge"])
        host.ns_exec(["ip", "link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest"])
        host.ns_exec(["ip", "link", "set", "vm0", "master", "cloudbr0", "up"])
        host.ns_exec(["ip", "link", "set", "vm0-guest", "up"])
        host.ns_exec(["ip", "addr", "add", "169.254.0.1/32", "dev", "cloudbr0"])
        host.ns_exec(["ip", "link", "set", "cloudbr0", "up"])
        for sandbox in (host, upstream):
            sandbox.start("zebra", f"hostname {sandbox.name}\n")
        host.start("bgpd", bgpd_config or host_bgpd_config(), bgpd_args)
        upstream.start("bgpd", UPSTREAM_BGPD)
        if staticd_args is not None:
            host.start("staticd", f"hostname {host.name}\n", staticd_args)
        fabric = Fabric(host, upstream)
        fabric.wait_established()
        yield fabric
    finally:
        if upstream is not None:
            upstream.close()
        host.close()


@pytest.fixture(scope="module")
def debian_fabric() -> Iterator[Fabric]:
    yield from make_fabric(FrrInstall.debian())
