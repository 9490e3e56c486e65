"""The grpc driver's pieces around a zebra restart: registry wiring, pure decisions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from frrctl.frr import registry
from frrctl.frr.staticd import StaticdDriver


def test_grpc_host_with_ospfv3_gets_the_ospf6d_check(tmp_path: Path) -> None:
    spec = registry.AnnouncerSpec(bridge="cloudbr0", vty_dir=tmp_path, asn=64512)
    plain = registry.make_announcer("grpc", spec)
    assert isinstance(plain, StaticdDriver) and not plain.ospf6
    assert plain.redistribution({}) is None  # no OSPF daemon: nothing to check
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


@pytest.mark.parametrize("transport", ["grpc", "vty"])
def test_withdraw_stale_reregisters_then_re_adds_and_deletes_through_either_transport(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both staticd drivers share the bgpd repair (StaticdRepairs): exactly the
    stale prefixes, once each, added then deleted through the driver's own apply."""
    from frrctl.frr import staticd
    from frrctl.policy import Plan, parse_prefix

    p4, p6 = parse_prefix("192.0.2.34/32"), parse_prefix("2001:db8:100::84/128")
    calls: list[object] = []
    monkeypatch.setattr(
        staticd, "wait_selected", lambda zebra, retry, ps, timeout: calls.append(("wait", ps))
    )

    def make(bgp: bool) -> staticd.StaticdRepairs:
        if transport == "grpc":
            drv: staticd.StaticdRepairs = StaticdDriver("127.0.0.1:1", vty_dir=tmp_path, bgp=bgp)
        else:
            drv = staticd.StaticdVtyDriver(tmp_path, bgp=bgp, ospf=True)
        monkeypatch.setattr(drv, "apply", lambda plan: calls.append(plan))
        monkeypatch.setattr(drv, "refresh", lambda ps: calls.append(("refresh", list(ps))))
        return drv

    assert make(bgp=True).withdraw_stale([p6, p4, p4])
    assert calls == [
        ("refresh", [p4, p6]),
        Plan(announce=((p4, False), (p6, False))),
        ("wait", [p4, p6]),
        Plan(withdraw=(p4, p6)),
    ]
    calls.clear()
    assert not make(bgp=False).withdraw_stale([p4]) and not calls  # no bgpd: cannot
    assert not make(bgp=True).withdraw_stale([]) and not calls
    assert make(bgp=False).check_table() is None


def test_both_staticd_drivers_have_the_same_repairs() -> None:
    """Every optional capability one staticd driver overrides, the other has too."""
    from frrctl.frr.base import AnnounceDriver
    from frrctl.frr.staticd import StaticdVtyDriver

    optional = [n for n in vars(AnnounceDriver) if not n.startswith("_") and n not in
                ("read", "apply", "close", "compare", "reconcile", "name")]  # fmt: skip
    for cls in (StaticdDriver, StaticdVtyDriver):
        over = {n for n in optional if getattr(cls, n) is not getattr(AnnounceDriver, n)}
        assert over >= {"check_table", "refresh", "reregister", "withdraw_stale",
                        "redistribution", "register_redistribution", "withdraw_redistributed",
                        "min_metric", "needs_carrier",
                        "monitored_daemons"}, cls  # fmt: skip
        assert "config_loaded" not in over  # staticd has nothing to tell it by


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
