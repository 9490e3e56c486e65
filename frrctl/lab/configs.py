"""Configs of the lab's own routers: the upstream FRR and the ExaBGP test peer (pure).

The upstream plays the fabric: BGP with every BGP host (numbered or
unnumbered), OSPFv2/OSPFv3 with every OSPF host, each OSPF host's area an NSSA
with `no-summary` (the host gets only a default route), `default-originate`
to every BGP host, plus extra prefixes that the hosts must refuse. Toward
ExaBGP it passes on everything it learned, except its own originations, so
that whatever a host leaks shows up at the test peer.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frrctl.lab.netns import recorder_command
from frrctl.lab.topology import PEER_IFACE, PEER_LINK6, LabPlan, bgp_bfd, ospf_bfd
from frrctl.render import _environment


@dataclass(frozen=True)
class UpstreamNeighbor:
    name: str
    unnumbered: bool
    remote_as: int
    versions: frozenset[int]
    bfd: bool


def _upstream_neighbors(plan: LabPlan) -> list[UpstreamNeighbor]:
    out = []
    for link in plan.links:
        uplink = link.uplink
        if uplink.bgp is None:
            continue
        host = plan.fleet.host(link.host)
        assert host.asn is not None
        bfd = bgp_bfd(uplink, host)
        if uplink.bgp.unnumbered:
            out.append(
                UpstreamNeighbor(link.upstream_iface, True, host.asn, frozenset({4, 6}), bfd)
            )
        for neighbor in uplink.bgp.neighbors:
            # The upstream peers with the host's address in the neighbour's subnet.
            addr = ipaddress.ip_address(neighbor)
            for text in link.host_addresses:
                iface = ipaddress.ip_interface(text)
                if addr in iface.network:
                    out.append(
                        UpstreamNeighbor(
                            str(iface.ip), False, host.asn, frozenset({addr.version}), bfd
                        )
                    )
    return out


def upstream_context(plan: LabPlan) -> dict[str, Any]:
    lab = plan.fleet.lab
    ospf = [link for link in plan.links if link.uplink.ospf]
    ospf6 = [link for link in plan.links if link.uplink.ospf6]
    extras = {4: [], 6: []}  # type: dict[int, list[str]]
    for text in lab.upstream.extra_prefixes:
        net = ipaddress.ip_network(text)
        extras[net.version].append(str(net))
    neighbors = _upstream_neighbors(plan)
    # The upstream runs BFD on an OSPF link wherever the host does, so the
    # host's sessions come up (and `lab verify` checks that they did).
    hosts = {h.hostname: h for h in plan.fleet.hosts}
    ospf_bfd_ifaces = {
        (link.upstream_iface, v3)
        for link in plan.links
        for v3 in (False, True)
        if ospf_bfd(link.uplink, hosts[link.host], v3)
    }
    return {
        "lab": lab,
        "ospf_links": ospf,
        "ospf6_links": ospf6,
        "igp_links": [link for link in plan.links if link.uplink.ospf or link.uplink.ospf6],
        "ospf_areas": sorted({link.uplink.ospf.area for link in ospf}),  # type: ignore[union-attr]
        "ospf6_areas": sorted({link.uplink.ospf6.area for link in ospf6}),  # type: ignore[union-attr]
        "neighbors": neighbors,
        "ospf_bfd": ospf_bfd_ifaces,
        "bfd": any(n.bfd for n in neighbors) or bool(ospf_bfd_ifaces),
        "extras": extras,
        "peer_address": lab.exabgp.address,
    }


def upstream_daemons(plan: LabPlan) -> list[str]:
    ctx = upstream_context(plan)
    daemons = ["zebra", "bgpd"]
    if ctx["ospf_links"]:
        daemons.append("ospfd")
    if ctx["ospf6_links"]:
        daemons.append("ospf6d")
    if ctx["bfd"]:
        daemons.append("bfdd")
    return daemons


def upstream_config(plan: LabPlan) -> str:
    return _environment().get_template("lab/upstream.conf.j2").render(upstream_context(plan))


def exabgp_config(plan: LabPlan, record_path: Path) -> str:
    lab = plan.fleet.lab
    recorder = recorder_command(record_path)
    return (
        _environment()
        .get_template("lab/exabgp.conf.j2")
        .render(lab=lab, recorder=recorder, iface=PEER_IFACE, link6=PEER_LINK6)
    )
