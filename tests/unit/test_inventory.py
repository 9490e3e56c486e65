"""Inventory validation: good files load, bad ones name the host and the key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from frrctl.cli import main
from frrctl.errors import InventoryError
from frrctl.inventory import Fabric, load_inventory, parse_inventory

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
    assert fleet.fabric.bridge == "cloudbr0"
    assert set(Fabric.model_fields) == {"bridge", "pools"}  # the gateways are fixed


def test_asdot_asn_is_converted() -> None:
    raw = example()
    raw["hosts"][0]["asn"] = "65000.7"
    raw["hosts"][0]["remote-as"] = "0.65000"
    host = parse_inventory(raw).hosts[0]
    assert host.asn == 65000 * 65536 + 7 and host.remote_as == 65000


def _load_text(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # YAML 1.1 reads these as numbers other than the text: each is refused
        ("asn: 65000.7", "65000.7 was read by YAML as a decimal number, not an ASN"),
        ("asn: 65000.70", "quote an asdot ASN"),
        ("asn: 0101", "'0101' is not an ASN"),  # octal 65
        ("asn: 1:05", "'1:05' is not an ASN"),  # sexagesimal 65
        ("asn: 0x41", "'0x41' is not an ASN"),
        ("remote-as: 65000.7", "key 'remote-as': 65000.7 was read by YAML as a decimal"),
    ],
)
def test_yaml_numbers_are_never_reinterpreted_as_asns(
    tmp_path: Path, line: str, expected: str
) -> None:
    text = EXAMPLE.read_text().replace("    asn: 65004\n", f"    {line}\n")
    assert text != EXAMPLE.read_text()
    message = _load_text(tmp_path, text)
    assert "host 'hv4'" in message and expected in message, message


def test_unquoted_mac_stays_the_mac(tmp_path: Path) -> None:
    # YAML 1.1 reads 52:54:00:00:04:01 as a base-60 integer; the loader keeps the text.
    text = EXAMPLE.read_text().replace('mac: "52:54:00:00:04:01"', "mac: 52:54:00:00:04:01")
    assert text != EXAMPLE.read_text()
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    assert load_inventory(path).lab.vms[-1].mac == "52:54:00:00:04:01"


def test_edge_fleet_asdot_host_is_ebgp() -> None:
    fleet = load_inventory(ROOT / "tests" / "data" / "edge-fleet.yaml")
    host = fleet.host("v6only")
    assert host.asn == 65000 * 65536 + 7 != host.remote_as_of(host.uplinks[0])


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
        (lambda r: r["hosts"][0].update(asn=0), "host 'hv1': key 'asn': ASN 0 is outside"),
        (lambda r: r["hosts"][0].update(asn=4294967296), "outside 1..4294967295"),
        (lambda r: r["hosts"][0].update(asn=65000.7), "read by YAML as a decimal number"),
        (lambda r: r["hosts"][0].update(asn="1.70000"), "'1.70000': both parts must be 0..65535"),
        (lambda r: r["hosts"][0].update(asn="65536.0"), "both parts must be 0..65535"),
        (lambda r: r["hosts"][0].update(asn=" 65001"), "' 65001' is not an ASN"),
        (lambda r: r["hosts"][0].update(asn="65_001"), "'65_001' is not an ASN"),
        (lambda r: r["hosts"][0].update(asn=True), "True is not an ASN"),
        (lambda r: r["hosts"][0].update(asn=23456), "ASN 23456 is AS_TRANS"),
        (lambda r: r["hosts"][0].update(asn="0.23456"), "ASN 23456 is AS_TRANS"),
        (lambda r: r["hosts"][0].update(asn=65535), "ASN 65535 is reserved"),
        (lambda r: r["hosts"][0].update(asn=4294967295), "ASN 4294967295 is reserved"),
        (lambda r: r["defaults"].update({"remote-as": 0}), "key 'remote-as': ASN 0 is outside"),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update({"remote-as": "1.70000"}),
            "host 'hv1': key 'uplinks[0].bgp.remote-as': asdot ASN '1.70000'",
        ),
        # addresses: nothing special where an address of a node is expected
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["169.254.0.1/31"]),
            "key 'uplinks[0].addresses': 169.254.0.1/31 overlaps 169.254.0.0/16 (link-local",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["169.254.7.1/31"]),
            "overlaps 169.254.0.0/16",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["128.0.0.1/1"]),
            "128.0.0.1/1 overlaps 169.254.0.0/16",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["fe80::2/64"]),
            "fe80::2/64 overlaps fe80::/10 (link-local",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["224.0.0.1/31"]),
            "(multicast)",
        ),
        (lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["127.0.0.2/31"]), "(loopback)"),
        (lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["::1/128"]), "(loopback)"),
        (lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["0.0.0.1/31"]), "unspecified"),
        (lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["198.18.0.0/0"]), "overlaps"),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["198.18.0.3/30"]),
            "198.18.0.3/30 is the broadcast address of 198.18.0.0/30",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(addresses=["2001:db8:ffff:1::/64"]),
            "is the Subnet-Router anycast address of 2001:db8:ffff:1::/64",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(
                addresses=["198.18.0.1/31", "198.18.0.0/31"]
            ),
            "198.18.0.0/31 overlaps another address of this uplink",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"].append(
                {"interface": "eth1", "addresses": ["198.18.0.1/30"], "ospf": {"area": 1}}
            ),
            "host 'hv1': key 'uplinks[1].addresses': 198.18.0.1/30 overlaps 198.18.0.1/31 on eth0",
        ),
        (
            lambda r: r["hosts"][3]["uplinks"][0].update(
                addresses=["198.18.0.1/31"], bgp={"neighbors": ["198.18.0.0"]}
            ),
            "host 'hv4': key 'uplinks[0].addresses': 198.18.0.1 is already an uplink address "
            "of host 'hv1'",
        ),
        (
            lambda r: r["fabric"]["pools"].update(ipv4=["192.0.2.0/26", "198.18.0.0/30"]),
            "host 'hv1': key 'uplinks[0].addresses': 198.18.0.1/31 overlaps the fabric pool "
            "entry '198.18.0.0/30'",
        ),
        (
            lambda r: r["fabric"]["pools"]["ipv6"].append("2001:db8:ffff:1::100"),
            "2001:db8:ffff:1::1/64 overlaps the fabric pool entry '2001:db8:ffff:1::100'",
        ),
        # pools: never a gateway, a link-local, a multicast or loopback address
        (
            lambda r: r["fabric"]["pools"].update(ipv4=["169.254.0.1"]),
            "key 'fabric.pools': pool entry '169.254.0.1' overlaps 169.254.0.0/16 (link-local, "
            "where the VM bridge's gateway 169.254.0.1 lives)",
        ),
        (
            lambda r: r["fabric"]["pools"].update(ipv4=["169.254.0.0-169.254.0.9"]),
            "overlaps 169.254.0.0/16",
        ),
        (lambda r: r["fabric"]["pools"].update(ipv4=["0.0.0.0/0"]), "overlaps 0.0.0.0/8"),
        (lambda r: r["fabric"]["pools"].update(ipv4=["203.0.113.7", "224.0.0.5"]), "multicast"),
        (lambda r: r["fabric"]["pools"].update(ipv4=["127.0.0.1"]), "(loopback)"),
        (lambda r: r["fabric"]["pools"].update(ipv4=["255.255.255.255"]), "broadcast"),
        (
            lambda r: r["fabric"]["pools"].update(ipv6=["fe80::1"]),
            "'fe80::1' overlaps fe80::/10 (link-local, where the VM bridge's gateway fe80::1",
        ),
        (lambda r: r["fabric"]["pools"].update(ipv6=["ff02::1"]), "ff00::/8 (multicast)"),
        (lambda r: r["fabric"]["pools"].update(ipv6=["::ffff:192.0.2.1"]), "IPv4-mapped"),
        (
            lambda r: r["hosts"][3].update(pools={"ipv6": ["fe80::1-fe80::2"]}),
            "host 'hv4': key 'pools': pool entry 'fe80::1-fe80::2' overlaps fe80::/10",
        ),
        # the gateways are fixed
        (
            lambda r: r["fabric"].update(gateway4="192.0.2.1"),
            "key 'fabric.gateway4': the gateways are fixed at 169.254.0.1 and fe80::1",
        ),
        (
            lambda r: r["fabric"].update(gateway6="ff02::1"),
            "key 'fabric.gateway6': the gateways are fixed at 169.254.0.1 and fe80::1",
        ),
        (
            lambda r: r["fabric"].update(gateway4="169.254.0.1"),
            "the gateways are fixed",
        ),
        # BGP neighbours
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(neighbors=["198.18.0.1"]),
            "host 'hv1': key 'uplinks[0]': neighbor 198.18.0.1 is eth0's own address",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(
                neighbors=["198.18.0.0", "198.18.0.0"]
            ),
            "key 'uplinks[0].bgp.neighbors': neighbor 198.18.0.0 is listed twice",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(neighbors=["224.0.0.5"]),
            "224.0.0.5 is inside 224.0.0.0/4 (multicast)",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update(neighbors=["fe80::2"]),
            "fe80::2 is inside fe80::/10 (link-local",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(
                addresses=["198.18.0.1/30"], bgp={"neighbors": ["198.18.0.0"]}
            ),
            "neighbor 198.18.0.0 is the network address of 198.18.0.0/30",
        ),
        (
            lambda r: r["hosts"][3]["uplinks"][0]["bgp"].update(neighbors=["198.18.0.0"]),
            "host 'hv4': key 'uplinks[0]': neighbor 198.18.0.0 is IPv4 but eth0 has no IPv4 "
            "address",
        ),
        (
            lambda r: (
                r["hosts"][0]["uplinks"].append(
                    {
                        "interface": "eth1",
                        "addresses": ["198.18.0.9/31"],
                        "bgp": {"neighbors": ["198.18.0.8"]},
                    }
                )
                or r["hosts"][0]["uplinks"][1].update(addresses=[])
                or r["hosts"][0]["uplinks"][1]["bgp"].update(neighbors=["198.18.0.0"])
            ),
            "host 'hv1': key 'uplinks[1].bgp.neighbors': neighbor 198.18.0.0 is also a "
            "neighbor on eth0",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"].append(
                {"interface": "eth1", "bgp": {"neighbors": ["198.18.0.1"]}}
            ),
            "key 'uplinks[1].bgp.neighbors': neighbor 198.18.0.1 is an address of this host",
        ),
        # router-id: an address, never 0.0.0.0 (FRR's "unset")
        (
            lambda r: r["hosts"][0].update({"router-id": "0.0.0.0"}),
            "host 'hv1': key 'router-id': 0.0.0.0 is inside 0.0.0.0/8 (unspecified)",
        ),
        (lambda r: r["hosts"][0].update({"router-id": "224.0.0.5"}), "(multicast)"),
        (lambda r: r["hosts"][0].update({"router-id": "255.255.255.255"}), "broadcast"),
        (lambda r: r["hosts"][0].update({"router-id": "127.0.0.1"}), "(loopback)"),
        (lambda r: r["lab"]["upstream"].update(loopback6="ff02::1"), "(multicast)"),
        # OSPF: a hypervisor is never in the backbone (ospfd refuses `area 0.0.0.0 nssa`)
        (
            lambda r: r["hosts"][2]["uplinks"][0]["ospf"].update(area=0),
            "host 'hv3': key 'uplinks[0].ospf.area': area 0.0.0.0 is the backbone",
        ),
        (
            lambda r: r["hosts"][2]["uplinks"][0]["ospf6"].update(area="0.0.0.0"),
            "host 'hv3': key 'uplinks[0].ospf6.area': area 0.0.0.0 is the backbone",
        ),
        # interfaces
        (
            lambda r: r["hosts"][0]["uplinks"].append(dict(r["hosts"][0]["uplinks"][0])),
            "host 'hv1': key 'uplinks': uplink interface eth0 is listed twice",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(interface="lo"),
            "the loopback cannot be an uplink",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0].update(interface="eth0:1"),
            "'eth0:1' is not a valid interface name",
        ),
        (lambda r: r["fabric"].update(bridge=".."), "'..' is not a valid interface name"),
        # kebab-case only, everywhere
        (
            lambda r: r["hosts"][0].update({"router_id": r["hosts"][0].pop("router-id")}),
            "host 'hv1': key 'router_id': keys are kebab-case: write 'router-id', not 'router_id'",
        ),
        (
            lambda r: r["defaults"].update({"remote_as": r["defaults"].pop("remote-as")}),
            "key 'defaults.remote_as': keys are kebab-case: write 'remote-as'",
        ),
        (
            lambda r: r["hosts"][0]["uplinks"][0]["bgp"].update({"remote_as": 65000}),
            "host 'hv1': key 'uplinks[0].bgp.remote_as': keys are kebab-case",
        ),
        (
            lambda r: r["hosts"][0].update(controller={"max_prefixes": 5}),
            "host 'hv1': key 'controller.max_prefixes': keys are kebab-case: write 'max-prefixes'",
        ),
        (
            lambda r: r["lab"]["exabgp"].update({"upstream_address": "198.18.255.0"}),
            "key 'lab.exabgp.upstream_address': keys are kebab-case",
        ),
        (
            lambda r: r["lab"]["vms"][0].update({"mac_address": "x"}),
            "lab VM 'vm1': key 'mac_address': keys are kebab-case",
        ),
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
    message = _error(raw)
    assert expected in message, message
    assert "\n" not in message


def test_several_errors_make_one_line() -> None:
    raw = example()
    for host in raw["hosts"]:
        host["colour"] = "red"
    assert _error(raw) == "host 'hv1': key 'colour': unknown key (and 3 more)"


def test_host_settings_in_defaults_and_on_hosts_follow_one_rule() -> None:
    # The same kebab-case key works in both places ...
    raw = example()
    raw["defaults"]["bfd"] = True
    raw["hosts"][1]["bfd"] = False
    fleet = parse_inventory(raw)
    assert fleet.hosts[0].bfd and not fleet.hosts[1].bfd
    # ... and the same snake_case key fails in both, with the same advice.
    for place in (raw["defaults"], raw["hosts"][1]):
        bad = example()
        target = bad["defaults"] if place is raw["defaults"] else bad["hosts"][1]
        target["import_check"] = True
        assert "write 'import-check', not 'import_check'" in _error(bad)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts: [\n")
    with pytest.raises(InventoryError, match="not valid YAML") as info:
        load_inventory(bad)
    assert "\n" not in str(info.value) and "line 2, column 1" in str(info.value)


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


def _frrctl() -> list[str]:
    """The installed `frrctl` command, else this interpreter running the CLI module."""
    found = shutil.which("frrctl")
    return [found] if found else [sys.executable, "-m", "frrctl.cli"]


CLI_CASES = [
    ("asn: 65004", "asn: 65000.7", "host 'hv4': key 'asn': 65000.7 was read by YAML"),
    ("router-id: 198.51.100.4", "router_id: 198.51.100.4", "write 'router-id'"),
    ("  bridge: cloudbr0", "  bridge: cloudbr0\n  gateway4: 192.0.2.1", "the gateways are fixed"),
    ("ospf: {area: 0.0.0.3, cost: 10}", "ospf: {area: 0, cost: 10}", "is the backbone"),
    ("[198.18.0.1/31,", "[169.254.0.1/31,", "key 'uplinks[0].addresses': 169.254.0.1/31"),
    ("neighbors: [2001:db8:ffff:4::2]", "neighbors: [2001:db8:ffff:4::1]", "own address"),
    ("router-id: 198.51.100.3", "router-id: 0.0.0.0", "host 'hv3': key 'router-id'"),
    (
        "    router-id: ",
        "    colour: red\n    router-id: ",
        "key 'colour': unknown key (and 4 more)",
    ),
    ("hosts:\n", "hosts: [\n", "not valid YAML"),
]


@pytest.mark.parametrize(("old", "new", "expected"), CLI_CASES)
def test_cli_error_is_one_line_exit_2_nothing_written(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = EXAMPLE.read_text()
    assert old in text
    bad = tmp_path / "fleet.yaml"
    bad.write_text(text.replace(old, new))
    out = tmp_path / "out"
    proc = subprocess.run(
        [*_frrctl(), "render", "-i", str(bad), "-o", str(out), "--no-check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.endswith("\n"), proc.stderr
    assert proc.stderr.startswith(f"frrctl: error: {bad}: ") and expected in proc.stderr
    assert not out.exists()
