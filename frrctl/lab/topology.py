"""Lab plan: which namespaces, links, addresses and configs a fleet needs (pure).

Every name carries the run prefix, so two runs (or a crashed one) never mix.
The upstream router sees each host uplink through a veth pair; numbered
uplinks get the neighbour address the host's BGP config expects (or the
other end of a /31 or /127), unnumbered ones only link-local addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from frrctl.inventory import Fleet, Host, Uplink

UPSTREAM = "up"
PEER = "xbgp"
PEER_IFACE = "xbgp0"
PEER_LINK6 = ("2001:db8:ffff:ff::1/64", "2001:db8:ffff:ff::2/64")  # upstream, ExaBGP


@dataclass(frozen=True)
class UplinkLink:
    host: str
    host_iface: str
    upstream_iface: str
    host_addresses: tuple[str, ...]  # with prefix length
    upstream_addresses: tuple[str, ...]
    uplink: Uplink


@dataclass(frozen=True)
class VmPlan:
    name: str
    host: str
    mac: str
    addresses: tuple[str, ...]
    namespace: str  # its network namespace (a namespace VM only)
    host_port: str  # the VM's veth end on the host bridge, or the QEMU guest's tap
    kind: str = "namespace"  # or "qemu": a real guest, plugged by the host's libvirt agent

    @property
    def qemu(self) -> bool:
        return self.kind == "qemu"


@dataclass(frozen=True)
class LabPlan:
    prefix: str
    fleet: Fleet
    links: tuple[UplinkLink, ...]
    vms: tuple[VmPlan, ...]
    host_namespaces: dict[str, str] = field(default_factory=dict)

    @property
    def upstream_ns(self) -> str:
        return f"{self.prefix}-{UPSTREAM}"

    @property
    def peer_ns(self) -> str:
        return f"{self.prefix}-{PEER}"

    def host_ns(self, hostname: str) -> str:
        return self.host_namespaces[hostname]

    def namespaces(self) -> list[str]:
        return [
            self.upstream_ns,
            self.peer_ns,
            *self.host_namespaces.values(),
            *(vm.namespace for vm in self.vms if not vm.qemu),
        ]

    def qemu_hosts(self) -> list[str]:
        """Hosts that run a QEMU VM now, hence a libvirtd and an agent (in host order)."""
        hosts = {vm.host for vm in self.vms if vm.qemu}
        return [h for h in self.host_namespaces if h in hosts]

    def vm(self, name: str) -> VmPlan:
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def links_of(self, hostname: str) -> list[UplinkLink]:
        return [link for link in self.links if link.host == hostname]

    def vm_addresses(self, hosts: set[str] | None = None) -> set[str]:
        """Every VM address as a host prefix (`/32`, `/128`), optionally of some hosts."""
        out = set()
        for vm in self.vms:
            if hosts is None or vm.host in hosts:
                out |= {str(ipaddress.ip_network(a)) for a in vm.addresses}
        return out


def _peer_address(host_iface: str, neighbors: list[str]) -> str:
    """The upstream's address on the link of host address `host_iface`."""
    iface = ipaddress.ip_interface(host_iface)
    for neighbor in neighbors:
        if ipaddress.ip_address(neighbor) in iface.network:
            return f"{neighbor}/{iface.network.prefixlen}"
    for candidate in iface.network:  # /31, /127: the other end; else the first free one
        if candidate != iface.ip and (
            iface.network.prefixlen >= iface.max_prefixlen - 1
            or candidate not in (iface.network.network_address, iface.network.broadcast_address)
        ):
            return f"{candidate}/{iface.network.prefixlen}"
    raise ValueError(f"no free address for the upstream on {host_iface}")


def _upstream_iface(hostname: str, ifname: str, host_index: int, uplink_index: int) -> str:
    name = f"{hostname}-{ifname}"
    return name if len(name) <= 15 else f"h{host_index}u{uplink_index}"


def plan_lab(fleet: Fleet, prefix: str, moves: dict[str, str] | None = None) -> LabPlan:
    """The lab of `fleet`; `moves` (VM -> host) records VMs migrated since `up`."""
    moves = moves or {}
    links = []
    for hi, host in enumerate(fleet.hosts):
        for ui, uplink in enumerate(host.uplinks):
            neighbors = uplink.bgp.neighbors if uplink.bgp else []
            links.append(
                UplinkLink(
                    host=host.hostname,
                    host_iface=uplink.interface,
                    upstream_iface=_upstream_iface(host.hostname, uplink.interface, hi, ui),
                    host_addresses=tuple(uplink.addresses),
                    upstream_addresses=tuple(_peer_address(a, neighbors) for a in uplink.addresses),
                    uplink=uplink,
                )
            )
    vms = tuple(
        VmPlan(
            name=vm.name,
            host=moves.get(vm.name, vm.host),
            mac=vm.mac,
            addresses=tuple(vm.addresses),
            namespace=f"{prefix}-vm-{vm.name}",
            host_port=f"vm-{vm.name}",
            kind=vm.kind,
        )
        for vm in fleet.lab.vms
    )
    namespaces = {host.hostname: f"{prefix}-{host.hostname}" for host in fleet.hosts}
    return LabPlan(prefix, fleet, tuple(links), vms, namespaces)


def host_versions(host: Host) -> set[int]:
    """IP versions a host learns a default route for from its uplinks."""
    versions: set[int] = set()
    for uplink in host.uplinks:
        if uplink.bgp and uplink.bgp.unnumbered:
            versions |= {4, 6}
        if uplink.bgp:
            versions |= {ipaddress.ip_address(n).version for n in uplink.bgp.neighbors}
        if uplink.ospf:
            versions.add(4)
        if uplink.ospf6:
            versions.add(6)
    return versions


def ospf_bfd(uplink: Uplink, host: Host, v3: bool) -> bool:
    """Whether the host runs BFD for OSPFv2 (or v3) on this uplink, as frr.conf says."""
    ospf = uplink.ospf6 if v3 else uplink.ospf
    if ospf is None:
        return False
    return bool(ospf.bfd) if ospf.bfd is not None else uplink.has_bfd(host.bfd)


def bgp_bfd(uplink: Uplink, host: Host) -> bool:
    if uplink.bgp is None:
        return False
    return bool(uplink.bgp.bfd) if uplink.bgp.bfd is not None else uplink.has_bfd(host.bfd)


def bfd_sessions(host: Host) -> set[str]:
    """The BFD sessions a host's inventory asks for, as `lab verify` names them.

    A numbered BGP neighbour by its address; a session whose peer address is
    the upstream's (OSPF, unnumbered BGP: a link-local) by interface and
    family. Protocols sharing a peer share one session, as in bfdd.
    """
    out: set[str] = set()
    for uplink in host.uplinks:
        if bgp_bfd(uplink, host):
            assert uplink.bgp is not None
            out |= set(uplink.bgp.neighbors)
            if uplink.bgp.unnumbered:
                out.add(f"{uplink.interface} ipv6")
        if ospf_bfd(uplink, host, v3=False):
            out.add(f"{uplink.interface} ipv4")
        if ospf_bfd(uplink, host, v3=True):
            out.add(f"{uplink.interface} ipv6")
    return out


def bfd_session_names(peers: list[dict[str, object]], expected: set[str]) -> set[str]:
    """`show bfd peers json` -> the names of the sessions that are up, as bfd_sessions names them.

    A session that is not up gets its state appended, so it shows as extra.
    """
    out = set()
    for peer in peers:
        addr = str(peer.get("peer", ""))
        iface = str(peer.get("interface", ""))
        version = ipaddress.ip_address(addr).version if addr else 4
        name = addr if addr in expected else f"{iface} ipv{version}"
        status = peer.get("status")
        out.add(name if status == "up" else f"{name} {status}")
    return out
