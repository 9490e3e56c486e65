"""Inventory validation: good files load, bad ones name the host and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from frrctl.cli import main
from frrctl.errors import InventoryError
from frrctl.inventory import load_inventory, parse_inventory

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "fleet.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_loads_with_defaults_merged() -> None:
    fleet = load_inventory(EXAMPLE)
    assert [h.hostname for h in fleet.hosts] == ["hv1", "hv2", "hv3", "hv4"]
    hv1, hv2, hv3, hv4 = fleet.hosts
    assert hv1.asn == 65001 and hv1.remote_as_of(hv1.uplinks[0]) == 65000
    assert hv2.asn == 4200000002 and hv2.uplinks[0].bgp and hv2.uplinks[0].bgp.unnumbered
    assert hv3.runs_ospf and hv3.runs_ospf6 and not hv3.runs_bgp
    assert "192.0.2.10" not in fleet.pools_of(hv4) and "2001:db8:200::10" in fleet.pools_of(hv4)
    assert fleet.fabric.bridge == "cloudbr0" and fleet.fabric.gateway6 == "fe80::1"


def test_asdot_asn_is_converted() -> None:
    raw = example()
    raw["hosts"][0]["asn"] = "65000.7"
    assert parse_inventory(raw).hosts[0].asn == 65000 * 65536 + 7


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(InventoryError) as info:
        parse_inventory(raw)
    return str(info.value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda r: r["hosts"][0].update(colour="red"), "host 'hv1': key 'colour': unknown key"),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["198.18.0.300/31"]),
            "host 'hv1': key 'uplinks[0].addresses'",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["198.18.0.1"]),
            "needs a prefix length",
        ),
        (lambda r: r["hosts"][1].update(hostname="hv1"), "'hv1': key 'hostname': duplicate"),
        (
            lambda r: r["hosts"][1].update({"router-id": "198.51.100.1"}),
            "host 'hv2': key 'router-id': 198.51.100.1 is already used by host 'hv1'",
        ),
        (
            lambda r: r["fabric"]["pools"].update(ipv4=["192.0.2.0/26", "192.0.2.10-192.0.2.12"]),
            "overlap",
        ),
        (
            lambda r: r["fabric"]["pools"].update(ipv4=["192.0.2.0/33"]),
            "key 'fabric.pools': '192.0.2.0/33' is not an address",
        ),
        (lambda r: r["fabric"]["pools"].update(ipv6=["192.0.2.1"]), "listed under ipv6"),
        (lambda r: r["hosts"][0]["uplinks"][0].update(bgp={}), "BGP needs neighbors"),
        (
            lambda r: r["hosts"][2]["uplinks"][0].update(addresses=[]),
            "ospf on eth0 needs an IPv4 address",
        ),
        (
            lambda r: r["hosts"][2]["uplinks"][0].update(ospf={"cost": 5}),
            "host 'hv3': key 'uplinks[0].ospf.area': required key is missing",
        ),
        (lambda r: r["hosts"][0].update(asn=0), "host 'hv1': key 'asn'"),
        (lambda r: r["hosts"][0].update(asn=4294967296), "outside 1..4294967295"),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(neighbors=["198.18.9.9"]),
            "neighbor 198.18.9.9 is not on any address of eth0",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(interface="cloudbr0"),
            "the bridge cloudbr0 cannot be an uplink",
        ),
        (
            lambda r: r["hosts"][3].update(pools={"ipv6": ["2001:db8:999::1"]}),
            "host 'hv4': key 'pools': '2001:db8:999::1' is not inside the fabric pools",
        ),
        (
            lambda r: r["lab"]["vms"][0].update(addresses=["192.0.2.99"]),
            "lab VM 'vm1': key 'addresses': 192.0.2.99 is outside the pools of host 'hv1'",
        ),
        (lambda r: r["lab"]["vms"][1].update(mac="52:54:00:00:01:01"), "is used by another VM"),
        (lambda r: r["lab"]["vms"][0].update(host="hv9"), "no host 'hv9'"),
        (lambda r: r["defaults"].update(colour=1), "defaults: unknown key 'colour'"),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(neighbors=[{"2001:db8::": None}]),
            "quote IPv6 addresses that end in '::'",
        ),
    ],
)
def test_bad_inventory_names_host_and_key(mutate: Any, expected: str) -> None:
    raw = example()
    mutate(raw)
    assert expected in _error(raw)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: [\n")
    with pytest.raises(InventoryError, match="not valid YAML"):
        load_inventory(bad)


def test_render_exits_2_and_writes_nothing_on_bad_inventory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = example()
    raw["hosts"][1]["router-id"] = "198.51.100.1"
    bad = tmp_path / "fleet.yaml"
    bad.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    assert main(["render", "-i", str(bad), "-o", str(out), "--no-check"]) == 2
    assert "router-id" in capsys.readouterr().err
    assert not out.exists()
