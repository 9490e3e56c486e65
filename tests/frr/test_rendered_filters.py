"""Every BGP session of every rendered host carries both prefix-lists in every family it is
active in, as real bgpd sees it (`show bgp neighbors json`).

FRR activates a neighbour in IPv4 unicast by default, also an IPv6 one: a family
that the config never mentions is active with no filter at all (issue 10, 3.2).
The check reads what bgpd holds, not the rendered text, so it catches that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from frrctl.inventory import Fleet, load_inventory
from frrctl.lab import netns
from frrctl.lab.frrproc import enabled_daemons
from frrctl.render import DEFAULT_LIST, POOL_LIST, bgp_section, render_fleet
from tests.conftest import ROOT, needs_lab
from tests.frr.rendered_host import running_host

pytestmark = [needs_lab, pytest.mark.lab]
FLEETS = {
    "example": load_inventory(ROOT / "examples" / "fleet.yaml"),
    "edge": load_inventory(ROOT / "tests" / "data" / "edge-fleet.yaml"),
}
RENDERED = {name: render_fleet(fleet) for name, fleet in FLEETS.items()}
HOSTS = [(name, host) for name in sorted(FLEETS) for host in sorted(RENDERED[name])]
BGP_HOSTS = [(name, host) for name, host in HOSTS if FLEETS[name].host(host).runs_bgp]
# bgpd's JSON names (bgpd/bgp_vty.c, FRR 8.4.4: bgp_show_peer_afi, get_afi_safi_str)
FAMILY_KEY = {4: "ipv4Unicast", 6: "ipv6Unicast"}
IN_KEY, OUT_KEY = "incomingUpdatePrefixFilterList", "outgoingUpdatePrefixFilterList"


def unfiltered(neighbors: dict[str, Any]) -> list[str]:
    """'NEIGHBOR FAMILY: no in/out prefix-list' for every active family lacking one."""
    problems = []
    for name, neighbor in sorted(neighbors.items()):
        for family, info in sorted(neighbor.get("addressFamilyInfo", {}).items()):
            for key, what in ((IN_KEY, "inbound"), (OUT_KEY, "outbound")):
                if not info.get(key):
                    problems.append(f"{name} {family}: no {what} prefix-list")
    return problems


def families(neighbors: dict[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """{neighbor: {family: (in list, out list)}} as bgpd holds them."""
    return {
        name: {
            family: (info.get(IN_KEY, ""), info.get(OUT_KEY, ""))
            for family, info in neighbor.get("addressFamilyInfo", {}).items()
        }
        for name, neighbor in neighbors.items()
    }


def expected_families(fleet: Fleet, hostname: str) -> dict[str, dict[str, tuple[str, str]]]:
    bgp = bgp_section(fleet.host(hostname))
    assert bgp is not None
    return {
        n.name: {FAMILY_KEY[v]: (DEFAULT_LIST[v], POOL_LIST[v]) for v in sorted(n.versions)}
        for n in bgp.neighbors
    }


def show_neighbors(ns: str, vty: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(netns.vtysh(ns, vty, "show bgp neighbors json"))
    return data


def test_every_bgp_host_is_checked() -> None:
    """The parametrised test below covers every host that runs BGP; the others have
    no BGP section and no bgpd."""
    for fleet_name, hostname in HOSTS:
        files = RENDERED[fleet_name][hostname]
        bgp = (fleet_name, hostname) in BGP_HOSTS
        assert ("router bgp" in files["frr.conf"]) is bgp
        assert ("bgpd" in enabled_daemons(files["daemons"])) is bgp
    assert len(BGP_HOSTS) == 7 and len(HOSTS) == 9


@pytest.mark.parametrize(("fleet_name", "hostname"), BGP_HOSTS)
def test_every_active_family_has_both_prefix_lists(fleet_name: str, hostname: str) -> None:
    fleet = FLEETS[fleet_name]
    with running_host(fleet, hostname, RENDERED[fleet_name][hostname]) as (ns, vty):
        neighbors = show_neighbors(ns, vty)
        assert unfiltered(neighbors) == []
        # Active exactly in the families the inventory gives each session, with the
        # right lists: an IPv6 session is not active in IPv4, and the reverse.
        assert families(neighbors) == expected_families(fleet, hostname)
        # The check can fail: a family left without its outbound list is reported.
        name, active = sorted(families(neighbors).items())[0]
        family = sorted(active)[0]
        afi = "ipv4" if family == "ipv4Unicast" else "ipv6"
        netns.vtysh(
            ns,
            vty,
            "configure terminal",
            f"router bgp {fleet.host(hostname).asn}",
            f"address-family {afi} unicast",
            f"no neighbor {name} prefix-list {active[family][1]} out",
        )
        assert unfiltered(show_neighbors(ns, vty)) == [f"{name} {family}: no outbound prefix-list"]
