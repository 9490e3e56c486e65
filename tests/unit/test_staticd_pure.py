"""Pure parts of the grpc (staticd) driver: edits, vty batches and read-back parsing."""

from __future__ import annotations

from frrctl.frr.staticd import (
    GSHUT_TAG,
    StaticLayout,
    build_edit,
    parse_routes,
    parse_vty_routes,
    vty_commands,
)
from frrctl.policy import Plan, parse_prefix

P = parse_prefix
LAYOUT = StaticLayout()


def test_a_plan_is_one_xfrr_batch() -> None:
    plan = Plan(
        announce=((P("192.0.2.1/32"), False), (P("2001:db8::1/128"), True)),
        withdraw=(P("192.0.2.2/32"),),
    )
    assert vty_commands(LAYOUT, plan) == [
        "configure terminal",
        "XFRR_start_configuration",
        "ip route 192.0.2.1/32 cloudbr0",
        f"ipv6 route 2001:db8::1/128 cloudbr0 tag {GSHUT_TAG}",
        "no ip route 192.0.2.2/32 cloudbr0",
        "XFRR_end_configuration",
        "end",
    ]
    assert vty_commands(LAYOUT, Plan()) == []


def test_vty_read_back_takes_only_frrctls_routes() -> None:
    config = f"""frr version 8.4.4
ip route 192.0.2.1/32 cloudbr0
ip route 192.0.2.2/32 cloudbr0 tag {GSHUT_TAG}
ip route 192.0.2.3/32 cloudbr0 tag 7
ip route 192.0.2.4/32 eth0
ip route 192.0.2.5/32 cloudbr0
ip route 192.0.2.5/32 cloudbr0 200
ip route 192.0.2.0/24 cloudbr0
ip route 192.0.2.6/32 cloudbr0 250
ipv6 route 2001:db8::1/128 cloudbr0
ipv6 route 2001:db8::/64 cloudbr0
"""
    assert parse_vty_routes(config, LAYOUT) == {
        P("192.0.2.1/32"): False,
        P("192.0.2.2/32"): True,
        P("192.0.2.3/32"): False,  # someone else's tag: announced, not drained
        P("2001:db8::1/128"): False,
    }


def test_grpc_edit_and_read_back_round_trip() -> None:
    plan = Plan(announce=((P("192.0.2.1/32"), True),), withdraw=(P("192.0.2.2/32"),))
    edit = build_edit(LAYOUT, plan)
    assert (LAYOUT.tag_xpath(P("192.0.2.1/32")), str(GSHUT_TAG)) in edit.update
    assert edit.delete == (LAYOUT.route_xpath(P("192.0.2.2/32")),)
    data = {
        "frr-routing:routing": {
            "control-plane-protocols": {
                "control-plane-protocol": [
                    {
                        "type": "frr-staticd:staticd",
                        "frr-staticd:staticd": {
                            "route-list": [
                                {
                                    "prefix": "192.0.2.1/32",
                                    "path-list": [
                                        {
                                            "distance": 1,
                                            "tag": GSHUT_TAG,
                                            "frr-nexthops": {
                                                "nexthop": [{"interface": "cloudbr0"}]
                                            },
                                        }
                                    ],
                                },
                                {
                                    "prefix": "192.0.2.9/32",
                                    "path-list": [
                                        {
                                            "distance": 1,
                                            "frr-nexthops": {"nexthop": [{"interface": "eth0"}]},
                                        }
                                    ],
                                },
                            ]
                        },
                    }
                ]
            }
        }
    }
    assert parse_routes(data, LAYOUT) == {P("192.0.2.1/32"): True}


def test_ospf_only_route_maps_have_no_bgp_community() -> None:
    pools = {4: "cloud-pool-v4", 6: "cloud-pool-v6"}
    assert not any("community" in line for line in LAYOUT.config_lines(pools, bgp=False))
    assert any("graceful-shutdown" in line for line in LAYOUT.config_lines(pools, bgp=True))
