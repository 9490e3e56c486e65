"""Pure: what prepare withdraws, what the plug of a prepared instance sends, the nft check."""

from __future__ import annotations

import ipaddress
import sqlite3
from dataclasses import replace
from pathlib import Path

from frrctl.host.instances import plan_plug, plan_prepare, resume_ops
from frrctl.host.netlink import NUD_PERMANENT, Op
from frrctl.host.nft import PortTable, chain_matches, chain_name, port_rules, rules_hash
from frrctl.host.state import StateStore

A4, A6, B4 = (ipaddress.ip_address(a) for a in ("192.0.2.10", "2001:db8::10", "192.0.2.11"))
MAC = "52:54:00:12:34:56"
PERM = (MAC, NUD_PERMANENT)


def test_prepare_of_a_new_instance_changes_no_route() -> None:
    assert plan_prepare(7, [A4, A6], [], [], {A4: False, A6: False}, {A4: None, A6: None}) == []
    # an unrecorded entry of the address is not the instance's: left alone
    assert plan_prepare(7, [A4], [], [], {A4: True}, {A4: PERM}) == []


def test_prepare_withdraws_what_the_plugged_instance_announced() -> None:
    ops = plan_prepare(7, [A4, A6], [B4], [A4, A6, B4], {A4: True, A6: True, B4: True},
                       {A4: PERM, A6: PERM, B4: PERM})  # fmt: skip
    routes = [Op("route", "del", a, 7) for a in (B4, A4, A6)]
    assert ops == routes + [Op("neigh", "del", a, 7) for a in (B4, A4, A6)]  # routes first


def test_removed_addresses_are_deleted_only_when_there() -> None:
    """A prepared instance moving to other data routed nothing: no delete that would fail."""
    ops, _ = plan_plug(7, MAC, [A4], [B4], {A4: False, B4: False}, {A4: None, B4: None})
    assert ops == [Op("neigh", "set", A4, 7, mac=MAC), Op("route", "set", A4, 7)]


def test_resume_is_one_batch_neighbours_before_routes() -> None:
    assert resume_ops(7, MAC, [A4, A6]) == [
        Op("neigh", "set", A4, 7, mac=MAC), Op("neigh", "set", A6, 7, mac=MAC),
        Op("route", "set", A4, 7), Op("route", "set", A6, 7),
    ]  # fmt: skip


def test_chain_matches_digest_port_and_every_rule() -> None:
    rules = port_rules(MAC, [A4, A6], [ipaddress.ip_address("fe80::1:2")])
    chain = chain_name("vm@" + MAC)
    good = PortTable({chain: f"frrctl {rules_hash(rules, 'tap1')}"}, {chain: "tap1"},
                     {chain: len(rules)})  # fmt: skip
    assert chain_matches(good, chain, "tap1", rules)
    assert not chain_matches(good, chain, "tap2", rules)  # another port's digest
    short = PortTable(dict(good.chains), dict(good.devices), {chain: len(rules) - 1})
    assert not chain_matches(short, chain, "tap1", rules)  # a rule deleted by hand
    moved = PortTable(dict(good.chains), {chain: "tap9"}, dict(good.rule_counts))
    assert not chain_matches(moved, chain, "tap1", rules)
    assert not chain_matches(PortTable.empty(), chain, "tap1", rules)


def test_a_record_from_before_prepared_instances_opens(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "instances.db")
    db.executescript(
        "CREATE TABLE instance (name TEXT PRIMARY KEY, bridge TEXT NOT NULL, mac TEXT NOT NULL,"
        " port TEXT, port_setup TEXT NOT NULL DEFAULT '{}', plugged_at REAL NOT NULL);"
        "CREATE TABLE address (address TEXT PRIMARY KEY, version INTEGER NOT NULL,"
        " instance TEXT NOT NULL REFERENCES instance(name) ON DELETE CASCADE);"
        f"INSERT INTO instance VALUES ('vm', 'cloudbr0', '{MAC}', 'tap1', '{{}}', 1.0);"
        "INSERT INTO address VALUES ('192.0.2.10', 4, 'vm');"
    )
    db.close()
    with StateStore(tmp_path) as store:
        (old,) = store.all()
        assert old.addresses == (A4,) and not old.prepared  # plugged, as it was
        with store.transaction():
            store.put(replace(old, prepared=True))
        assert store.get("vm") == old and store.get("vm").prepared  # type: ignore[union-attr]
        with store.transaction():
            store.mark_plugged("vm", 2.0)
        again = store.get("vm")
        assert again is not None and not again.prepared and again.plugged_at == 2.0
