"""The OSPF gate in front of only-cloud, without FRR: parsing and commands."""

from __future__ import annotations

import pytest

from frrctl.frr.ospf import OspfGateState, admission_closed, gate_commands, parse_gate
from frrctl.policy import parse_prefix

P = parse_prefix

RUNNING = """frr version 8.4.4
hostname h
ip prefix-list cloud-pool-v4 seq 10 permit 192.0.2.0/25 ge 32
ip prefix-list frrctl-block-v4 seq 1 permit 192.0.2.31/32
ip prefix-list frrctl-block-v4 seq 3 permit 192.0.2.33/32
ip prefix-list frrctl-block-v4 seq 4294967295 deny any
!
route-map only-cloud deny 1
 match ip address prefix-list frrctl-block-v4
exit
!
route-map only-cloud deny 2
exit
!
route-map only-cloud permit 10
 match interface cloudbr0
 match ip address prefix-list cloud-pool-v4
exit
"""


def test_parse_gate() -> None:
    state = parse_gate(RUNNING, 4)
    assert state.blocked == {P("192.0.2.31/32"): 1, P("192.0.2.33/32"): 3}
    assert state.sentinel and state.block_entry and state.drained
    assert parse_gate(RUNNING, 6) == OspfGateState()  # ospf6d has its own only-cloud-v6


def test_no_commands_when_the_gate_matches() -> None:
    state = parse_gate(RUNNING, 4)
    assert gate_commands(state, [P("192.0.2.31/32"), P("192.0.2.33/32")], True, 4) == []


def test_commands_add_remove_and_undrain() -> None:
    state = parse_gate(RUNNING, 4)
    commands = gate_commands(state, [P("192.0.2.33/32"), P("192.0.2.40/32")], False, 4)
    assert commands == [
        "configure terminal",
        "no ip prefix-list frrctl-block-v4 seq 1 permit 192.0.2.31/32",
        "ip prefix-list frrctl-block-v4 seq 1 permit 192.0.2.40/32",
        "no route-map only-cloud deny 2",
        "end",
    ]


def test_fresh_daemon_gets_the_whole_gate() -> None:
    commands = gate_commands(OspfGateState(), [P("2001:db8:100::80/128")], False, 6)
    assert commands == [
        "configure terminal",
        "ipv6 prefix-list frrctl-block-v6 seq 4294967295 deny any",
        "ipv6 prefix-list frrctl-block-v6 seq 1 permit 2001:db8:100::80/128",
        "route-map only-cloud-v6 deny 1",
        " match ipv6 address prefix-list frrctl-block-v6",
        "exit",
        "end",
    ]
    # IPv4 prefixes never go to ospf6d
    assert "192.0.2.30/32" not in " ".join(
        gate_commands(OspfGateState(), [P("192.0.2.30/32")], False, 6)
    )


def test_gate_removed_when_nothing_is_held_or_drained() -> None:
    state = parse_gate(RUNNING, 4)
    assert gate_commands(state, [], False, 4) == [
        "configure terminal",
        "no route-map only-cloud deny 2",
        "no route-map only-cloud deny 1",
        "no ip prefix-list frrctl-block-v4",
        "end",
    ]
    assert gate_commands(OspfGateState(), [], False, 4) == []


CLOSED = """ip prefix-list frrctl-block-v4 seq 4294967295 deny any
ip prefix-list frrctl-admit-v4 seq 1 deny 192.0.2.30/32
ip prefix-list frrctl-admit-v4 seq 2 deny 192.0.2.32/32
ip prefix-list frrctl-admit-v4 seq 4294967295 permit any
!
route-map only-cloud deny 1
 match ip address prefix-list frrctl-block-v4
exit
!
route-map only-cloud deny 3
 match ip address prefix-list frrctl-admit-v4
exit
!
route-map only-cloud permit 10
 match interface cloudbr0
exit
"""


def test_parse_closed_admission() -> None:
    state = parse_gate(CLOSED, 4)
    assert state.admitted == {P("192.0.2.30/32"): 1, P("192.0.2.32/32"): 2}
    assert state.admit_sentinel and state.admit_entry and not state.drained
    assert state.sentinel and state.block_entry and not state.blocked
    admitted = {P("192.0.2.30/32"), P("192.0.2.32/32")}
    assert gate_commands(state, [], False, 4, admitted) == []


def test_closing_lists_the_admitted_before_the_entry_matches_on_them() -> None:
    commands = gate_commands(OspfGateState(), [], False, 4, {P("192.0.2.30/32")})
    assert commands == [
        "configure terminal",
        "ip prefix-list frrctl-block-v4 seq 4294967295 deny any",
        "route-map only-cloud deny 1",
        " match ip address prefix-list frrctl-block-v4",
        "exit",
        "ip prefix-list frrctl-admit-v4 seq 4294967295 permit any",
        "ip prefix-list frrctl-admit-v4 seq 1 deny 192.0.2.30/32",
        "route-map only-cloud deny 3",
        " match ip address prefix-list frrctl-admit-v4",
        "exit",
        "end",
    ]
    # closed with nothing admitted: every new route waits (the sentinel alone)
    empty = gate_commands(OspfGateState(), [], False, 6, set())
    assert "ipv6 prefix-list frrctl-admit-v6 seq 4294967295 permit any" in empty
    assert "route-map only-cloud-v6 deny 3" in empty


def test_admit_more_and_fewer_while_closed() -> None:
    state = parse_gate(CLOSED, 4)
    admitted = {P("192.0.2.32/32"), P("192.0.2.40/32"), P("2001:db8::1/128")}
    assert gate_commands(state, [], False, 4, admitted) == [
        "configure terminal",
        "no ip prefix-list frrctl-admit-v4 seq 1 deny 192.0.2.30/32",
        "ip prefix-list frrctl-admit-v4 seq 1 deny 192.0.2.40/32",
        "end",
    ]


def test_opening_removes_the_entry_before_its_list() -> None:
    state = parse_gate(CLOSED, 4)
    assert gate_commands(state, [], False, 4, None) == [
        "configure terminal",
        "no route-map only-cloud deny 3",
        "no ip prefix-list frrctl-admit-v4",
        "no route-map only-cloud deny 1",
        "no ip prefix-list frrctl-block-v4",
        "end",
    ]
    # open while something is held: the hold is in place before admission opens
    held = gate_commands(state, [P("192.0.2.31/32")], False, 4, None)
    assert held == [
        "configure terminal",
        "ip prefix-list frrctl-block-v4 seq 1 permit 192.0.2.31/32",
        "no route-map only-cloud deny 3",
        "no ip prefix-list frrctl-admit-v4",
        "end",
    ]


@pytest.mark.parametrize(
    ("announced", "maximum", "require_neighbor", "closed"),
    [
        (0, 10_000, False, False),
        (8_999, 10_000, False, False),
        (9_000, 10_000, False, True),  # within a tenth of the maximum
        (10_000, 10_000, False, True),
        (0, 10_000, True, True),  # a route may come before its neighbour entry
        (0, 3, False, False),
        (2, 3, False, True),  # headroom is at least one prefix
        (0, 1, False, True),
    ],
)
def test_admission_closes_near_the_maximum(
    announced: int, maximum: int, require_neighbor: bool, closed: bool
) -> None:
    assert admission_closed(announced, maximum, require_neighbor) is closed
