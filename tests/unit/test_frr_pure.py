"""Pure parts of the FRR drivers: vtysh commands and parsing."""

from __future__ import annotations

import json

import pytest

from frrctl.frr.base import DriverError
from frrctl.frr.vty import VtyReply
from frrctl.frr.vtysh import (
    RunningConfigError,
    failures,
    missing_in_rib,
    originated_in_rib,
    parse_networks,
    plan_commands,
)
from frrctl.policy import diff, parse_prefix

P = parse_prefix


def test_missing_in_rib_wants_a_valid_path() -> None:
    v4 = {
        "routes": {
            "192.0.2.1/32": [{"valid": True, "bestpath": True}],
            "192.0.2.2/32": [{"valid": False}],
        }
    }
    tables = {"ipv4": json.dumps(v4), "ipv6": "{}"}
    got = missing_in_rib(
        tables, [P("192.0.2.2/32"), P("192.0.2.1/32"), P("2001:db8::4/128"), P("192.0.2.3/32")]
    )
    assert got == [P("192.0.2.2/32"), P("192.0.2.3/32"), P("2001:db8::4/128")]
    with pytest.raises(DriverError, match="unreadable"):
        missing_in_rib({"ipv4": "{oops", "ipv6": "{}"}, [])


def test_originated_in_rib_is_what_bgpd_sources_itself() -> None:
    v4 = {
        "routes": {
            "192.0.2.1/32": [{"valid": True, "peerId": "(unspec)", "origin": "incomplete"}],
            "0.0.0.0/0": [{"valid": True, "peerId": "198.18.0.0"}],
        }
    }
    v6 = {"routes": {"2001:db8::4/128": [{"peerId": "(unspec)"}, {"peerId": "2001:db8::1"}]}}
    tables = {"ipv4": json.dumps(v4), "ipv6": json.dumps(v6)}
    assert originated_in_rib(tables) == {P("192.0.2.1/32"), P("2001:db8::4/128")}


RUNNING = """frr version 8.4.4
!
router bgp 64512 vrf red
 address-family ipv4 unicast
  network 203.0.113.1/32
 exit-address-family
exit
!
router bgp 64512
 bgp router-id 192.0.2.1
 !
 address-family ipv4 unicast
  network 192.0.2.30/32
  network 192.0.2.31/32 route-map frrctl-gshut
 exit-address-family
 !
 address-family ipv6 unicast
  network 2001:db8:100::80/128
 exit-address-family
 address-family l2vpn evpn
  network 198.51.100.1/32
 exit-address-family
exit
!
"""


def test_parse_networks() -> None:
    assert parse_networks(RUNNING, 64512) == {
        P("192.0.2.30/32"): False,
        P("192.0.2.31/32"): True,
        P("2001:db8:100::80/128"): False,
    }
    with pytest.raises(RunningConfigError):
        parse_networks(RUNNING, 65000)


def test_plan_commands() -> None:
    plan = diff({P("192.0.2.1/32"): True, P("2001:db8::1/128"): False}, {P("192.0.2.9/32"): False})
    assert plan_commands(64512, plan) == [
        "configure terminal",
        "route-map frrctl-gshut permit 10",
        " set community graceful-shutdown additive",
        "exit",
        "router bgp 64512",
        "address-family ipv4 unicast",
        "no network 192.0.2.9/32",
        "network 192.0.2.1/32 route-map frrctl-gshut",
        "exit-address-family",
        "address-family ipv6 unicast",
        "network 2001:db8::1/128",
        "exit-address-family",
        "end",
    ]


def test_failures_ignore_withdrawing_a_missing_network() -> None:
    replies = [
        VtyReply("no network 192.0.2.9/32", 13, "% Can't find static route specified\n"),
        VtyReply("network 192.0.2.1/32", 0, ""),
        VtyReply("network 192.0.2.300/32", 2, "% Unknown command"),
    ]
    assert [r.command for r in failures(replies)] == ["network 192.0.2.300/32"]
