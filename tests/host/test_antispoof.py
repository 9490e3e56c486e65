"""The port guard and the host guard, attacked from a VM namespace (needs root).

Every attack is a frame forged with scapy and sent raw from the attacker's
namespace; each test checks that it reached nothing (the victim's capture, the
host's neighbour table, the host's sockets) and that its drop was counted
under the reason the guard gives for it. Legitimate traffic is checked to
still flow beside each attack, so a guard that drops everything fails too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, LLC, STP, Dot1AD, Dot1Q, Ether

from tests.host.attack import capture, send
from tests.host.conftest import Guest, HostNs, needs_root, sh

pytestmark = needs_root

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"
FORGED_MAC = "02:00:00:00:00:99"
GW_MAC = "02:a9:fe:00:00:01"
LL1 = "fe80::5054:ff:fe00:1"  # vm1's EUI-64 link-local
V4_1, V6_1 = "192.0.2.31", "2001:db8:100::31"
V4_2, V6_2 = "192.0.2.32", "2001:db8:100::32"
# Every destination MAC class: the 802.1D reserved range (handed to the host's
# stack by the bridge without bridge prerouting), broadcast, multicast, the
# gateway's and the victim's unicast MAC.
DEST_MACS = [f"01:80:c2:00:00:{i:02x}" for i in range(16)] + [
    "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01", "01:00:5e:00:00:01", GW_MAC, MAC2,
]  # fmt: skip


def _drops(host: HostNs, name: str) -> dict[str, int]:
    data = host.frrctl_json("instance", "list", "--counters")
    inst = next(i for i in data["instances"] if i["name"] == name)
    return {reason: c["packets"] for reason, c in inst["drops"].items()}


def _host_drops(host: HostNs) -> dict[str, int]:
    data = host.frrctl_json("instance", "list", "--counters")
    return {reason: c["packets"] for reason, c in data["host_drops"].items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def _chain(host: HostNs, name: str) -> str:
    return next(
        line.split()[1]
        for line in host.run("nft", "list", "table", "netdev", "frrctl").stdout.splitlines()
        if line.strip().startswith(f"chain vm_{name}_")
    )


def _neighbours(host: HostNs) -> list[dict[str, object]]:
    out = []
    for fam in ("-4", "-6"):
        out += json.loads(host.run("ip", "-j", fam, "neigh", "show", "dev", "cloudbr0").stdout)
    return out


def _setup(host: HostNs) -> tuple[Guest, Guest]:
    host.frrctl("host", "setup")
    g1 = host.add_guest("g1", MAC1, V4_1, V6_1)
    g2 = host.add_guest("g2", MAC2, V4_2, V6_2)
    for g, name in ((g1, "vm1"), (g2, "vm2")):
        host.frrctl("instance", "plug", name, "--mac", g.mac, "--ip", str(g.v4), str(g.v6),
                    "--port", g.port)  # fmt: skip
    assert g1.ping("192.0.2.32") and g1.ping("2001:db8:100::32")
    return g1, g2


def _replies_to_victim(frames: list[Ether]) -> list[Ether]:
    """Echo replies (or any frame at all from the gateway) addressed to vm2's addresses."""
    return [
        f for f in frames
        if (IP in f and f[IP].dst == V4_2 and ICMP in f and f[ICMP].type == 0)
        or (IPv6 in f and f[IPv6].dst == V6_2 and ICMPv6EchoReply in f)
    ]  # fmt: skip


def test_every_destination_mac_is_guarded(hostns: HostNs) -> None:
    """Forged source MAC or address, to every destination MAC: the victim sees no reply."""
    g1, g2 = _setup(hostns)
    hostns.run("ip", "neigh", "flush", "dev", "cloudbr0", "nud", "stale", "nud", "reachable")
    neigh_before = len(_neighbours(hostns))
    before = _drops(hostns, "vm1")
    frames = []
    for dst in DEST_MACS:
        for src in (FORGED_MAC, MAC1):  # a forged MAC, and our own MAC with a forged address
            frames += [
                Ether(src=src, dst=dst) / IP(src=V4_2, dst="169.254.0.1") / ICMP(),
                Ether(src=src, dst=dst) / IPv6(src=V6_2, dst="fe80::1") / ICMPv6EchoRequest(),
                Ether(src=src, dst=dst) / IP(src=V4_2, dst="169.254.0.1") / UDP(dport=3784),
            ]
    with capture(g2.ns) as seen:
        send(g1.ns, frames)
    assert _replies_to_victim(seen.frames) == []
    n = len(DEST_MACS)
    assert _delta(before, _drops(hostns, "vm1")) == {"mac": 3 * n, "ip4-src": 2 * n, "ip6-src": n}
    # no neighbour entry was created for the forged MAC or the victim's addresses
    after = _neighbours(hostns)
    assert not [e for e in after if e.get("lladdr") == FORGED_MAC]
    assert len(after) <= neigh_before + 2  # at most vm1's own link-local and a probe
    # the same frame, unforged, is answered: the capture is not blind
    with capture(g1.ns) as own:
        send(g1.ns, [Ether(src=MAC1, dst=GW_MAC) / IP(src=V4_1, dst="169.254.0.1") / ICMP()])
    assert [f for f in own.frames if ICMP in f and f[ICMP].type == 0 and f[IP].dst == V4_1]


def test_nd_link_layer_option_in_any_position(hostns: HostNs) -> None:
    """NS/NA/RS claiming the victim's MAC in any option, or hiding behind a header."""
    g1, g2 = _setup(hostns)
    ns_hdr = Ether(src=MAC1, dst="33:33:ff:00:00:01") / IPv6(src=LL1, dst="ff02::1:ff00:1")
    na_hdr = Ether(src=MAC1, dst="33:33:00:00:00:01") / IPv6(src=LL1, dst="ff02::1")
    rs_hdr = Ether(src=MAC1, dst="33:33:00:00:00:02") / IPv6(src=LL1, dst="ff02::2")
    own_s, own_t = ICMPv6NDOptSrcLLAddr(lladdr=MAC1), ICMPv6NDOptDstLLAddr(lladdr=MAC1)
    victim_s, victim_t = ICMPv6NDOptSrcLLAddr(lladdr=MAC2), ICMPv6NDOptDstLLAddr(lladdr=MAC2)
    attacks = {
        "nd-options": [
            ns_hdr / ICMPv6ND_NS(tgt="fe80::1") / own_s / victim_s,  # the victim's MAC second
            ns_hdr / ICMPv6ND_NS(tgt="fe80::1") / victim_s / own_s,
            na_hdr / ICMPv6ND_NA(tgt=LL1, R=0, S=0, O=1) / own_t / victim_t,
            na_hdr / ICMPv6ND_NA(tgt=LL1, R=0, S=0, O=1) / victim_s,  # a source option in an NA
            rs_hdr / ICMPv6ND_RS() / own_s / victim_s,
            # behind a hop-by-hop header (the kernel still parses the NS)
            Ether(src=MAC1, dst="33:33:ff:00:00:01")
            / IPv6(src=LL1, dst="ff02::1:ff00:1") / IPv6ExtHdrHopByHop()
            / ICMPv6ND_NS(tgt="fe80::1") / victim_s,
        ],
        "nd-lladdr": [
            ns_hdr / ICMPv6ND_NS(tgt="fe80::1") / victim_s,
            na_hdr / ICMPv6ND_NA(tgt=LL1, R=0, S=0, O=1) / victim_t,
            rs_hdr / ICMPv6ND_RS() / victim_s,
        ],
    }  # fmt: skip
    before = _drops(hostns, "vm1")
    with capture(g2.ns, seconds=1.0) as seen:
        send(g1.ns, [f for frames in attacks.values() for f in frames])
    assert _delta(before, _drops(hostns, "vm1")) == {k: len(v) for k, v in attacks.items()}
    # the host never pointed vm1's link-local at vm2's MAC, and sent vm2 nothing meant for vm1
    entries = [e for e in _neighbours(hostns) if e.get("dst") == LL1]
    assert all(e.get("lladdr") != MAC2 for e in entries)
    assert not [f for f in seen.frames if IPv6 in f and f[IPv6].dst == LL1]
    # a real stack's NS (one source option, our own MAC) passes and is answered
    before = _drops(hostns, "vm1")
    with capture(g1.ns, seconds=1.0) as own:
        send(g1.ns, [ns_hdr / ICMPv6ND_NS(tgt="fe80::1") / own_s])
    assert _drops(hostns, "vm1") == before
    assert [f for f in own.frames if ICMPv6ND_NA in f and f[ICMPv6ND_NA].tgt == "fe80::1"]


def test_arp_of_other_hardware_types_and_operations(hostns: HostNs) -> None:
    g1, g2 = _setup(hostns)
    hostns.run("ip", "neigh", "flush", "dev", "cloudbr0", "nud", "stale", "nud", "reachable")
    bcast = "ff:ff:ff:ff:ff:ff"
    arp = Ether(src=MAC1, dst=bcast)
    attacks = {
        "arp-hw": [
            # IEEE 802 hardware type with the victim's MAC as sender: the reply went to vm2
            arp / ARP(hwtype=6, op=1, hwsrc=MAC2, psrc=V4_1, pdst="169.254.0.1"),
            # sender 0.0.0.0 with a broadcast sender MAC: the reply went to every port
            arp / ARP(hwtype=6, op=1, hwsrc=bcast, psrc="0.0.0.0", pdst="169.254.0.1"),
            arp / ARP(hwtype=1, ptype=0x86DD, op=1, hwsrc=MAC1, psrc=V4_1, pdst="169.254.0.1"),
            arp / ARP(hwtype=1, hwlen=8, op=1, hwsrc=MAC1, psrc=V4_1, pdst="169.254.0.1"),
        ],
        "arp-op": [arp / ARP(op=3, hwsrc=MAC1, psrc=V4_1, pdst="169.254.0.1")],  # RARP
        "arp-mac": [arp / ARP(op=1, hwsrc=MAC2, psrc=V4_1, pdst="169.254.0.1")],
    }  # fmt: skip
    before = _drops(hostns, "vm1")
    with capture(g2.ns, seconds=1.0) as seen:
        send(g1.ns, [f for frames in attacks.values() for f in frames])
    assert _delta(before, _drops(hostns, "vm1")) == {k: len(v) for k, v in attacks.items()}
    assert not [f for f in seen.frames if ARP in f]  # no reply reached vm2
    assert not [e for e in _neighbours(hostns) if e.get("lladdr") in (MAC2, bcast)
                and e.get("dst") not in (V4_2, V6_2)]  # fmt: skip
    # an ordinary request is answered
    with capture(g1.ns, seconds=1.0) as own:
        send(g1.ns, [arp / ARP(op=1, hwsrc=MAC1, psrc=V4_1, pdst="169.254.0.1")])
    assert [f for f in own.frames if ARP in f and f[ARP].op == 2 and f[ARP].pdst == V4_1]


def test_tagged_and_foreign_frames_are_dropped(hostns: HostNs) -> None:
    g1, g2 = _setup(hostns)
    ip4 = IP(src=V4_2, dst="169.254.0.1") / ICMP()
    frames = [
        Ether(src=MAC1, dst=GW_MAC) / Dot1Q(vlan=1) / ip4,
        Ether(src=MAC1, dst=GW_MAC) / Dot1Q(vlan=0) / ip4,  # priority tag only
        Ether(src=MAC1, dst=GW_MAC) / Dot1AD(vlan=2) / Dot1Q(vlan=3) / ip4,
        Ether(src=MAC1, dst="01:80:c2:00:00:00") / LLC() / STP(),  # a BPDU
        Ether(src=MAC1, dst="01:80:c2:00:00:0e", type=0x88CC) / (b"\x02\x07\x04" * 8),  # LLDP
        Ether(src=MAC1, dst="01:80:c2:00:00:03", type=0x888E) / (b"\x01\x01\x00\x00" * 8),  # EAPOL
        Ether(src=MAC1, dst=GW_MAC, type=0x8035) / bytes(28),  # RARP ethertype
    ]  # fmt: skip
    before = _drops(hostns, "vm1")
    with capture(g2.ns, seconds=1.0) as seen:
        send(g1.ns, frames)
    assert _delta(before, _drops(hostns, "vm1")) == {"ethertype": len(frames)}
    assert _replies_to_victim(seen.frames) == []


LISTENER = r"""
import socket, sys, select
socks = []
for port in (179, 22, 50051, 9342):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); s.listen(); socks.append(s)
for port in (3784, 4784):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port)); socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        if s.type == socket.SOCK_STREAM:
            c, addr = s.accept(); print("tcp", s.getsockname()[1], addr[0], flush=True); c.close()
        else:
            _, addr = s.recvfrom(2048); print("udp", s.getsockname()[1], addr[0], flush=True)
"""

CLIENT = r"""
import select, socket, sys, time
pending = {}
for target in sys.argv[1:]:
    host, port, proto = target.rsplit(":", 2)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    addr = (host, int(port), 0, socket.if_nametoindex("eth0")) if host.startswith("fe80") \
        else (host, int(port))
    s = socket.socket(fam, socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM)
    if proto == "udp":
        s.sendto(b"x", addr)
        continue
    s.setblocking(False)
    s.connect_ex(addr)
    pending[s] = target
end = time.monotonic() + 2  # every connection attempt in parallel, 2 s for all
while pending and (left := end - time.monotonic()) > 0:
    for s in select.select([], list(pending), [], left)[1]:
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            print("connected", pending[s])
        del pending[s]
"""


@pytest.fixture
def host_services(hostns: HostNs) -> Iterator[subprocess.Popen[str]]:
    """Listeners in the host namespace on bgpd's, bfdd's, ssh's, gRPC's and metrics' ports."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", hostns.ns, sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_tenant_reaches_no_host_service(
    hostns: HostNs, host_services: subprocess.Popen[str]
) -> None:
    g1, _ = _setup(hostns)
    # an uplink address of the host, as bgpd would listen on it
    hostns.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    hostns.run("ip", "link", "set", "up0p", "up")
    hostns.run("ip", "addr", "add", "198.51.100.1/32", "dev", "up0")
    hostns.run("ip", "addr", "add", "2001:db8:ffff::1/128", "dev", "up0", "nodad")
    hostns.run("ip", "link", "set", "up0", "up")
    targets = [
        f"{h}:{p}:tcp"
        for h in ("169.254.0.1", "fe80::1", "198.51.100.1", "2001:db8:ffff::1")
        for p in (179, 22, 50051, 9342)
    ]
    targets += [f"{h}:{p}:udp" for h in ("169.254.0.1", "fe80::1", "198.51.100.1")
                for p in (3784, 4784)]  # fmt: skip
    before = _host_drops(hostns)
    out = g1.run(sys.executable, "-c", CLIENT, *targets).stdout
    assert out == ""  # not one connection
    # the listeners are alive: the host itself reaches them
    hostns.run("ip", "link", "set", "lo", "up")
    local = hostns.run(sys.executable, "-c", CLIENT.replace('"eth0"', '"lo"'),
                       "127.0.0.1:179:tcp", "::1:9342:tcp").stdout  # fmt: skip
    assert local.count("connected") == 2
    host_services.kill()
    got = host_services.communicate()[0]
    assert [line for line in got.splitlines() if line.split()[2] not in ("127.0.0.1", "::1",
            "::ffff:127.0.0.1")] == []  # fmt: skip
    assert _delta(before, _host_drops(hostns)).get("host-input", 0) >= len(targets)
    # what the gateway role needs still works: ARP/ND, echo
    assert g1.ping("169.254.0.1") and g1.ping("fe80::1%eth0")


def test_link_local_destinations_never_leave_the_host(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    up = f"{hostns.prefix}-up"
    sh("ip", "netns", "add", up)
    hostns.extra_ns.append(up)
    hostns.run("ip", "link", "add", "upl", "type", "veth", "peer", "name", "eth0", "netns", up)
    hostns.run("ip", "addr", "add", "198.18.0.0/31", "dev", "upl")
    hostns.run("ip", "link", "set", "upl", "up")
    hostns.run("ip", "route", "add", "default", "via", "198.18.0.1")
    sh("ip", "netns", "exec", up, "ip", "addr", "add", "198.18.0.1/31", "dev", "eth0")
    sh("ip", "netns", "exec", up, "ip", "link", "set", "eth0", "up")
    before = _host_drops(hostns)
    probes = [
        Ether(src=MAC1, dst=GW_MAC) / IP(src=V4_1, dst=dst) / ICMP()
        for dst in ("169.254.0.2", "169.254.1.1", "169.254.255.254")
    ]
    with capture(up) as seen:
        send(g1.ns, [*probes, Ether(src=MAC1, dst=GW_MAC) / IP(src=V4_1, dst="198.18.0.1")
                     / TCP(dport=7)])  # fmt: skip
    arrived = {f[IP].dst for f in seen.frames if IP in f and f[IP].src == V4_1}
    assert arrived == {"198.18.0.1"}  # forwarding works; no link-local destination left
    assert _delta(before, _host_drops(hostns)).get("link-local-forward") == len(probes)


def test_unplug_removes_the_guard_and_port_settings(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    hostns.frrctl("instance", "unplug", "vm1")
    table = hostns.run("nft", "list", "table", "netdev", "frrctl").stdout
    assert f'"{g1.port}"' not in table and "vm_vm1_" not in table
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
    table = hostns.run("nft", "-a", "list", "table", "netdev", "frrctl").stdout
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                             "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    assert res["changed"] is False
    assert hostns.run("nft", "-a", "list", "table", "netdev", "frrctl").stdout == table
    assert _drops(hostns, "vm1") == before


def test_port_guard_drift_is_listed_and_repaired(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    chain = _chain(hostns, "vm1")
    hostns.run("nft", "flush", "chain", "netdev", "frrctl", chain)
    hostns.run("nft", "delete", "chain", "netdev", "frrctl", chain)
    data = hostns.frrctl_json("instance", "list")
    vm1 = next(i for i in data["instances"] if i["name"] == "vm1")
    assert {"port": g1.port, "problem": "nftables chain missing"} in vm1["drift"]
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                             "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    assert res["changed"] and f"port {g1.port}" in res["repaired"]
    assert hostns.frrctl_json("instance", "list")["drift"] == 0


def test_edited_guard_rules_show_as_drift(hostns: HostNs) -> None:
    g1, _ = _setup(hostns)
    chain = _chain(hostns, "vm1")
    hostns.run("nft", "flush", "chain", "netdev", "frrctl", chain)  # an operator's edit
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
    table = hostns.run("nft", "list", "table", "netdev", "frrctl").stdout
    assert 'device "newport0"' in table and f'device "{g1.port}"' not in table
    old = json.loads(hostns.run("ip", "-j", "link", "show", g1.port).stdout)[0]
    assert "master" not in old  # released: plug had attached it
    assert hostns.frrctl_json("instance", "list")["drift"] == 0
    # and without --port the guard goes away entirely
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                  "2001:db8:100::31")  # fmt: skip
    assert "vm_vm1_" not in hostns.run("nft", "list", "table", "netdev", "frrctl").stdout
    assert hostns.frrctl_json("instance", "list")["drift"] == 0
