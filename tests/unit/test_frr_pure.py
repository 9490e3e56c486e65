"""Pure parts of the FRR drivers: gate edits and parsing, vtysh commands and parsing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from frrctl.frr.base import DriverError
from frrctl.frr.gate import (
    SENTINEL_SEQ,
    Gate,
    GateError,
    GateState,
    build_edit,
    gate_state,
    nudge_edit,
)
from frrctl.frr.vty import VtyReply
from frrctl.frr.vtysh import (
    RunningConfigError,
    failures,
    missing_in_rib,
    originated_in_rib,
    parse_networks,
    plan_commands,
)
from frrctl.policy import Plan, diff, parse_prefix

P = parse_prefix
GATE = Gate(shards=4)


def frr_json(state: dict[tuple[int, int], dict[int, str]], gshut: bool = False) -> dict[str, Any]:
    """What FRR's Get answers for a gate in this state (shape as measured on 8.4)."""
    plists = []
    for (version, shard), members in state.items():
        fam = f"ipv{version}"
        rows: list[dict[str, object]] = [
            {"sequence": s, "action": "permit", f"{fam}-prefix": p} for s, p in members.items()
        ]
        rows.append({"sequence": SENTINEL_SEQ, "action": "deny", "any": [None]})
        plists.append({"type": fam, "name": GATE.prefix_list(version, shard), "entry": rows})
    rmaps = []
    for version in (4, 6):
        fam = f"ipv{version}"
        entries: list[dict[str, object]] = []
        for shard in range(GATE.shards):
            entry: dict[str, object] = {
                "sequence": GATE.rmap_seq(shard),
                "action": "permit",
                "match-condition": [
                    {
                        "condition": "frr-route-map:interface",
                        "rmap-match-condition": {"interface": "cloudbr0"},
                    },
                    {
                        "condition": f"frr-route-map:{fam}-prefix-list",
                        "rmap-match-condition": {"list-name": GATE.prefix_list(version, shard)},
                    },
                ],
            }
            if gshut:
                entry["set-action"] = [
                    {
                        "action": "frr-bgp-route-map:set-community",
                        "rmap-set-action": {
                            "frr-bgp-route-map:community-string": "graceful-shutdown additive"
                        },
                    }
                ]
            entries.append(entry)
        rmaps.append({"name": GATE.route_map(version), "entry": entries})
    return {"frr-filter:lib": {"prefix-list": plists}, "frr-route-map:lib": {"route-map": rmaps}}


def test_shard_is_stable_and_spreads() -> None:
    shards = {GATE.shard(P(f"192.0.2.{i}/32")) for i in range(8)}
    assert shards == {0, 1, 2, 3}
    assert GATE.prefix_list(4, 3) == "frrctl-announce-v4-3"
    assert Gate(shards=64).prefix_list(6, 7) == "frrctl-announce-v6-07"


def test_empty_frr_gets_everything_in_one_edit() -> None:
    plan = diff({P("192.0.2.1/32"): False}, {})
    edit = build_edit(GATE, GateState(), plan)
    paths = [p for p, _ in edit.update]
    # 8 sentinels (2 each), 8 route-map entries (3 each), 1 prefix (2)
    assert len(paths) == 8 * 2 + 8 * 3 + 2
    assert f"{GATE.plist_xpath(4, 1)}/entry[sequence='1']/ipv4-prefix" in paths
    assert (
        f"{GATE.plist_xpath(4, 1)}/entry[sequence='1']/ipv4-prefix",
        "192.0.2.1/32",
    ) in edit.update
    assert edit.delete == ()


def test_parse_round_trip_and_minimal_edits() -> None:
    data = frr_json(
        {(4, 1): {1: "192.0.2.1/32", 2: "192.0.2.5/32"}, (6, 0): {7: "2001:db8::4/128"}}
    )
    state = gate_state(GATE, data)
    assert state.announced() == {
        P("192.0.2.1/32"): False,
        P("192.0.2.5/32"): False,
        P("2001:db8::4/128"): False,
    }
    assert all(state.rmap_ok.values())
    # a withdraw is one delete; an add takes the lowest free sequence
    plan = diff(
        {P("192.0.2.5/32"): False, P("192.0.2.9/32"): False, P("2001:db8::4/128"): False},
        state.announced(),
    )
    edit = build_edit(GATE, state, plan)
    assert edit.delete == (f"{GATE.plist_xpath(4, 1)}/entry[sequence='1']",)
    # sentinels exist for the two lists read; the other six get theirs now
    assert (
        f"{GATE.plist_xpath(4, 1)}/entry[sequence='3']/ipv4-prefix",
        "192.0.2.9/32",
    ) in edit.update
    assert not any("route-map" in p for p, _ in edit.update)


def test_graceful_shutdown_toggles_route_map_only() -> None:
    data = frr_json({(4, 1): {1: "192.0.2.1/32"}})
    state = gate_state(GATE, data)
    edit = build_edit(GATE, state, diff({P("192.0.2.1/32"): True}, state.announced()))
    assert all("set-action" in p for p, _ in edit.update if "route-map" in p)
    assert sum(1 for p, _ in edit.update if "set-action" in p) == 8
    on = gate_state(GATE, frr_json({(4, 1): {1: "192.0.2.1/32"}}, gshut=True))
    assert on.announced() == {P("192.0.2.1/32"): True}
    edit = build_edit(GATE, on, diff({P("192.0.2.1/32"): False}, on.announced()))
    assert len(edit.delete) == 8 and not [p for p, _ in edit.update if "prefix-list" not in p]
    with pytest.raises(GateError):
        build_edit(
            GATE, state, Plan(announce=((P("192.0.2.2/32"), True), (P("192.0.2.3/32"), False)))
        )


def test_nudge_moves_one_entry_per_family_and_keeps_the_announced_set() -> None:
    data = frr_json(
        {(4, 1): {1: "192.0.2.1/32", 2: "192.0.2.5/32"}, (6, 0): {7: "2001:db8::4/128"}}
    )
    state = gate_state(GATE, data)
    edit = nudge_edit(GATE, state, [P("192.0.2.5/32"), P("192.0.2.1/32"), P("2001:db8::4/128")])
    assert edit.delete == (
        f"{GATE.plist_xpath(4, 1)}/entry[sequence='1']",
        f"{GATE.plist_xpath(6, 0)}/entry[sequence='7']",
    )
    assert set(edit.update) == {
        (f"{GATE.plist_xpath(4, 1)}/entry[sequence='3']/action", "permit"),
        (f"{GATE.plist_xpath(4, 1)}/entry[sequence='3']/ipv4-prefix", "192.0.2.1/32"),
        (f"{GATE.plist_xpath(6, 0)}/entry[sequence='1']/action", "permit"),
        (f"{GATE.plist_xpath(6, 0)}/entry[sequence='1']/ipv6-prefix", "2001:db8::4/128"),
    }
    # prefixes the gate does not hold need no nudge (adding them resends anyway)
    assert not nudge_edit(GATE, state, [P("192.0.2.9/32")])


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


def test_foreign_entries_are_refused() -> None:
    data = frr_json({(4, 1): {1: "192.0.2.1/32"}})
    data["frr-filter:lib"]["prefix-list"][0]["entry"].append(
        {"sequence": 9, "action": "permit", "ipv4-prefix": "192.0.2.0/24"}
    )
    with pytest.raises(GateError, match="unexpected"):
        gate_state(GATE, data)


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
