"""host setup, instance plug/unplug/list against the real kernel, in namespaces."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.host.conftest import HostNs, needs_root

pytestmark = needs_root

MAC1 = "52:54:00:00:00:01"
MAC2 = "52:54:00:00:00:02"


def _link(host: HostNs, name: str = "cloudbr0") -> dict:
    return json.loads(host.run("ip", "-j", "-d", "link", "show", name).stdout)[0]


def _sysctl(host: HostNs, path: str) -> str:
    return host.run("cat", f"/proc/sys/net/{path}").stdout.strip()


def test_setup_creates_bridge_and_is_idempotent(hostns: HostNs) -> None:
    first = hostns.frrctl_json("host", "setup")
    assert first["changed"] and "created bridge cloudbr0" in first["changes"]
    second = hostns.frrctl_json("host", "setup")
    assert second == {**first, "changed": False, "changes": []}

    link = _link(hostns)
    info = link["linkinfo"]["info_data"]
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert info["stp_state"] == 0 and info["forward_delay"] == 0
    assert "UP" in link["flags"]
    assert link["address"] == "02:a9:fe:00:00:01"
    addrs = json.loads(hostns.run("ip", "-j", "addr", "show", "cloudbr0").stdout)[0]["addr_info"]
    assert sorted((a["local"], a["prefixlen"]) for a in addrs) == [
        ("169.254.0.1", 32), ("fe80::1", 64),
    ]  # fmt: skip
    # no ports
    assert hostns.run("ip", "-j", "link", "show", "master", "cloudbr0").stdout.strip() in ("", "[]")
    assert _sysctl(hostns, "ipv4/ip_forward") == "1"
    assert _sysctl(hostns, "ipv6/conf/all/forwarding") == "1"
    assert _sysctl(hostns, "ipv6/conf/cloudbr0/accept_ra") == "0"
    assert _sysctl(hostns, "ipv6/conf/cloudbr0/accept_dad") == "0"
    assert _sysctl(hostns, "ipv4/conf/cloudbr0/arp_ignore") == "1"
    assert _sysctl(hostns, "ipv4/conf/cloudbr0/proxy_arp") == "0"
    assert _sysctl(hostns, "ipv6/conf/cloudbr0/proxy_ndp") == "0"


def test_setup_repairs_a_damaged_bridge(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    hostns.run("ip", "addr", "del", "169.254.0.1/32", "dev", "cloudbr0")
    hostns.run("ip", "link", "set", "cloudbr0", "type", "bridge", "stp_state", "1")
    hostns.run("ip", "link", "set", "cloudbr0", "down")
    hostns.run("sysctl", "-qw", "net.ipv4.ip_forward=0")
    report = hostns.frrctl_json("host", "setup")
    assert report["changed"]
    assert "added 169.254.0.1/32" in report["changes"]
    assert "cloudbr0 up" in report["changes"]
    assert _link(hostns)["linkinfo"]["info_data"]["stp_state"] == 0
    assert _sysctl(hostns, "ipv4/ip_forward") == "1"
    assert not hostns.frrctl_json("host", "setup")["changed"]


def test_setup_refuses_a_non_bridge(hostns: HostNs) -> None:
    hostns.run("ip", "link", "add", "cloudbr0", "type", "veth", "peer", "name", "x0")
    proc = hostns.frrctl("host", "setup", check=False)
    assert proc.returncode == 1
    assert "not a bridge" in proc.stderr


def test_guests_reach_gateway_and_each_other(hostns: HostNs) -> None:
    """Guests configured exactly as VMs: /32, /128 nodad, on-link default routes."""
    hostns.frrctl("host", "setup")
    g1 = hostns.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    g2 = hostns.add_guest("g2", MAC2, "192.0.2.32", "2001:db8:100::32")
    for g, name in ((g1, "vm1"), (g2, "vm2")):
        hostns.frrctl("instance", "plug", name, "--mac", g.mac, "--ip", str(g.v4), "--ip",
                      str(g.v6), "--port", g.port)  # fmt: skip
    assert g1.ping("169.254.0.1")
    assert g1.ping("fe80::1%eth0")
    assert g1.ping("fe80::1%eth0", source="2001:db8:100::31")
    assert g1.ping("192.0.2.32")
    assert g1.ping("2001:db8:100::32")
    assert g2.ping("192.0.2.31")
    assert g2.ping("2001:db8:100::31")
    # The gateway was answered by ARP/NDP with the bridge's MAC.
    neigh = json.loads(g1.run("ip", "-j", "neigh", "show", "dev", "eth0").stdout)
    lladdrs = {n["dst"]: n.get("lladdr") for n in neigh}
    assert lladdrs.get("169.254.0.1") == "02:a9:fe:00:00:01"
    assert lladdrs.get("fe80::1") == "02:a9:fe:00:00:01"
    # Ports are isolated: guest-to-guest traffic is routed by the host, and the
    # host's redirects (which would point at an unreachable MAC) are dropped.
    ports = json.loads(hostns.run("bridge", "-j", "-d", "link", "show").stdout)
    for p in ports:
        if p["ifname"] in (g1.port, g2.port):
            assert p["isolated"] is True and p["learning"] is False and p["flood"] is False
    routes = json.loads(g1.run("ip", "-j", "route", "get", "192.0.2.32").stdout)
    assert routes[0].get("gateway") == "169.254.0.1"


def test_unplugged_guest_reaches_nothing(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g1 = hostns.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    hostns.run("ip", "link", "set", g1.port, "master", "cloudbr0", "up")
    assert not g1.ping("169.254.0.1", tries=1)  # strict rp_filter: no route back, no ARP reply
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31", "--port", g1.port)
    assert g1.ping("169.254.0.1")


def test_plug_installs_routes_and_neighbours_idempotently(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    # things on the bridge that frrctl does not own must survive plug/unplug
    hostns.run("ip", "route", "add", "198.51.100.7/32", "dev", "cloudbr0")
    hostns.run("ip", "neigh", "add", "198.51.100.7", "lladdr", "52:54:00:00:00:77", "dev",
               "cloudbr0", "nud", "permanent")  # fmt: skip
    before = hostns.snapshot()
    res = hostns.frrctl_json(
        "instance",
        "plug",
        "vm1",
        "--mac",
        MAC1,
        "--ip",
        "192.0.2.30",
        "--ip",
        "2001:db8:100::80",
        "--ip",
        "2001:db8:100::81/128",
    )
    assert res["changed"] and res["added"] == [
        "192.0.2.30/32", "2001:db8:100::80/128", "2001:db8:100::81/128",
    ]  # fmt: skip
    r4 = json.loads(hostns.run("ip", "-j", "route", "show", "192.0.2.30/32").stdout)
    assert r4 == [{"dst": "192.0.2.30", "dev": "cloudbr0", "scope": "link",
                   "flags": ["linkdown"]}] or r4[0]["dev"] == "cloudbr0"  # fmt: skip
    assert r4[0].get("protocol", "boot") == "boot" and r4[0]["scope"] == "link"
    r6 = json.loads(hostns.run("ip", "-j", "-6", "route", "show", "2001:db8:100::80/128").stdout)
    assert r6[0]["dev"] == "cloudbr0" and "gateway" not in r6[0]
    # metric 2 << 24: a staticd route (the gRPC driver, distance 1) outranks it in zebra
    assert r4[0]["metric"] == 33554432 and r6[0]["metric"] == 33554432
    for addr in ("192.0.2.30", "2001:db8:100::80", "2001:db8:100::81"):
        n = json.loads(hostns.run("ip", "-j", "neigh", "show", addr, "dev", "cloudbr0").stdout)
        assert n[0]["lladdr"] == MAC1 and "PERMANENT" in n[0]["state"]
    middle = hostns.snapshot()
    again = hostns.frrctl_json(
        "instance",
        "plug",
        "vm1",
        "--mac",
        MAC1,
        "--ip",
        "192.0.2.30",
        "--ip",
        "2001:db8:100::81",
        "--ip",
        "2001:db8:100::80",
    )
    assert again["changed"] is False
    assert hostns.snapshot() == middle
    listing = hostns.frrctl_json("instance", "list")
    assert listing["drift"] == 0 and listing["instances"][0]["ok"]
    assert listing["unrecorded_routes"] == ["198.51.100.7"]
    out = hostns.frrctl_json("instance", "unplug", "vm1")
    assert out["changed"]
    assert hostns.snapshot() == before
    assert hostns.frrctl_json("instance", "unplug", "vm1")["changed"] is False


def test_ipv4_only_and_ipv6_only_instances(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g4 = hostns.add_guest("g4", MAC1, "192.0.2.41", None)
    g6 = hostns.add_guest("g6", MAC2, None, "2001:db8:100::46")
    hostns.frrctl("instance", "plug", "v4only", "--mac", MAC1, "--ip", "192.0.2.41",
                  "--port", g4.port)  # fmt: skip
    hostns.frrctl("instance", "plug", "v6only", "--mac", MAC2, "--ip", "2001:db8:100::46",
                  "--port", g6.port)  # fmt: skip
    assert g4.ping("169.254.0.1")
    assert g6.ping("fe80::1%eth0")
    assert g6.ping("fe80::1%eth0", source="2001:db8:100::46")


def test_replug_with_other_data_moves_the_instance(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.30", "192.0.2.31")
    res = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC2, "--ip", "192.0.2.31",
                             "192.0.2.32")  # fmt: skip
    assert res["added"] == ["192.0.2.32/32"] and res["removed"] == ["192.0.2.30/32"]
    assert hostns.run("ip", "route", "show", "192.0.2.30/32").stdout.strip() == ""
    n = json.loads(hostns.run("ip", "-j", "neigh", "show", "192.0.2.31").stdout)
    assert n[0]["lladdr"] == MAC2
    assert hostns.frrctl_json("instance", "list")["drift"] == 0


def test_errors_are_clear_and_change_nothing(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.30")
    hostns.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up1")
    hostns.run("ip", "addr", "add", "198.18.0.0/31", "dev", "up0")
    hostns.run("ip", "link", "set", "up0", "up")
    hostns.run("ip", "route", "add", "203.0.113.5/32", "via", "198.18.0.1")
    before = hostns.snapshot()
    cases = [
        (
            ["vm2", "--mac", MAC2, "--ip", "192.0.2.31", "192.0.2.30"],
            1,
            "already plugged for instance vm1",
        ),
        (["vm2", "--mac", "52:54:00:00:00", "--ip", "192.0.2.31"], 2, "malformed"),
        (["vm2", "--mac", "01:00:5e:00:00:01", "--ip", "192.0.2.31"], 2, "multicast"),
        (["vm2", "--mac", MAC2, "--ip", "192.0.2.300"], 2, "not an IPv4 or IPv6 address"),
        (["vm2", "--mac", MAC2, "--ip", "192.0.2.0/31"], 2, "not a host address"),
        (["vm2", "--mac", MAC2, "--ip", "2001:db8::/64"], 2, "not a host address"),
        (["vm2", "--mac", MAC2, "--ip", "192.0.2.31", "--bridge", "nobr0"], 1, "does not exist"),
        (["vm2", "--mac", MAC2, "--ip", "192.0.2.31", "--port", "noport0"], 1, "does not exist"),
        (["vm2", "--mac", MAC2, "--ip", "203.0.113.5"], 1, "already routed"),
        (["bad name", "--mac", MAC2, "--ip", "192.0.2.31"], 2, "invalid"),
    ]
    for argv, code, message in cases:
        proc = hostns.frrctl("instance", "plug", *argv, check=False)
        assert proc.returncode == code, (argv, proc.stderr)
        assert message in proc.stderr, (argv, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    assert hostns.snapshot() == before
    names = [i["name"] for i in hostns.frrctl_json("instance", "list")["instances"]]
    assert names == ["vm1"]


def test_failure_midway_rolls_everything_back(hostns: HostNs) -> None:
    """IPv6 disabled on the bridge: the IPv4 half succeeds in the kernel, then is undone."""
    hostns.frrctl("host", "setup")
    g1 = hostns.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    hostns.run("sysctl", "-qw", "net.ipv6.conf.cloudbr0.disable_ipv6=1")
    before = hostns.snapshot()
    links_before = hostns.run("ip", "-j", "-d", "link", "show", g1.port).stdout
    proc = hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                         "2001:db8:100::31", "--port", g1.port, check=False)  # fmt: skip
    assert proc.returncode == 1 and "nothing changed" in proc.stderr, proc.stderr
    assert hostns.snapshot() == before
    assert json.loads(hostns.run("ip", "-j", "-d", "link", "show", g1.port).stdout)[0].get(
        "master"
    ) == json.loads(links_before)[0].get("master")
    assert hostns.frrctl_json("instance", "list")["instances"] == []


def test_list_shows_drift_and_state_survives(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.30",
                  "2001:db8:100::80")  # fmt: skip
    hostns.run("ip", "neigh", "replace", "192.0.2.30", "lladdr", "52:54:00:00:00:99", "dev",
               "cloudbr0", "nud", "permanent")  # fmt: skip
    hostns.run("ip", "-6", "route", "del", "2001:db8:100::80/128", "dev", "cloudbr0")
    data = hostns.frrctl_json("instance", "list")
    problems = {(d["address"], d["problem"]) for d in data["instances"][0]["drift"]}
    assert problems == {
        ("192.0.2.30", "neighbour has wrong MAC"), ("2001:db8:100::80", "route missing"),
    }  # fmt: skip
    assert hostns.frrctl("instance", "list", "--check", check=False).returncode == 1
    text = hostns.frrctl("instance", "list").stdout
    assert "DRIFT" in text
    repaired = hostns.frrctl_json("instance", "plug", "vm1", "--mac", MAC1, "--ip",
                                  "192.0.2.30", "2001:db8:100::80")  # fmt: skip
    assert repaired["changed"] and repaired["added"] == []
    assert hostns.frrctl("instance", "list", "--check").returncode == 0


def test_parallel_plugs_of_one_address_one_wins(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    procs = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                hostns.ns,
                sys.executable,
                "-m",
                "frrctl.cli",
                "instance",
                "plug",
                f"vm{i}",
                "--mac",
                f"52:54:00:00:01:{i:02x}",
                "--ip",
                "192.0.2.50",
                "--state-dir",
                str(hostns.state_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(6)
    ]
    results = [(p.wait(), p.communicate()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1, 1, 1, 1, 1], results
    data = hostns.frrctl_json("instance", "list")
    assert len(data["instances"]) == 1 and data["drift"] == 0


def test_repair_after_a_reboot(hostns: HostNs) -> None:
    """The kernel forgets everything (bridge re-created); the record brings it all back."""
    hostns.frrctl("host", "setup")
    g1 = hostns.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.31",
                  "2001:db8:100::31", "--port", g1.port)  # fmt: skip
    hostns.frrctl("instance", "plug", "vm2", "--mac", MAC2, "--ip", "192.0.2.32")
    hostns.run("ip", "link", "del", "cloudbr0")
    hostns.run("nft", "delete", "table", "netdev", "frrctl")
    assert hostns.frrctl_json("instance", "list")["instances"][0]["drift"]
    hostns.frrctl("host", "setup")
    out = hostns.frrctl_json("instance", "repair")
    assert out["failed"] == 0 and all(r["changed"] for r in out["results"])
    assert hostns.frrctl_json("instance", "list")["drift"] == 0
    assert g1.ping("169.254.0.1") and g1.ping("fe80::1%eth0")
    again = hostns.frrctl_json("instance", "repair")
    assert not any(r["changed"] for r in again["results"])
    missing = hostns.frrctl("instance", "repair", "nosuchvm", check=False)
    assert missing.returncode == 1 and "not plugged" in missing.stdout


def test_nft_failure_rolls_back_the_plug(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g1 = hostns.add_guest("g1", MAC1, "192.0.2.31", "2001:db8:100::31")
    before = hostns.snapshot()
    code = """
import sys, ipaddress
from pathlib import Path
from frrctl.errors import FrrctlError
from frrctl.host.instances import Host
from frrctl.host.nft import Nft, PortTable
host = Host(Path(sys.argv[1]), "cloudbr0", nft=Nft("/bin/false"))  # every nft run fails
host.nft.port_table = lambda: PortTable({}, {})
try:
    addrs = (ipaddress.ip_address("192.0.2.31"), ipaddress.ip_address("2001:db8:100::31"))
    host.plug("vm1", "52:54:00:00:00:01", addrs, sys.argv[2])
except FrrctlError as exc:
    print(exc)
"""
    out = hostns.run(sys.executable, "-c", code, str(hostns.state_dir), g1.port).stdout
    assert "nothing changed" in out
    assert hostns.snapshot() == before
    link = json.loads(hostns.run("ip", "-j", "link", "show", g1.port).stdout)[0]
    assert "master" not in link
    assert hostns.frrctl_json("instance", "list")["instances"] == []


def test_guest_configured_from_generated_ip_commands(hostns: HostNs) -> None:
    """The VM namespace runs exactly `frrctl guest-config --format ip`, as the lab does."""
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("gc", MAC1, "192.0.2.33", "2001:db8:100::33", configure=False)
    g.run("ip", "link", "set", "eth0", "address", "52:54:00:00:00:99")  # a random MAC at first
    script = subprocess.run(
        [sys.executable, "-m", "frrctl.cli", "guest-config", "--format", "ip", "--mac", MAC1,
         "--ip", "192.0.2.33", "2001:db8:100::33"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    for line in script.splitlines():
        g.run(*line.split())
    hostns.frrctl("instance", "plug", "vm1", "--mac", MAC1, "--ip", "192.0.2.33",
                  "2001:db8:100::33", "--port", g.port)  # fmt: skip
    assert g.ping("169.254.0.1")
    assert g.ping("fe80::1%eth0", source="2001:db8:100::33")
    drops = hostns.frrctl_json("instance", "list", "--counters")["instances"][0]["drops"]
    assert drops["ip6-src"]["packets"] == 0 and drops["mac"]["packets"] == 0
