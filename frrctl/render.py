"""Fleet model -> per-host files (FRR config, daemons file, bridge config).

`render_host` is pure: it returns {relative path: content} and is what the
golden tests pin. Lines are written the way FRR prints them back (the order of
`show running-config`, explicit `seq` numbers), so that `frr-reload.py --test`
on a running FRR loaded from the file finds nothing to change.

Policy written into every frr.conf:
- route-map `only-cloud` (IPv4; `only-cloud-v6` for IPv6): a kernel route is
  redistributed only when it is on the bridge and inside the pools as a host
  route (IPv4 `ge 32`, IPv6 `ge 128`). One route-map per address family, never
  one with an entry per family: ospfd drops `match ipv6 ...` clauses it does
  not know (and ospf6d `match ip ...`), so the other family's entry would be
  left matching only the interface and let anything on the bridge through
  (seen in the lab with FRR 8.4; tests/lab guards it);
- to every BGP uplink only the pool host routes (`cloud-pool-v4/v6 out`), from
  every uplink only the default route (`default-only-v4/v6 in`), in every
  family the session is active in. `no bgp default ipv4-unicast`: a neighbour
  is active only where it is activated next to both lists, never in IPv4 by
  FRR's default (an IPv6 session would carry unfiltered IPv4);
- zebra installs from BGP, OSPF and OSPFv3 only the default route
  (`ip protocol ... route-map fib-default-only`), and OSPF hosts sit in their
  own NSSA area: a hypervisor never carries the fabric's host routes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from frrctl.frr.registry import uses_grpc, uses_staticd
from frrctl.frr.staticd import StaticLayout
from frrctl.host import GATEWAY4, GATEWAY6
from frrctl.host.bridge import GATEWAY_MAC, bridge_sysctls
from frrctl.inventory import Fabric, Fleet, Host, OspfUplink, Uplink
from frrctl.pools import Pools

# only-cloud per family: what `redistribute kernel` passes (redistribute mode)
ROUTE_MAP = {4: "only-cloud", 6: "only-cloud-v6"}
FIB_ROUTE_MAP = {4: "fib-default-only", 6: "fib-default-only-v6"}
POOL_LIST = {4: "cloud-pool-v4", 6: "cloud-pool-v6"}
DEFAULT_LIST = {4: "default-only-v4", 6: "default-only-v6"}
_AFI = {4: "ipv4", 6: "ipv6"}
_PL_KEYWORD = {4: "ip", 6: "ipv6"}


def template_dir() -> Path:
    """Templates ship inside the package; an editable checkout keeps them at the top."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir()),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


# -- pure pieces of the FRR config -------------------------------------------


def prefix_list_lines(pools: Pools, version: int) -> list[str]:
    """`cloud-pool-vN` (host routes inside the pools) and `default-only-vN`."""
    kw, name, maxlen = _PL_KEYWORD[version], POOL_LIST[version], 32 if version == 4 else 128
    lines = []
    prefixes = pools.prefixes(version)
    for seq, net in enumerate(prefixes, start=1):
        ge = "" if net.prefixlen == maxlen else f" ge {maxlen}"
        lines.append(f"{kw} prefix-list {name} seq {seq * 10} permit {net}{ge}")
    if not prefixes:  # keep the list defined so that it denies, never permits, everything
        lines.append(f"{kw} prefix-list {name} seq 5 deny any")
    default = "0.0.0.0/0" if version == 4 else "::/0"
    lines.append(f"{kw} prefix-list {DEFAULT_LIST[version]} seq 10 permit {default}")
    return lines


def route_map_lines(bridge: str) -> list[str]:
    lines: list[str] = []
    for version, match in ((4, "ip"), (6, "ipv6")):
        lines += [
            f"route-map {ROUTE_MAP[version]} permit 10",
            f" match interface {bridge}",
            f" match {match} address prefix-list {POOL_LIST[version]}",
            "exit",
            "!",
        ]
    for version, match in ((4, "ip"), (6, "ipv6")):
        lines += [
            f"route-map {FIB_ROUTE_MAP[version]} permit 10",
            f" match {match} address prefix-list {DEFAULT_LIST[version]}",
            "exit",
            "!",
        ]
    return lines


def fib_filter_lines(host: Host) -> list[str]:
    """zebra installs only the default route from the routing protocols."""
    lines = []
    if host.runs_ospf:
        lines += [f"ip protocol ospf route-map {FIB_ROUTE_MAP[4]}", "!"]
    if host.runs_ospf6:
        lines += [f"ipv6 protocol ospf6 route-map {FIB_ROUTE_MAP[6]}", "!"]
    if host.runs_bgp:
        lines += [f"ip protocol bgp route-map {FIB_ROUTE_MAP[4]}", "!"]
        lines += [f"ipv6 protocol bgp route-map {FIB_ROUTE_MAP[6]}", "!"]
    return lines


@dataclass(frozen=True)
class Interface:
    name: str
    lines: list[str]


def _ospf_lines(prefix: str, ospf: OspfUplink, bfd_default: bool) -> list[str]:
    """`ip ospf ...` or `ipv6 ospf6 ...` interface lines, in FRR's print order."""
    lines = [f"{prefix} area {ospf.area}"]
    if ospf.bfd or (ospf.bfd is None and bfd_default):
        lines.append(f"{prefix} bfd")
    if ospf.cost is not None:
        lines.append(f"{prefix} cost {ospf.cost}")
    lines.append(f"{prefix} network point-to-point")
    return lines


def interface_sections(host: Host) -> list[Interface]:
    """OSPF settings live on the interface (FRR prints them in this order)."""
    out = []
    for uplink in sorted(host.uplinks, key=lambda u: u.interface):
        bfd = uplink.has_bfd(host.bfd)
        lines = []
        if uplink.ospf:
            lines += _ospf_lines("ip ospf", uplink.ospf, bfd)
        if uplink.ospf6:
            lines += _ospf_lines("ipv6 ospf6", uplink.ospf6, bfd)
        if lines:
            out.append(Interface(uplink.interface, lines))
    return out


@dataclass(frozen=True)
class Neighbor:
    name: str  # address, or interface name when unnumbered
    interface: str
    unnumbered: bool
    remote_as: int | str
    bfd: bool
    versions: frozenset[int]  # address families carried on this session

    @property
    def sort_key(self) -> tuple[int, int, int | str]:
        # FRR lists interface peers first, then by address family and address.
        if self.unnumbered:
            return (0, 0, self.name)
        addr = ipaddress.ip_address(self.name)
        return (1, addr.version, int(addr))


@dataclass(frozen=True)
class Family:
    name: str  # ipv4 | ipv6
    redistribute: bool
    route_map: str  # the route-map of `redistribute kernel` (when redistribute)
    import_list: str
    export_list: str
    neighbors: list[Neighbor]  # active in this family, each with both lists
    source: str = "kernel"  # what is redistributed: kernel, or static (staticd routes)


@dataclass(frozen=True)
class Bgp:
    asn: int
    neighbors: list[Neighbor]
    families: list[Family] = field(default_factory=list)
    import_check: bool = True  # FRR's default; off only where `network` statements are frrctl's


def bgp_section(host: Host) -> Bgp | None:
    if not host.runs_bgp:
        return None
    assert host.asn is not None
    neighbors: list[Neighbor] = []
    for uplink in host.uplinks:
        if uplink.bgp is None:
            continue
        bfd = bool(uplink.bgp.bfd) if uplink.bgp.bfd is not None else uplink.has_bfd(host.bfd)
        remote_as = host.remote_as_of(uplink)
        if uplink.bgp.unnumbered:
            neighbors.append(
                Neighbor(
                    uplink.interface, uplink.interface, True, remote_as, bfd, frozenset({4, 6})
                )
            )
        for address in uplink.bgp.neighbors:
            version = ipaddress.ip_address(address).version
            neighbors.append(
                Neighbor(address, uplink.interface, False, remote_as, bfd, frozenset({version}))
            )
    neighbors.sort(key=lambda n: n.sort_key)
    static = static_layout(host)
    families = []
    for version in (4, 6):
        members = [n for n in neighbors if version in n.versions]
        if not members:
            continue
        families.append(
            Family(
                name=_AFI[version],
                # redistribute mode: FRR announces what only-cloud lets through; a
                # staticd host: the daemon's staticd routes, as soon as they exist; the
                # vtysh driver on a BGP-only host uses `network` statements instead.
                redistribute=host.mode == "redistribute" or static is not None,
                route_map=static.route_map(version) if static else ROUTE_MAP[version],
                import_list=DEFAULT_LIST[version],
                export_list=POOL_LIST[version],
                neighbors=members,
                source="static" if static else "kernel",
            )
        )
    # import-check matters only to `network` statements (the vtysh driver's)
    networks = host.mode == "controller" and static is None
    import_check = host.controller.import_check if networks else True
    return Bgp(host.asn, neighbors, families, import_check)


def static_layout(host: Host, bridge: str = "cloudbr0") -> StaticLayout | None:
    """The staticd routes' route-maps, for controller hosts whose driver announces
    staticd routes (frrctl.frr.registry.uses_staticd: grpc, and every OSPF host)."""
    runs_ospf = host.runs_ospf or host.runs_ospf6
    if host.mode == "controller" and uses_staticd(host.controller.driver, runs_ospf):
        return StaticLayout(bridge=bridge)
    return None


def ospf_redistribute(host: Host, bridge: str = "cloudbr0") -> dict[int, str]:
    """What ospfd (4) and ospf6d (6) redistribute: the daemon's staticd routes
    through their route-maps (controller mode: one mechanism for BGP and both
    OSPFs), or kernel routes through only-cloud (redistribute mode)."""
    static = static_layout(host, bridge)
    if static is not None:
        return {v: f"static route-map {static.route_map(v)}" for v in (4, 6)}
    return {v: f"kernel route-map {ROUTE_MAP[v]}" for v in (4, 6)}


def ospf_areas(host: Host, version: int) -> list[str]:
    areas = {
        (u.ospf if version == 2 else u.ospf6).area  # type: ignore[union-attr]
        for u in host.uplinks
        if (u.ospf if version == 2 else u.ospf6) is not None
    }
    return sorted(areas, key=lambda a: int(ipaddress.IPv4Address(a)))


# -- other files -----------------------------------------------------------------

DAEMONS = (
    "bgpd",
    "ospfd",
    "ospf6d",
    "ripd",
    "ripngd",
    "isisd",
    "pimd",
    "pim6d",
    "ldpd",
    "nhrpd",
    "eigrpd",
    "babeld",
    "sharpd",
    "pbrd",
    "bfdd",
    "fabricd",
    "vrrpd",
    "pathd",
)


def enabled_daemons(host: Host) -> dict[str, bool]:
    wanted = {
        "bgpd": host.runs_bgp,
        "ospfd": host.runs_ospf,
        "ospf6d": host.runs_ospf6,
        "bfdd": host.runs_bfd,
    }
    return {name: wanted.get(name, False) for name in DAEMONS}


def _uplink_summary(uplink: Uplink) -> str:
    parts = []
    if uplink.bgp:
        parts.append(
            "bgp unnumbered" if uplink.bgp.unnumbered else "bgp " + ",".join(uplink.bgp.neighbors)
        )
    if uplink.ospf:
        parts.append(f"ospf area {uplink.ospf.area}")
    if uplink.ospf6:
        parts.append(f"ospf6 area {uplink.ospf6.area}")
    return f"{uplink.interface}: {'; '.join(parts)}"


def render_host(fleet: Fleet, host: Host) -> dict[str, str]:
    """All files of one host: {path relative to DIR/<host>/: content}."""
    env = _environment()
    fabric: Fabric = fleet.fabric
    pools = fleet.pools_of(host)
    static = static_layout(host, fabric.bridge)
    context: dict[str, Any] = {
        "host": host,
        "fabric": fabric,
        "bridge": fabric.bridge,
        "prefix_lists": {v: prefix_list_lines(pools, v) for v in (4, 6)},
        "route_maps": route_map_lines(fabric.bridge),
        "ospf_redistribute": ospf_redistribute(host, fabric.bridge),
        "static_lines": static.config_lines(POOL_LIST, bgp=host.runs_bgp) if static else [],
        "staticd_grpc_port": (
            host.controller.grpc_port if static and uses_grpc(host.controller.driver) else None
        ),
        "fib_filter": fib_filter_lines(host),
        "interfaces": interface_sections(host),
        "bgp": bgp_section(host),
        "ospf_areas": ospf_areas(host, 2),
        "ospf6_areas": ospf_areas(host, 3),
        "daemons": enabled_daemons(host),
        "uplinks": [_uplink_summary(u) for u in host.uplinks],
        "gateway_mac": GATEWAY_MAC,
        "gateway4": GATEWAY4,
        "gateway6": GATEWAY6,
        "sysctls": sorted(bridge_sysctls(fabric.bridge).items()),
    }
    files = {
        "frr.conf": "frr.conf.j2",
        "daemons": "daemons.j2",
        f"ifupdown/{fabric.bridge}": "ifupdown-bridge.j2",
        f"networkd/10-{fabric.bridge}.netdev": "networkd-bridge.netdev.j2",
        f"networkd/10-{fabric.bridge}.network": "networkd-bridge.network.j2",
        f"sysctl.d/90-frrctl-{fabric.bridge}.conf": "sysctl-bridge.conf.j2",
    }
    return {path: env.get_template(name).render(context) for path, name in files.items()}


def render_fleet(fleet: Fleet, only: str | None = None) -> dict[str, dict[str, str]]:
    """{hostname: files}, for every host or just `only` (InventoryError if unknown)."""
    hosts = [fleet.host(only)] if only else list(fleet.hosts)
    return {host.hostname: render_host(fleet, host) for host in hosts}
