"""The chaos soak's schedule and figures, without a lab (frrctl.lab.chaos is pure there)."""

from __future__ import annotations

import random
from dataclasses import replace

from frrctl.lab.chaos import (
    FORBIDDEN,
    KINDS,
    Event,
    HostModel,
    Outcome,
    World,
    format_summary,
    schedule,
    step,
    summarize,
)


def world() -> World:
    hosts = (
        HostModel("hv1", frozenset({"zebra", "bgpd"}), ("192.0.2.31/32", "192.0.2.32/32")),
        HostModel("hv3", frozenset({"zebra", "ospfd"}), ("192.0.2.41/32",)),
    )
    vms = {
        "vm1": ("hv1", ("192.0.2.10/32", "2001:db8:100::10/128")),
        "vm5": ("hv3", ("203.0.113.7/32",)),
    }
    return World(hosts, vms, {"vm1": ("hv1", "hv3"), "vm5": ("hv3",)})


def test_same_seed_same_schedule_other_seed_other() -> None:
    assert schedule(world(), 7, 50) == schedule(world(), 7, 50)
    assert schedule(world(), 7, 50) != schedule(world(), 8, 50)


def test_long_schedule_uses_every_kind_the_world_allows() -> None:
    kinds = {e.kind for e in schedule(world(), 1, 800)}
    assert kinds == set(KINDS)  # hv1 has bgpd, hv3 ospfd: every kind is possible


def test_daemons_a_host_lacks_are_never_killed() -> None:
    for event in schedule(world(), 3, 400):
        if event.kind == "kill-bgpd" or event.kind == "clear-bgp":
            assert event.host == "hv1"
        if event.kind == "kill-ospfd":
            assert event.host == "hv3"


def test_expected_follows_drain_hold_and_migration() -> None:
    w = world()
    assert w.expected() == {"192.0.2.10/32", "2001:db8:100::10/128", "203.0.113.7/32"}
    drained = replace(w, drained=frozenset({"hv1"}))
    assert drained.expected() == {"203.0.113.7/32"}
    held = replace(w, held={"hv1": frozenset({"192.0.2.10/32"})})
    assert "192.0.2.10/32" not in held.expected()
    # vm1 moves to a drained hv3: gone from the peer although still plugged
    moved = replace(w, vms={**w.vms, "vm1": ("hv3", w.vms["vm1"][1])}, drained=frozenset({"hv3"}))
    assert moved.expected() == frozenset()
    # the hold stays on hv1's operator state: vm1 on hv3 is announced
    moved_held = replace(held, vms={**w.vms, "vm1": ("hv3", w.vms["vm1"][1])})
    assert "192.0.2.10/32" in moved_held.expected()


def test_every_event_is_possible_and_forbidden_prefixes_never_expected() -> None:
    w = world()
    rng = random.Random(11)
    for index in range(500):
        before = w
        event, w = step(w, rng, index)
        assert not set(event.expected) & set(FORBIDDEN)
        assert event.expected == w.expected()
        if event.kind == "unplug-burst":
            assert set(event.prefixes) <= before.plugged[event.host]
        if event.kind == "plug-burst":
            assert set(event.prefixes) <= set(before.host(event.host).free)
            assert not set(event.prefixes) & before.plugged.get(event.host, frozenset())
        if event.kind == "undrain":
            assert event.host in before.drained
        if event.kind == "migrate":
            assert before.vms[event.vm][0] == event.host != event.destination
            assert event.destination in before.destinations[event.vm]
        if event.kind == "forbidden-add":
            assert set(event.prefixes) <= set(FORBIDDEN)


def test_summary_figures_per_kind_and_failures() -> None:
    e = Event(0, "drain", "hv1")
    outcomes = [
        Outcome(e, 0.5),
        Outcome(e, 1.5),
        Outcome(e, 2.5),
        Outcome(Event(1, "hold", "hv1"), None, ["192.0.2.1/32"]),
    ]
    summary = summarize(outcomes, [])
    assert summary["kinds"]["drain"] == {"count": 3, "converged": 3, "p50_s": 1.5, "max_s": 2.5}
    assert summary["kinds"]["hold"]["converged"] == 0 and not summary["ok"]
    assert "not converged: #1 hold on hv1" in format_summary(summary)
    ok = summarize(outcomes[:3], [])
    assert ok["ok"] and ok["liveness_failures"] == []
    bad = summarize(outcomes[:3], [{"time": 0, "prefixes": ["198.18.250.1/32"], "after": "#0"}])
    assert not bad["ok"] and "FORBIDDEN" in format_summary(bad)


def test_excluded_kinds_are_never_drawn_and_bad_ones_refused() -> None:
    import pytest

    from frrctl.lab.chaos import parse_exclude

    exclude = frozenset({parse_exclude("kill-zebra@hv3"), parse_exclude("migrate")})
    events = schedule(world(), 5, 600, exclude)
    assert not [e for e in events if e.kind == "kill-zebra" and e.host == "hv3"]
    assert not [e for e in events if e.kind == "migrate"]
    assert [e for e in events if e.kind == "kill-zebra" and e.host == "hv1"]
    with pytest.raises(ValueError, match="unknown event kind 'kill-all'"):
        parse_exclude("kill-all@hv1")
