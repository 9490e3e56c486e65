"""Pure parts of the host data plane: input checks, plug planning, rollback, nft rendering."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

import pytest

from frrctl.errors import UsageError
from frrctl.host.bridge import bridge_sysctls
from frrctl.host.instances import inverse, plan_plug
from frrctl.host.netlink import NUD_PERMANENT, Op
from frrctl.host.nft import (
    PortTable,
    chain_name,
    host_script,
    parse_table,
    plug_script,
    port_rules,
    rules_hash,
    unplug_script,
)
from frrctl.host.validate import (
    eui64_link_local,
    parse_addresses,
    parse_host_address,
    parse_mac,
    parse_name,
)

A4 = ipaddress.ip_address("192.0.2.30")
A6 = ipaddress.ip_address("2001:db8:100::80")
MAC = "52:54:00:12:34:56"


def test_parse_mac() -> None:
    assert parse_mac("52:54:00:AB:CD:EF") == "52:54:00:ab:cd:ef"
    assert parse_mac("52-54-00-ab-cd-ef") == "52:54:00:ab:cd:ef"
    for bad, msg in [("52:54:00:ab:cd", "malformed"), ("zz:54:00:ab:cd:ef", "malformed"),
                     ("01:00:5e:00:00:01", "multicast"), ("ff:ff:ff:ff:ff:ff", "multicast"),
                     ("00:00:00:00:00:00", "not a valid")]:  # fmt: skip
        with pytest.raises(UsageError, match=msg):
            parse_mac(bad)


def test_parse_addresses() -> None:
    assert parse_host_address("192.0.2.30/32") == A4
    assert parse_host_address("2001:db8:100::80/128") == A6
    assert parse_addresses(["2001:db8:100::80", "192.0.2.30", "192.0.2.30/32"]) == (A4, A6)
    for bad, msg in [("192.0.2.0/24", "not a host address"), ("2001:db8::/64", "not a host"),
                     ("192.0.2.300", "not an IPv4"), ("224.0.0.1", "cannot be a VM"),
                     ("fe80::5", "cannot be a VM"), ("169.254.0.1", "cannot be a VM"),
                     ("0.0.0.0", "cannot be a VM"), ("::1", "cannot be a VM")]:  # fmt: skip
        with pytest.raises(UsageError, match=msg):
            parse_host_address(bad)
    with pytest.raises(UsageError, match="at least one"):
        parse_addresses([])


def test_parse_name() -> None:
    assert parse_name("i-2-34-VM") == "i-2-34-VM"
    for bad in ("", "-x", "a b", "x" * 129, "a/b"):
        with pytest.raises(UsageError):
            parse_name(bad)


def test_eui64_link_local() -> None:
    assert str(eui64_link_local("52:54:00:12:34:56")) == "fe80::5054:ff:fe12:3456"
    assert str(eui64_link_local("02:00:00:00:00:01")) == "fe80::ff:fe00:1"


def test_plan_plug_orders_neighbours_before_routes_and_skips_what_is_there() -> None:
    ops, repaired = plan_plug(7, MAC, [A4, A6], [], {A4: False, A6: True},
                              {A4: None, A6: (MAC, NUD_PERMANENT)})  # fmt: skip
    assert ops == [Op("neigh", "set", A4, 7, mac=MAC), Op("route", "set", A4, 7)]
    assert repaired == []
    ops, repaired = plan_plug(7, MAC, [A4], [], {A4: True}, {A4: ("52:54:00:00:00:99", 0x80)})
    assert ops == [Op("neigh", "set", A4, 7, mac=MAC)] and repaired == [f"neighbour {A4}"]
    ops, _ = plan_plug(7, MAC, [A4], [], {A4: True}, {A4: (MAC, 0x04)})  # STALE, not permanent
    assert ops == [Op("neigh", "set", A4, 7, mac=MAC)]
    assert plan_plug(7, MAC, [A4], [], {A4: True}, {A4: (MAC, NUD_PERMANENT)}) == ([], [])


def test_plan_plug_removes_routes_before_neighbours() -> None:
    ops, _ = plan_plug(7, MAC, [A4], [A6], {A4: True, A6: True},
                       {A4: (MAC, NUD_PERMANENT), A6: (MAC, NUD_PERMANENT)})  # fmt: skip
    assert ops == [Op("route", "del", A6, 7), Op("neigh", "del", A6, 7)]


def test_inverse_restores_the_previous_state() -> None:
    assert inverse(Op("route", "set", A4, 7), None, False) == Op("route", "del", A4, 7)
    assert inverse(Op("route", "set", A4, 7), None, True) is None
    assert inverse(Op("route", "del", A4, 7), None, True) == Op("route", "set", A4, 7)
    assert inverse(Op("neigh", "set", A4, 7, mac=MAC), None, False) == Op("neigh", "del", A4, 7)
    old = ("52:54:00:00:00:99", NUD_PERMANENT)
    assert inverse(Op("neigh", "set", A4, 7, mac=MAC), old, False) == Op(
        "neigh", "set", A4, 7, mac="52:54:00:00:00:99", state=NUD_PERMANENT
    )


def test_port_rules_cover_the_guard() -> None:
    ll = eui64_link_local(MAC)
    rules = port_rules(MAC, [A4, A6], [ll])
    text = "\n".join(rules)
    assert rules[0] == f'ether saddr != {MAC} counter drop comment "mac"'
    assert rules[-1] == 'counter drop comment "ethertype"'
    assert "arp saddr ip != 192.0.2.30 arp operation != request" in text
    assert "ip saddr != 192.0.2.30 counter drop" in text
    assert f"ip6 saddr != {{ 2001:db8:100::80, {ll}, :: }}" in text
    assert "icmpv6 type { nd-router-advert, nd-redirect } counter drop" in text
    assert "@th,64,128 != { 0x20010db8010000000000000000000080, " in text
    assert "@th,208,48 != 0x525400123456" in text
    # IPv6-only: every ARP frame is dropped, no IPv4 accepted
    v6only = port_rules(MAC, [A6], [ll])
    assert 'ether type arp counter drop comment "arp-other"' in v6only
    assert not any("ether type ip accept" in r for r in v6only)
    # any link-local allowed: a prefix, not the single EUI-64 address
    assert "fe80::/64" in "\n".join(port_rules(MAC, [A4], [], any_link_local=True))


def test_chain_names_are_valid_and_distinct() -> None:
    a, b = chain_name("vm-1"), chain_name("vm_1")
    assert a != b and a.startswith("vm_vm_1_") and b.startswith("vm_vm_1_")
    assert all(c.isalnum() or c == "_" for c in chain_name("i-2:34.x@y"))


def test_scripts() -> None:
    rules = port_rules(MAC, [A4], [eui64_link_local(MAC)])
    script = plug_script("vm1", "tap1", rules, PortTable.empty())
    chain = chain_name("vm1")
    assert (
        f'add chain netdev frrctl {chain} {{ type filter hook ingress device "tap1" '
        f'priority -500; policy drop; comment "frrctl {rules_hash(rules, "tap1")}"; }}'
    ) in script
    assert script.rstrip().endswith(
        f'add rule netdev frrctl {chain} counter drop comment "ethertype"'
    )
    assert "delete" not in script
    # moved to tap2, while another instance's stale chain still hooks tap2: both go
    table = PortTable({chain: "x", "vm_old": ""}, {chain: "tap1", "vm_old": "tap2"})
    again = plug_script("vm1", "tap2", rules, table)
    assert f"delete chain netdev frrctl {chain}" in again
    assert "delete chain netdev frrctl vm_old" in again
    assert unplug_script("vm1", True).splitlines() == [
        f"flush chain netdev frrctl {chain}",
        f"delete chain netdev frrctl {chain}",
    ]
    assert unplug_script("vm1", False) == ""
    host = host_script("cloudbr0")
    assert 'oifname "cloudbr0" icmpv6 type nd-redirect' in host
    assert 'add rule inet frrctl in_cloudbr0 counter drop comment "host-input"' in host
    assert "delete table bridge frrctl" in host  # the guard before netdev ingress


def test_parse_table() -> None:
    text = (
        "table inet frrctl {\n\tchain in_br {\n\t\ttype filter hook input priority filter;\n"
        "\t\tcounter packets 0 bytes 0 drop\n\t}\n}\n"
        'table netdev frrctl {\n\tchain vm_a {\n\t\tcomment "frrctl 12"\n'
        '\t\ttype filter hook ingress device "tap1" priority -500; policy drop;\n'
        '\t\tether saddr != 52:54:00:00:00:01 counter packets 0 bytes 0 drop comment "mac"\n'
        "\t\tcounter packets 3 bytes 9 drop\n\t}\n"
        '\tchain vm_b {\n\t\ttype filter hook ingress device "tap2" priority -500;\n\t}\n}\n'
    )
    table = parse_table(text)
    assert table.chains == {"vm_a": "frrctl 12", "vm_b": ""}
    assert table.devices == {"vm_a": "tap1", "vm_b": "tap2"}
    assert table.rule_counts == {"vm_a": 2, "vm_b": 0}
    assert table.bound("vm_a", "tap1") and not table.bound("vm_a", "tap2")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("nft") is None, reason="needs root and nft")
def test_rendered_rules_pass_nft_check() -> None:
    """`nft -c` (check only, nothing applied) accepts every variant of the guard."""
    ll = eui64_link_local(MAC)
    variants = [
        port_rules(MAC, [A4, A6], [ll]),
        port_rules(MAC, [A4], [ll]),
        port_rules(MAC, [A6], [ll]),
        port_rules(MAC, [A4, ipaddress.ip_address("198.51.100.4"), A6], [ll], any_link_local=True),
    ]
    for i, rules in enumerate(variants):
        script = plug_script(f"vm{i}", f"tap{i}", rules, PortTable.empty()) + host_script("br0")
        proc = subprocess.run(["nft", "-c", "-f", "-"], input=script, capture_output=True,
                              text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr


def test_bridge_sysctls() -> None:
    wanted = bridge_sysctls("cloudbr0")
    assert wanted["ipv4/ip_forward"] == "1" and wanted["ipv6/conf/all/forwarding"] == "1"
    assert wanted["ipv6/conf/cloudbr0/accept_ra"] == "0"
    assert wanted["ipv4/conf/cloudbr0/proxy_arp"] == "0"
    assert wanted["ipv6/conf/cloudbr0/proxy_ndp"] == "0"
