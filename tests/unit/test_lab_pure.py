"""The lab's pure parts: topology plan, ExaBGP record, kernel and OSPF tables."""

from __future__ import annotations

import json
from pathlib import Path

from frrctl.inventory import load_inventory
from frrctl.lab.configs import upstream_config, upstream_daemons
from frrctl.lab.netns import parse_reload_test
from frrctl.lab.topology import bfd_session_names, bfd_sessions, host_versions, plan_lab
from frrctl.lab.verify import (
    compare,
    exabgp_prefixes,
    learned_routes,
    ospf6_external_routes,
    ospf_external_routes,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def _update(
    announce: dict[str, list[str]] | None = None, withdraw: dict[str, list[str]] | None = None
) -> str:
    update: dict[str, object] = {}
    if announce:
        update["announce"] = {
            f: {"198.18.255.0": [{"nlri": p} for p in ps]} for f, ps in announce.items()
        }
    if withdraw:
        update["withdraw"] = {f: [{"nlri": p} for p in ps] for f, ps in withdraw.items()}
    return json.dumps({"type": "update", "neighbor": {"message": {"update": update}}})


def test_exabgp_record_announce_withdraw_and_session_loss() -> None:
    lines = [
        _update(
            {
                "ipv4 unicast": ["192.0.2.10/32", "192.0.2.11/32"],
                "ipv6 unicast": ["2001:db8:100::10/128"],
            }
        ),
        _update(withdraw={"ipv4 unicast": ["192.0.2.11/32"]}),
        "not json",
    ]
    assert exabgp_prefixes(lines) == {"192.0.2.10/32", "2001:db8:100::10/128"}
    down = json.dumps({"type": "state", "neighbor": {"state": "down"}})
    assert exabgp_prefixes([*lines, down]) == set()
    assert exabgp_prefixes([*lines, down, _update({"ipv4 unicast": ["192.0.2.12/32"]})]) == {
        "192.0.2.12/32"
    }


def test_learned_routes_ignore_connected_and_vm_routes() -> None:
    routes = [
        {"dst": "default", "protocol": "bgp"},
        {"dst": "192.0.2.20", "dev": "cloudbr0", "scope": "link"},  # boot: no protocol field
        {"dst": "198.18.0.0/31", "protocol": "kernel"},
        {"dst": "198.18.200.0/24", "protocol": "bgp"},
        {"dst": "224.0.0.0/4", "type": "multicast", "protocol": "ospf"},
        # zebra's copy of the grpc driver's own route; a static elsewhere counts
        {"dst": "192.0.2.20", "dev": "cloudbr0", "protocol": "static", "metric": 20},
        {"dst": "198.18.201.0/24", "dev": "eth0", "protocol": "static"},
    ]
    assert learned_routes(routes) == {"default", "198.18.200.0/24", "198.18.201.0/24"}


def test_ospf_external_routes() -> None:
    show = {
        "198.18.0.4/31": {"routeType": "N"},
        "198.51.100.3": {"routeType": "R "},
        "203.0.113.7/32": {"routeType": "N E2"},
        "192.0.2.9/32": {"routeType": "E1"},
    }
    assert ospf_external_routes(show) == {"203.0.113.7/32", "192.0.2.9/32"}
    show6 = {
        "routes": {
            "2001:db8:ff::1/128": {"pathType": "IA"},
            "2001:db8:100::30/128": {"pathType": "E2"},
        }
    }
    assert ospf6_external_routes(show6) == {"2001:db8:100::30/128"}


def test_compare_reports_missing_and_extra() -> None:
    check = compare("x", ["192.0.2.1/32", "192.0.2.2/32"], ["192.0.2.2/32", "192.0.2.3/32"])
    assert not check.ok
    assert check.missing == ["192.0.2.1/32"] and check.extra == ["192.0.2.3/32"]


def test_plan_addresses_and_names() -> None:
    plan = plan_lab(load_inventory(EXAMPLE), "flabcdef")
    hv1 = plan.links_of("hv1")[0]
    assert hv1.upstream_iface == "hv1-eth0"
    assert hv1.upstream_addresses == ("198.18.0.0/31", "2001:db8:ffff:1::2/64")
    hv3 = plan.links_of("hv3")[0]
    assert hv3.upstream_addresses == ("198.18.0.4/31",)  # the other end of the /31
    assert plan.links_of("hv2")[0].upstream_addresses == ()  # unnumbered
    assert all(ns.startswith("flabcdef-") for ns in plan.namespaces())
    assert len(set(plan.namespaces())) == len(plan.namespaces())
    assert "2001:db8:200::10/128" in plan.vm_addresses({"hv4"})
    fleet = plan.fleet
    assert host_versions(fleet.host("hv4")) == {6}
    assert host_versions(fleet.host("hv2")) == {4, 6}


def test_upstream_config() -> None:
    plan = plan_lab(load_inventory(EXAMPLE), "flabcdef")
    conf = upstream_config(plan)
    assert " neighbor 198.18.0.1 remote-as 65001" in conf
    assert " neighbor hv2-eth0 interface remote-as 4200000002" in conf
    assert " area 0.0.0.3 nssa no-summary" in conf
    assert "  network 198.18.200.0/24" in conf
    assert upstream_daemons(plan) == ["zebra", "bgpd", "ospfd", "ospf6d", "bfdd"]


def test_parse_reload_test() -> None:
    out = (
        "\nLines To Delete\n===============\nno hostname vm\n"
        "\nLines To Add\n============\nhostname hv1\n"
    )
    assert parse_reload_test(out) == ["-no hostname vm", "+hostname hv1"]
    assert parse_reload_test("") == []


def test_static_config_changes_ignore_the_daemons_own_statements() -> None:
    from frrctl.lab.verify import static_config_changes

    daemon = ["-address-family ipv4 unicast", "-no network 192.0.2.10/32", "-router bgp 65001"]
    assert static_config_changes(daemon, controller=True) == []
    assert static_config_changes(daemon, controller=False) == daemon
    static = ["+no ip route 192.0.2.10/32 cloudbr0", "+no ipv6 route 2001:db8::10/128 cloudbr0"]
    assert static_config_changes(static, controller=True) == []  # the grpc driver's routes
    drift = [*daemon, "+neighbor 198.18.0.0 bfd"]
    assert static_config_changes(drift, controller=True) == [
        "-address-family ipv4 unicast",
        "-router bgp 65001",
        "+neighbor 198.18.0.0 bfd",
    ]


def test_bfd_sessions_expected_and_read_back(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.yaml"
    inv.write_text(
        EXAMPLE.read_text().replace("  - hostname: hv3\n", "  - hostname: hv3\n    bfd: true\n")
    )
    plan = plan_lab(load_inventory(inv), "flabcdef")
    fleet = plan.fleet
    assert bfd_sessions(fleet.host("hv1")) == {"198.18.0.0", "2001:db8:ffff:1::2"}
    assert bfd_sessions(fleet.host("hv3")) == {"eth0 ipv4", "eth0 ipv6"}
    assert bfd_sessions(fleet.host("hv2")) == set()
    conf = upstream_config(plan)
    # the upstream runs BFD on hv3's OSPF link too, in both protocols
    hv3 = conf[conf.index("interface hv3-eth0") :].split("exit")[0]
    assert " ip ospf bfd" in hv3 and " ipv6 ospf6 bfd" in hv3
    peers = [
        {"peer": "198.18.0.4", "interface": "eth0", "status": "up"},
        {"peer": "fe80::1:2", "interface": "eth0", "status": "down"},
    ]
    got = bfd_session_names(peers, {"eth0 ipv4", "eth0 ipv6"})
    assert got == {"eth0 ipv4", "eth0 ipv6 down"}
    check = compare("hv3: BFD sessions up", {"eth0 ipv4", "eth0 ipv6"}, got)
    assert check.missing == ["eth0 ipv6"] and check.extra == ["eth0 ipv6 down"]
