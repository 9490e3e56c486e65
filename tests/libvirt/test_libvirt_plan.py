"""Pure: frrctl's libvirt metadata, and what the agent plugs from libvirt's view."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from frrctl.host.state import Instance
from frrctl.libvirt import metadata
from frrctl.libvirt.metadata import MetadataError, Nic
from frrctl.libvirt.plan import (
    PAUSED,
    PAUSED_MIGRATION,
    RUNNING,
    Domain,
    domain_from_xml,
    implied_state,
    instance_name,
    owned,
    paused_here,
    plan,
    runs_here,
)
from frrctl.pools import Pools

A = ipaddress.ip_address
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"


def meta(*nics: tuple[str, list[str]]) -> str:
    return metadata.render([Nic(m, tuple(A(a) for a in addrs)) for m, addrs in nics])


def dom_xml(name: str, ifaces: list[tuple[str, str | None]], meta_xml: str = "") -> str:
    devs = "".join(
        f"<interface type='ethernet'><mac address='{m}'/>"
        + (f"<target dev='{t}'/>" if t else "")
        + "</interface>"
        for m, t in ifaces
    )
    md = f"<metadata>{meta_xml}</metadata>" if meta_xml else ""
    return f"<domain type='qemu'><name>{name}</name>{md}<devices>{devs}</devices></domain>"


def dom(name: str, ifaces: list[tuple[str, str | None]], meta_xml: str = "", state: int = RUNNING,
        reason: int = 1) -> Domain:  # fmt: skip
    return domain_from_xml(name, state, reason, dom_xml(name, ifaces, meta_xml))


def inst(name: str, mac: str, addrs: list[str], port: str | None) -> Instance:
    return Instance(name, "cloudbr0", mac, tuple(A(a) for a in addrs), port)


def prepped(name: str, mac: str, addrs: list[str], port: str) -> Instance:
    return replace(inst(name, mac, addrs, port), prepared=True)


# -- metadata ------------------------------------------------------------------------
def test_render_parse_round_trip_sorted() -> None:
    text = meta((MAC2, ["2001:db8::2", "192.0.2.2"]), (MAC1, ["192.0.2.1"]))
    nics = metadata.parse(text)
    assert [n.mac for n in nics] == [MAC1, MAC2]
    assert nics[1].addresses == (A("192.0.2.2"), A("2001:db8::2"))
    assert metadata.render(nics) == text
    assert 'xmlns:frrctl="urn:frrctl:libvirt:1"' in text


def test_parse_accepts_prefix_length_and_upper_case_mac() -> None:
    text = (f'<f:instance xmlns:f="{metadata.NS}"><f:interface mac="52:54:00:AA:BB:CC">'
            '<f:ip address="192.0.2.7/32"/></f:interface></f:instance>')  # fmt: skip
    assert metadata.parse(text) == (Nic("52:54:00:aa:bb:cc", (A("192.0.2.7"),)),)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('<f:interface mac="52:54:00:00:00:01"><f:ip address="192.0.2.300"/></f:interface>',
         "'192.0.2.300' is not an IPv4 or IPv6 address"),
        ('<f:interface mac="52:54:00:00:00:01"><f:ip address="192.0.2.0/24"/></f:interface>',
         "not a host address"),
        ('<f:interface mac="01:00:5e:00:00:01"><f:ip address="192.0.2.1"/></f:interface>',
         "multicast"),
        ('<f:interface><f:ip address="192.0.2.1"/></f:interface>', "no mac attribute"),
        ('<f:interface mac="52:54:00:00:00:01"/>', "has no address"),
        ('<f:interface mac="52:54:00:00:00:01"><f:ip address="192.0.2.1"/></f:interface>'
         '<f:interface mac="52:54:00:00:00:01"><f:ip address="192.0.2.2"/></f:interface>',
         "given twice"),
        ('<f:interface mac="52:54:00:00:00:01"><f:ip address="192.0.2.1"/></f:interface>'
         '<f:interface mac="52:54:00:00:00:02"><f:ip address="192.0.2.1"/></f:interface>',
         "192.0.2.1 is given for interface 52:54:00:00:00:01 and 52:54:00:00:00:02"),
        ('<f:bogus/>', "unknown element 'bogus'"),
        ('<f:interface mac="52:54:00:00:00:01"><f:addr ip="192.0.2.1"/></f:interface>',
         "expected <ip address=.../>"),
    ],
)  # fmt: skip
def test_bad_metadata_is_one_line(body: str, needle: str) -> None:
    with pytest.raises(MetadataError) as exc:
        metadata.parse(f'<f:instance xmlns:f="{metadata.NS}">{body}</f:instance>')
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_parse_the_form_virdomaingetmetadata_returns() -> None:
    nics = (Nic(MAC1, (A("192.0.2.1"), A("2001:db8::1"))),)
    plain = metadata.render(nics, namespaced=False)
    assert "xmlns" not in plain and plain.startswith("<instance>")
    assert metadata.parse(plain) == nics == metadata.parse(metadata.render(nics))


def test_not_xml() -> None:
    with pytest.raises(MetadataError, match="not XML"):
        metadata.parse("<f:instance")


def test_with_nic_replaces_and_removes() -> None:
    cur = metadata.parse(meta((MAC1, ["192.0.2.1"]), (MAC2, ["192.0.2.2"])))
    new = metadata.with_nic(cur, MAC1, (A("192.0.2.9"),))
    assert new == (Nic(MAC1, (A("192.0.2.9"),)), Nic(MAC2, (A("192.0.2.2"),)))
    assert metadata.with_nic(new, MAC2, None) == (Nic(MAC1, (A("192.0.2.9"),)),)


# -- states ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "reason", "runs", "paused"),
    [(RUNNING, 1, True, False), (RUNNING, 2, True, False),  # booted; resumed after migration
     (PAUSED, 1, False, True),  # paused by a user: goes on here
     (PAUSED, 2, False, False),  # migration: source's final phase / incoming
     (PAUSED, 11, False, False), (PAUSED, 12, False, False), (PAUSED, 3, False, False),
     (5, 1, False, False), (4, 1, False, False), (6, 1, False, False)],  # off, stopping, crashed
)  # fmt: skip
def test_states(state: int, reason: int, runs: bool, paused: bool) -> None:
    assert runs_here(state, reason) is runs
    assert paused_here(state, reason) is paused


def test_paused_by_user_keeps_what_is_plugged_prepares_the_rest() -> None:
    md = meta((MAC1, ["192.0.2.1"]), (MAC2, ["192.0.2.2"]))
    ifaces: list[tuple[str, str | None]] = [(MAC1, "tap1"), (MAC2, "tap2")]
    rec = [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1"),
           inst(f"vm1@{MAC2}", MAC2, ["192.0.2.9"], "tap2")]  # fmt: skip
    p = plan([dom("vm1", ifaces, md, PAUSED, 1)], rec)
    assert [w.name for w in p.keep] == [f"vm1@{MAC1}"] and not p.plug and not p.unplug
    # its data changed while paused: prepared with the new data (the old withdrawn)
    assert [(w.name, w.addresses) for w in p.prepare] == [(f"vm1@{MAC2}", (A("192.0.2.2"),))]
    arrived_paused = plan([dom("vm1", ifaces, md, PAUSED, 1)], [])
    assert not arrived_paused.plug and not arrived_paused.keep
    assert [w.name for w in arrived_paused.prepare] == [f"vm1@{MAC1}", f"vm1@{MAC2}"]


def arriving(md: str, port: str = "tap1") -> Domain:
    """A guest migrating in: PAUSED for migration, libvirt's job MIGRATION_IN."""
    return replace(dom("vm1", [(MAC1, port)], md, PAUSED, PAUSED_MIGRATION), incoming=True)


def test_incoming_migration_is_prepared_then_plugged_on_resume() -> None:
    md = meta((MAC1, ["192.0.2.1", "2001:db8::1"]))
    p = plan([arriving(md)], [])
    assert [w.name for w in p.prepare] == [f"vm1@{MAC1}"] and not p.plug and not p.keep
    prepared = prepped(f"vm1@{MAC1}", MAC1, ["192.0.2.1", "2001:db8::1"], "tap1")
    again = plan([arriving(md)], [prepared])  # the next event, a resync, an agent restart
    assert [w.name for w in again.keep] == [f"vm1@{MAC1}"] and not again.changes
    resumed = plan([dom("vm1", [(MAC1, "tap1")], md, RUNNING, 2)], [prepared])
    assert [w.name for w in resumed.plug] == [f"vm1@{MAC1}"] and not resumed.keep


def test_incoming_migration_never_keeps_an_announcement() -> None:
    """A plugged record for a guest that is migrating in (stale): prepared, i.e. withdrawn."""
    md = meta((MAC1, ["192.0.2.1"]))
    p = plan([arriving(md)], [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")])
    assert [w.name for w in p.prepare] == [f"vm1@{MAC1}"] and not p.keep


def test_final_pause_withdraws_and_a_failed_arrival_removes_the_prepared() -> None:
    md = meta((MAC1, ["192.0.2.1"]))
    prepared = prepped(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")
    outgoing = dom("vm1", [(MAC1, "tap1")], md, PAUSED, PAUSED_MIGRATION)  # job: MIGRATION_OUT
    assert not outgoing.arriving
    plugged = inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")
    assert plan([outgoing], [plugged]).unplug == [f"vm1@{MAC1}"]  # the source withdraws
    # not known as an arrival (libvirt would not say), but prepared here: it stays so
    kept = plan([outgoing], [prepared])
    assert [w.name for w in kept.keep] == [f"vm1@{MAC1}"] and not kept.changes
    assert not plan([outgoing], []).changes  # and nothing new is prepared or plugged
    assert plan([], [prepared]).unplug == [f"vm1@{MAC1}"]  # the failed arrival is destroyed
    shut = dom("vm1", [(MAC1, "tap1")], md, 5, 7)  # shut off, failed
    assert plan([shut], [prepared]).unplug == [f"vm1@{MAC1}"]


def test_prepared_instances_hold_their_addresses() -> None:
    prepared = prepped(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")
    d2 = dom("vm2", [(MAC2, "tap2")], meta((MAC2, ["192.0.2.1"])))
    p = plan([arriving(meta((MAC1, ["192.0.2.1"]))), d2], [prepared])
    assert p.problems == {"vm2": "192.0.2.1 is already held by domain vm1"}


# -- planning -----------------------------------------------------------------------------
def test_plug_running_domain_from_live_xml() -> None:
    d = dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1", "2001:db8::1"])))
    p = plan([d], [])
    assert [(w.name, w.port, w.mac) for w in p.plug] == [(f"vm1@{MAC1}", "tap1", MAC1)]
    assert p.plug[0].addresses == (A("192.0.2.1"), A("2001:db8::1"))
    assert not p.unplug and not p.problems


def test_domain_without_metadata_left_alone() -> None:
    d = dom("plain", [(MAC1, "tap1")])
    hand = inst("by-hand", MAC2, ["192.0.2.5"], "tap9")
    p = plan([d], [hand])
    assert not p.plug and not p.unplug and not p.problems and not p.keep


def test_not_running_unplugs_and_foreign_instances_stay() -> None:
    md = meta((MAC1, ["192.0.2.1"]))
    rec = [inst(instance_name("vm1", MAC1), MAC1, ["192.0.2.1"], "tap1"),
           inst("by-hand", MAC2, ["192.0.2.5"], "tap9")]  # fmt: skip
    for state, reason in ((PAUSED, 2), (5, 3)):  # migration pause, shut off after migration
        p = plan([dom("vm1", [(MAC1, "tap1")], md, state, reason)], rec)
        assert p.unplug == [f"vm1@{MAC1}"] and not p.plug
    assert plan([], rec).unplug == [f"vm1@{MAC1}"]  # gone (transient domain)


def test_same_data_is_kept_changed_data_replugged() -> None:
    rec = [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")]
    same = plan([dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1"])))], rec)
    assert [w.name for w in same.keep] == [f"vm1@{MAC1}"] and not same.changes
    moved = plan([dom("vm1", [(MAC1, "tap7")], meta((MAC1, ["192.0.2.1"])))], rec)
    assert [w.port for w in moved.plug] == ["tap7"]
    more = plan([dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1", "192.0.2.9"])))], rec)
    assert more.plug[0].addresses == (A("192.0.2.1"), A("192.0.2.9")) and not more.unplug


def test_bad_metadata_unplugs_everything_of_the_domain() -> None:
    rec = [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")]
    bad = (
        '<f:instance xmlns:f="urn:frrctl:libvirt:1"><f:interface mac="52:54:00:00:00:01">'
        '<f:ip address="192.0.2.1"/><f:ip address="nonsense"/></f:interface></f:instance>'
    )
    p = plan([dom("vm1", [(MAC1, "tap1")], bad)], rec)
    assert p.unplug == [f"vm1@{MAC1}"] and not p.plug
    assert "'nonsense' is not an IPv4 or IPv6 address" in p.problems["vm1"]


def test_outside_pools_refused() -> None:
    pools = Pools.parse(["192.0.2.0/25"], ["2001:db8::/64"])
    d = dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.200"])))
    p = plan([d], [], pools)
    assert p.problems == {"vm1": f"192.0.2.200 (interface {MAC1}) is outside this host's pools"}
    ok = plan([dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.20"])))], [], pools)
    assert ok.plug and not ok.problems


def test_address_held_by_another_domain_or_instance() -> None:
    rec = [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1"),
           inst("by-hand", "52:54:00:00:00:99", ["192.0.2.50"], "tapx")]  # fmt: skip
    d1 = dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1"])))
    d2 = dom("vm2", [(MAC2, "tap2")], meta((MAC2, ["192.0.2.1", "192.0.2.2"])))
    p = plan([d1, d2], rec)
    assert p.problems == {"vm2": "192.0.2.1 is already held by domain vm1"}
    assert [w.name for w in p.keep] == [f"vm1@{MAC1}"] and not p.plug
    d3 = dom("vm3", [("52:54:00:00:00:03", "tap3")], meta(("52:54:00:00:00:03", ["192.0.2.50"])))
    assert plan([d3], rec).problems["vm3"] == "192.0.2.50 is already plugged for instance by-hand"


def test_new_claim_by_two_domains_goes_to_neither() -> None:
    d1 = dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1"])))
    d2 = dom("vm2", [(MAC2, "tap2")], meta((MAC2, ["192.0.2.1"])))
    p = plan([d1, d2], [])
    assert not p.plug and set(p.problems) == {"vm1", "vm2"}
    assert p.problems["vm1"] == "192.0.2.1 is also asked for by domain vm2"


def test_address_moves_when_holder_lets_go() -> None:
    rec = [inst(f"vm1@{MAC1}", MAC1, ["192.0.2.1"], "tap1")]
    d1 = dom("vm1", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.9"])))
    d2 = dom("vm2", [(MAC2, "tap2")], meta((MAC2, ["192.0.2.1"])))
    p = plan([d1, d2], rec)
    assert not p.problems and sorted(w.name for w in p.plug) == [f"vm1@{MAC1}", f"vm2@{MAC2}"]


def test_hotplug_pending_interface_waits_others_plug() -> None:
    md = meta((MAC1, ["192.0.2.1"]), (MAC2, ["192.0.2.2"]))
    p = plan([dom("vm1", [(MAC1, "tap1")], md)], [])
    assert [w.name for w in p.plug] == [f"vm1@{MAC1}"] and p.waiting == {"vm1": [MAC2]}
    p2 = plan([dom("vm1", [(MAC1, "tap1"), (MAC2, "tap2")], md)], [])
    assert [w.port for w in p2.plug] == ["tap1", "tap2"] and not p2.waiting


def test_interface_without_target_dev_is_a_problem() -> None:
    p = plan([dom("vm1", [(MAC1, None)], meta((MAC1, ["192.0.2.1"])))], [])
    assert p.problems["vm1"] == f"interface {MAC1} has no target dev in the live XML"


def test_unusable_domain_name() -> None:
    p = plan([dom("bad name", [(MAC1, "tap1")], meta((MAC1, ["192.0.2.1"])))], [])
    assert "cannot name an instance" in p.problems["bad name"]


def test_owned_names() -> None:
    assert owned(instance_name("vm-1.example", MAC1))
    assert not owned("vm1") and not owned("vm1@tap0")


@pytest.mark.parametrize(
    ("event", "detail", "runs"),
    [("RESUMED", "MIGRATED", True), ("RESUMED", "UNPAUSED", True),
     ("SUSPENDED", "MIGRATED", False), ("SUSPENDED", "POSTCOPY", False),
     ("STOPPED", "MIGRATED", False), ("STOPPED", "DESTROYED", False), ("STOPPED", "FAILED", False),
     ("SHUTDOWN", "GUEST", False), ("CRASHED", "0", False)],
)  # fmt: skip
def test_implied_state(event: str, detail: str, runs: bool) -> None:
    implied = implied_state(event, detail)
    assert implied is not None and runs_here(*implied) is runs
    assert not paused_here(*implied) or (event, detail) == ("SUSPENDED", "PAUSED")


def test_user_pause_implies_paused_here_and_started_reads_libvirt() -> None:
    implied = implied_state("SUSPENDED", "PAUSED")
    assert implied is not None and paused_here(*implied)
    assert implied_state("STARTED", "MIGRATED") is None  # paused on arrival: ask libvirtd
    assert implied_state("STARTED", "BOOTED") is None
