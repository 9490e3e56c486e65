"""The grpc driver's pieces around a zebra restart: registry wiring, pure decisions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from frrctl.frr import registry
from frrctl.frr.staticd import StaticdDriver


def test_grpc_host_with_ospfv3_gets_the_ospf6d_check(tmp_path: Path) -> None:
    spec = registry.AnnouncerSpec(bridge="cloudbr0", vty_dir=tmp_path, asn=64512)
    plain = registry.make_announcer("grpc", spec)
    assert isinstance(plain, StaticdDriver) and not plain.ospf6
    assert plain.redistribution_lost({}) is None
    v3 = registry.make_announcer("grpc", dataclasses.replace(spec, ospf_versions=(4, 6)))
    assert isinstance(v3, StaticdDriver) and v3.ospf6 and v3.bgp
    v2 = registry.make_announcer("grpc", dataclasses.replace(spec, ospf_versions=(4,)))
    assert isinstance(v2, StaticdDriver) and not v2.ospf6
    only = dataclasses.replace(spec, runs_bgp=False, ospf_versions=(6,), asn=None)
    carried = registry.make_announcer("grpc", only)
    assert isinstance(carried, StaticdDriver) and carried.ospf6 and not carried.bgp


def test_register_commands_enter_the_redistribution_again_per_family() -> None:
    from frrctl.frr.staticd import StaticLayout, register_commands

    assert register_commands(StaticLayout(), [6, 4, 4]) == [
        "configure terminal", "router bgp",
        "address-family ipv4 unicast", "redistribute static route-map static-cloud",
        "exit-address-family",
        "address-family ipv6 unicast", "redistribute static route-map static-cloud-v6",
        "exit-address-family", "end",
    ]  # fmt: skip


def test_register_failures_tolerate_only_still_registered() -> None:
    from frrctl.frr.staticd import register_failures
    from frrctl.frr.vty import CMD_SUCCESS, CMD_WARNING, CMD_WARNING_CONFIG_FAILED, VtyReply

    still = VtyReply("redistribute static route-map static-cloud", CMD_WARNING, "")
    ok = VtyReply("router bgp", CMD_SUCCESS, "")
    assert register_failures([ok, still]) == []
    bad_map = VtyReply("redistribute static route-map x", CMD_WARNING_CONFIG_FAILED, "% no")
    no_bgp = VtyReply("router bgp", CMD_WARNING, "% Please specify ASN and VRF")
    assert register_failures([bad_map, no_bgp]) == [bad_map, no_bgp]


def test_zebra_selected_wants_a_selected_static_route() -> None:
    from frrctl.frr.staticd import zebra_selected
    from frrctl.policy import parse_prefix

    p = parse_prefix("192.0.2.34/32")
    static = '{"192.0.2.34/32": [{"protocol": "kernel"}, {"protocol": "static", "selected": true}]}'
    assert zebra_selected(static, p)
    assert not zebra_selected('{"192.0.2.34/32": [{"protocol": "static"}]}', p)  # queued
    assert not zebra_selected('{"192.0.2.34/32": [{"protocol": "kernel", "selected": true}]}', p)
    assert not zebra_selected("{}", p) and not zebra_selected("", p)
    assert not zebra_selected("% Unknown command", p)


def test_stale_edits_add_then_delete_exactly_the_stale_routes() -> None:
    from frrctl.frr.staticd import StaticLayout, stale_edits
    from frrctl.policy import parse_prefix

    layout = StaticLayout()
    p4, p6 = parse_prefix("192.0.2.34/32"), parse_prefix("2001:db8:100::84/128")
    add, delete = stale_edits(layout, [p6, p4, p4])
    assert add.update == (
        (layout.nexthop_xpath(p4), ""), (layout.tag_xpath(p4), "0"),
        (layout.nexthop_xpath(p6), ""), (layout.tag_xpath(p6), "0"),
    ) and add.delete == ()  # fmt: skip
    assert delete.update == () and delete.delete == (
        layout.route_xpath(p4),
        layout.route_xpath(p6),
    )


def test_repair_withdraws_stale_through_the_announcer_else_alerts() -> None:
    from frrctl.daemon.aftermath import repair_table
    from frrctl.daemon.checks import STALE_AFTER, TableRepair
    from frrctl.frr.base import AnnounceDriver, TableCheck
    from frrctl.metrics import Metrics
    from frrctl.policy import Plan, parse_prefix

    stale, kept = parse_prefix("192.0.2.34/32"), parse_prefix("192.0.2.30/32")

    class Stub(AnnounceDriver):
        def __init__(self, can: bool) -> None:
            self.can = can
            self.calls: list[tuple[str, list[object]]] = []

        def read(self) -> dict[object, bool]:  # type: ignore[override]
            return {}

        def apply(self, plan: Plan) -> None:
            pass

        def reregister(self, prefixes: list[object]) -> None:  # type: ignore[override]
            self.calls.append(("reregister", prefixes))

        def check_table(self) -> TableCheck:
            return TableCheck([], [stale, kept])

        def withdraw_stale(self, prefixes: list[object]) -> bool:  # type: ignore[override]
            self.calls.append(("withdraw", prefixes))
            return self.can

    for can in (True, False):
        stub, table, metrics = Stub(can), TableRepair(), Metrics()
        assert not repair_table(stub, {kept}, table, metrics, 100.0)  # seen once: not yet
        assert stub.calls == [("reregister", [kept])]
        done = repair_table(stub, {kept}, table, metrics, 100.0 + STALE_AFTER)
        assert done is can  # desired `kept` is never touched
        assert stub.calls[-1] == ("withdraw", [stale])
