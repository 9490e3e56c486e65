"""The nftables port guard against forged traffic from a VM namespace (needs root)."""

from __future__ import annotations

import json
import sys

from tests.host.conftest import Guest, HostNs, needs_root

pytestmark = needs_root

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"

# Sends one raw Ethernet frame out of eth0 (run inside the guest namespace).
SENDER = r"""
import socket, struct, sys, ipaddress
kind, mac, a, b = sys.argv[1:5]
m = bytes.fromhex(mac.replace(":", ""))
def csum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack(f"!{len(data)//2}H", data))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff
def icmp6(src, dst, body):
    s, d = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
    pseudo = s + d + struct.pack("!I3xB", len(body), 58)
    c = csum(pseudo + body)
    body = body[:2] + struct.pack("!H", c) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + s + d
    return b"\x33\x33\x00\x00\x00\x01" + m + b"\x86\xdd" + ip6 + body
if kind == "arp":  # gratuitous ARP reply claiming address a
    ip = ipaddress.IPv4Address(a).packed
    frame = b"\xff" * 6 + m + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + m + ip \
        + b"\xff" * 6 + ip
elif kind == "na":  # unsolicited NA from link-local a for target b, TLLA = mac
    body = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ipaddress.IPv6Address(b).packed \
        + b"\x02\x01" + m
    frame = icmp6(a, "ff02::1", body)
elif kind == "ra":  # router advertisement from link-local a
    body = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 1800, 0, 0) + b"\x01\x01" + m
    frame = icmp6(a, "ff02::1", body)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
s.send(frame)
"""


def _drops(host: HostNs, name: str) -> dict[str, int]:
    data = host.frrctl_json("instance", "list", "--counters")
    inst = next(i for i in data["instances"] if i["name"] == name)
    return {reason: c["packets"] for reason, c in inst["drops"].items()}


def _send(g: Guest, *argv: str) -> None:
    g.run(sys.executable, "-c", SENDER, *argv)


def _setup(host: HostNs) -> tuple[Guest, Guest]:
    host.frrctl("host", "setup")
    g1 = host.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    g2 = host.add_guest("g2", MAC2, "192.0.2.32", "2001:db8:100::32")
    for g, name in ((g1, "vm1"), (g2, "vm2")):
        host.frrctl("instance", "plug", name, "--mac", g.mac, "--ip", str(g.v4), str(g.v6),
                    "--port", g.port)  # fmt: skip
    assert g1.ping("192.0.2.32") and g1.ping("2001:db8:100::32")
    return g1, g2


def test_forged_source_ip_reaches_nothing(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    before = _drops(hostns, "vm1")
    g1.run("ip", "addr", "add", "192.0.2.99/32", "dev", "eth0")
    g1.run("ip", "-6", "addr", "add", "2001:db8:100::99/128", "dev", "eth0", "nodad")
    assert not g1.ping("192.0.2.32", source="192.0.2.99", tries=1)
    assert not g1.ping("169.254.0.1", source="192.0.2.99", tries=1)
    assert not g1.ping("2001:db8:100::32", source="2001:db8:100::99", tries=1)
    after = _drops(hostns, "vm1")
    assert after["ip4-src"] > before["ip4-src"]
    assert after["ip6-src"] > before["ip6-src"]
    assert g1.ping("192.0.2.32") and g1.ping("2001:db8:100::32")  # legitimate still flows


def test_forged_mac_reaches_nothing(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    before = _drops(hostns, "vm1")["mac"]
    g1.run("ip", "link", "set", "eth0", "address", "52:54:00:00:00:99")
    assert not g1.ping("192.0.2.32", tries=1)
    assert not g1.ping("2001:db8:100::32", tries=1)
    assert _drops(hostns, "vm1")["mac"] > before
    g1.run("ip", "link", "set", "eth0", "address", MAC1)
    assert g1.ping("192.0.2.32")


def test_forged_arp_na_and_ra_are_dropped(hostns: HostNs) -> None:
    g1, g2 = _setup(hostns)
    before = _drops(hostns, "vm1")
    _send(g1, "arp", MAC1, "192.0.2.32", "-")  # claims vm2's IPv4 address
    _send(g1, "arp", MAC1, "169.254.0.1", "-")  # claims the gateway
    _send(g1, "na", MAC1, "fe80::5054:ff:fe00:1", "2001:db8:100::32")  # vm2's IPv6 address
    _send(g1, "na", MAC1, "fe80::5054:ff:fe00:1", "fe80::1")  # the gateway
    _send(g1, "ra", MAC1, "fe80::5054:ff:fe00:1", "-")
    after = _drops(hostns, "vm1")
    assert after["arp-ip"] - before["arp-ip"] == 2
    assert after["na-target"] - before["na-target"] == 2
    assert after["ip6-ra-redirect"] - before["ip6-ra-redirect"] == 1
    # the host's view of vm2 is untouched and vm2 still answers
    for addr in ("192.0.2.32", "2001:db8:100::32"):
        n = json.loads(hostns.run("ip", "-j", "neigh", "show", addr, "dev", "cloudbr0").stdout)
        assert n[0]["lladdr"] == MAC2
    assert g1.ping("192.0.2.32") and g2.ping("2001:db8:100::31")
    # the host never accepted a route from the forged RA
    assert "fe80::5054" not in hostns.run("ip", "-6", "route").stdout


def test_own_gratuitous_arp_and_na_pass(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    before = _drops(hostns, "vm1")
    _send(g1, "arp", MAC1, "192.0.2.31", "-")
    _send(g1, "na", MAC1, "fe80::5054:ff:fe00:1", "2001:db8:100::31")
    after = _drops(hostns, "vm1")
    assert after == before


def test_unplug_removes_the_guard_and_port_settings(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    hostns.frrctl("instance", "unplug", "vm1")
    table = hostns.run("nft", "list", "table", "bridge", "frrctl").stdout
    assert g1.port not in table and "vm_vm1_" not in table
    assert "vm_vm2_" in table  # the other instance keeps its guard
    # plug attached the port, so unplug detached it
    link = json.loads(hostns.run("ip", "-j", "link", "show", g1.port).stdout)[0]
    assert "master" not in link
    assert MAC1 not in hostns.run("bridge", "fdb", "show", "dev", g1.port).stdout


def test_replug_keeps_counters_and_changes_nothing(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    g1.run("ip", "addr", "add", "192.0.2.99/32", "dev", "eth0")
    g1.ping("192.0.2.32", source="192.0.2.99", tries=1)
    before = _drops(hostns, "vm1")
    table = hostns.run("nft", "-a", "list", "table", "bridge", "frrctl").stdout
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                             "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    assert res["changed"] is False
    assert hostns.run("nft", "-a", "list", "table", "bridge", "frrctl").stdout == table
    assert _drops(hostns, "vm1") == before


def test_port_guard_drift_is_listed_and_repaired(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    hostns.run("nft", "delete", "element", "bridge", "frrctl", "ports", f'{{ "{g1.port}" }}')
    data = hostns.frrctl_json("instance", "list")
    vm1 = next(i for i in data["instances"] if i["name"] == "vm1")
    assert {"port": g1.port, "problem": "nftables port map entry missing"} in vm1["drift"]
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                             "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    assert res["changed"] and f"port {g1.port}" in res["repaired"]
    assert hostns.frrctl_json("instance", "list")["drift"] == 0


def test_edited_guard_rules_show_as_drift(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    chain = next(
        line.split()[1]
        for line in hostns.run("nft", "list", "table", "bridge", "frrctl").stdout.splitlines()
        if line.strip().startswith("chain vm_vm1_")
    )
    hostns.run("nft", "flush", "chain", "bridge", "frrctl", chain)  # an operator's edit
    vm1 = next(i for i in hostns.frrctl_json("instance", "list")["instances"] if i["name"] == "vm1")
    assert {"port": g1.port, "problem": "nftables rules differ"} in vm1["drift"]
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                  "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    assert hostns.frrctl_json("instance", "list")["drift"] == 0


def test_port_settings_drift(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    hostns.run("bridge", "link", "set", "dev", g1.port, "isolated", "off", "learning", "on")
    hostns.run("bridge", "fdb", "del", MAC1, "dev", g1.port, "master")
    vm1 = next(i for i in hostns.frrctl_json("instance", "list")["instances"] if i["name"] == "vm1")
    problems = {d["problem"] for d in vm1["drift"]}
    assert problems == {"port settings differ: isolated, learning", "static fdb entry missing"}
    hostns.frrctl("instance", "repair", "vm1")
    assert hostns.frrctl_json("instance", "list")["drift"] == 0


def test_instance_moves_to_another_port(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    hostns.run("ip", "link", "add", "newport0", "type", "veth", "peer", "name", "newpeer0")
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                             "2001:db8:100::31", "--port", "newport0")  # fmt: skip
    assert res["changed"] and res["port"] == "newport0"
    table = hostns.run("nft", "list", "table", "bridge", "frrctl").stdout
    assert '"newport0" : jump vm_vm1_' in table and f'"{g1.port}"' not in table
    old = json.loads(hostns.run("ip", "-j", "link", "show", g1.port).stdout)[0]
    assert "master" not in old  # released: plug had attached it
    assert hostns.frrctl_json("instance", "list")["drift"] == 0
    # and without --port the guard goes away entirely
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                  "2001:db8:100::31")  # fmt: skip
    assert "vm_vm1_" not in hostns.run("nft", "list", "table", "bridge", "frrctl").stdout
    assert hostns.frrctl_json("instance", "list")["drift"] == 0
