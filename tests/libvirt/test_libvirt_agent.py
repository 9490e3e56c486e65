"""The agent against a real libvirtd and real QEMU guests (TCG), one hypervisor namespace.

Each test starts its own domains (unique name, MAC, tap and addresses) on the
module's libvirtd + agent and checks what the kernel of the hypervisor
namespace holds: host routes and permanent neighbours on cloudbr0, the port
guard, the record, and pings from the host namespace to the guest.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.libvirt.lvharness import LvHost, meta_for, wait_for

pytestmark = pytest.mark.slow


def mac(n: int) -> str:
    return f"52:54:00:4c:56:{n:02x}"


def addrs(n: int) -> list[str]:
    return [f"192.0.2.{100 + n}", f"2001:db8:100::{100 + n:x}"]


def plugged(host: LvHost, n: int) -> bool:
    return set(addrs(n)) <= host.routes()


def gone(host: LvHost, n: int) -> bool:
    return not (set(addrs(n)) & host.routes())


def events(host: LvHost, domain: str, msg: str) -> list[dict[str, Any]]:
    return [e for e in host.log() if e.get("msg") == msg and domain in str(e)]


def test_start_plugs_guest_answers_then_shutdown_unplugs(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("start", mac(1), addrs(1))
    name = dom.name()
    wait_for(lambda: plugged(h, 1), 15, "host routes after start")
    inst = h.record()[f"{name}@{mac(1)}"]
    assert inst["port"] == h.tap("start") and inst["mac"] == mac(1)
    assert inst["ok"], inst["drift"]  # routes, neighbours, port guard all there
    neigh = h.neighbours()
    assert all(neigh.get(a) == mac(1) for a in addrs(1))
    boot = h.wait_booted(name)
    print(f"guest boot {boot:.1f} s after the plug")
    for a in addrs(1):
        assert h.ping(a), f"guest does not answer on {a}"
    st = h.status()
    assert st["running"] and st["connected"]
    assert st["domains"][name]["instances"] == [f"{name}@{mac(1)}"]
    assert st["domains"][name]["problem"] is None

    dom.shutdown()  # ACPI power button: the guest powers itself off
    wait_for(lambda: gone(h, 1), 20, "routes gone after shutdown")
    assert f"{name}@{mac(1)}" not in h.record()
    assert not (set(addrs(1)) & set(h.neighbours()))
    stopped = wait_for(
        lambda: [e for e in events(h, name, "event") if e["event"] == "STOPPED"], 10, "STOPPED"
    )
    assert stopped[-1]["detail"] == "SHUTDOWN"


def test_crash_unplugs_bridge_interface(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("crash", mac(2), addrs(2), bridge=True)  # libvirt puts the tap on cloudbr0
    name = dom.name()
    wait_for(lambda: plugged(h, 2), 15, "plug")
    inst = h.record()[f"{name}@{mac(2)}"]
    assert inst["port"] == h.tap("crash") and inst["ok"], inst["drift"]
    assert h.wait_booted(name) and h.ping(addrs(2)[0]) and h.ping(addrs(2)[1])
    os.kill(h.qemu_pid(name), signal.SIGKILL)  # the QEMU process dies under libvirtd
    wait_for(lambda: gone(h, 2), 15, "unplug after QEMU was killed")
    assert f"{name}@{mac(2)}" not in h.record()
    stopped = wait_for(
        lambda: [e for e in events(h, name, "event") if e["event"] == "STOPPED"], 10, "STOPPED"
    )
    assert stopped[-1]["detail"] in ("FAILED", "CRASHED")


def test_destroy_unplugs_and_port_guard_goes(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("destroy", mac(3), addrs(3))
    name = dom.name()
    wait_for(lambda: plugged(h, 3), 15, "plug")
    nft = h.run("nft", "list", "table", "netdev", "frrctl").stdout
    assert h.tap("destroy") in nft
    # a pause by a user is not a move: the guest goes on here, the routes stay
    dom.suspend()
    wait_for(lambda: [e for e in events(h, name, "event") if e["event"] == "SUSPENDED"], 10,
             "SUSPENDED")  # fmt: skip
    dom.resume()
    wait_for(lambda: [e for e in events(h, name, "event") if e["detail"] == "UNPAUSED"][1:], 10,
             "RESUMED")  # fmt: skip
    assert plugged(h, 3) and not events(h, name, "unplugged")
    dom.destroy()
    wait_for(lambda: gone(h, 3), 15, "unplug after destroy")
    wait_for(
        lambda: h.tap("destroy") not in h.run("nft", "list", "table", "netdev", "frrctl").stdout,
        5, "the port guard removed",
    )  # fmt: skip
    assert f"{name}@{mac(3)}" not in h.record()
    assert [e for e in events(h, name, "event") if e["event"] == "STOPPED"][-1]["detail"] == (
        "DESTROYED"
    )


def test_domain_without_metadata_is_left_alone(lvhost: LvHost) -> None:
    h = lvhost
    before = h.routes()
    dom = h.start("plain", mac(4), addrs(4), meta=None)
    try:
        wait_for(lambda: dom.name() in h.status().get("unowned_domains", []), 10, "status")
        assert h.routes() == before
        assert not [n for n in h.record() if n.startswith(dom.name())]
        link = h.run("ip", "-j", "link", "show", h.tap("plain")).stdout
        assert '"master"' not in link  # the agent did not even attach its tap
    finally:
        dom.destroy()


def test_bad_metadata_plugs_nothing_and_says_why(lvhost: LvHost) -> None:
    h = lvhost
    bad = meta_for((mac(5), addrs(5))).replace(addrs(5)[0], "192.0.2.999")
    dom = h.start("bad", mac(5), addrs(5), meta=bad)
    name = dom.name()
    held = h.start("holder", mac(6), addrs(6))
    try:
        wait_for(lambda: (h.status()["domains"].get(name) or {}).get("problem"), 10, "problem")
        problem = h.status()["domains"][name]["problem"]
        assert "'192.0.2.999' is not an IPv4 or IPv6 address" in problem
        assert [e for e in h.log() if e.get("msg") == "not plugged" and e["domain"] == name]
        wait_for(lambda: plugged(h, 6), 15, "holder plugged")
        assert gone(h, 5)

        # an address another domain already holds: refused, the holder keeps it
        h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(5),
                 "--ip", addrs(5)[1], addrs(6)[0])  # fmt: skip
        wait_for(
            lambda: "already held by domain" in (h.status()["domains"][name]["problem"] or ""),
            10, "conflict problem",
        )  # fmt: skip
        assert gone(h, 5) and plugged(h, 6)
        out = h.frrctl("libvirt", "status", "--state-dir", str(h.state_dir)).stdout
        assert f"NOT PLUGGED: {addrs(6)[0]} is already held by domain {held.name()}" in out

        # fixed metadata: plugged now
        h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(5),
                 "--ip", *addrs(5))  # fmt: skip
        wait_for(lambda: plugged(h, 5), 10, "plug after the metadata was fixed")
        assert h.status()["domains"][name]["problem"] is None
    finally:
        dom.destroy()
        held.destroy()
    wait_for(lambda: gone(h, 5) and gone(h, 6), 10, "unplug")


def test_bad_input_to_set_metadata_is_one_line_exit_2(lvhost: LvHost) -> None:
    r = lvhost.frrctl("libvirt", "set-metadata", "nodom", "--uri", lvhost.sandbox.uri, "--mac",
                      mac(7), "--ip", "192.0.2.0/24", check=False)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a host address" in r.stderr
    r = lvhost.frrctl("libvirt", "set-metadata", "nodom", "--uri", lvhost.sandbox.uri, "--mac",
                      mac(7), "--ip", "192.0.2.7", check=False)  # fmt: skip
    assert r.returncode == 1 and "no domain 'nodom'" in r.stderr


def test_metadata_change_while_running(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("meta", mac(8), addrs(8)[:1], persistent=True)
    name = dom.name()
    try:
        wait_for(lambda: addrs(8)[0] in h.routes(), 15, "plug")
        r = h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(8),
                     "--ip", *addrs(8))  # fmt: skip
        assert "unchanged" not in r.stdout
        wait_for(lambda: plugged(h, 8), 10, "the new address plugged")
        assert h.record()[f"{name}@{mac(8)}"]["addresses"] == addrs(8)
        again = h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac",
                         mac(8), "--ip", *addrs(8)).stdout  # fmt: skip
        assert "unchanged" in again  # idempotent, live and persistent
        assert f'address="{addrs(8)[1]}"' in dom.XMLDesc(2)  # VIR_DOMAIN_XML_INACTIVE
        h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(8),
                 "--ip", addrs(8)[1])  # fmt: skip
        wait_for(lambda: addrs(8)[0] not in h.routes(), 10, "the dropped address unplugged")
        assert addrs(8)[1] in h.routes()
        h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(8),
                 "--remove")  # fmt: skip
        wait_for(lambda: gone(h, 8), 10, "unplug after the metadata was removed")
        # written with virsh, as the README shows an operator
        h.sandbox.virsh("metadata", name, "urn:frrctl:libvirt:1", "--key", "frrctl", "--set",
                        f'<instance><interface mac="{mac(8)}"><ip address="{addrs(8)[0]}"/>'
                        "</interface></instance>", "--live", "--config")  # fmt: skip
        wait_for(lambda: addrs(8)[0] in h.routes(), 10, "plug after virsh metadata --set")
    finally:
        dom.destroy()
        dom.undefine()


def test_interface_hotplug_and_unplug(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("hot", mac(9), addrs(9))
    name = dom.name()
    tap2 = h.tap("hot2")
    try:
        wait_for(lambda: plugged(h, 9), 15, "plug")
        h.frrctl("libvirt", "set-metadata", name, "--uri", h.sandbox.uri, "--mac", mac(10),
                 "--ip", *addrs(10))  # fmt: skip
        wait_for(lambda: h.status()["domains"][name]["waiting"] == [mac(10)], 10, "waiting")
        assert gone(h, 10)
        iface = (
            f"<interface type='ethernet'><mac address='{mac(10)}'/>"
            f"<target dev='{tap2}' managed='yes'/><model type='virtio'/></interface>"
        )
        h.wait_booted(name)  # the guest must be up to take a PCI hot-plug
        dom.attachDeviceFlags(iface, 1)  # VIR_DOMAIN_AFFECT_LIVE
        wait_for(lambda: plugged(h, 10), 15, "the hot-plugged NIC plugged")
        assert h.record()[f"{name}@{mac(10)}"]["port"] == tap2
        assert [e for e in events(h, name, "event") if e["event"] == "DEVICE_ADDED"]
        assert plugged(h, 9)
        dom.detachDeviceFlags(iface, 1)
        wait_for(lambda: gone(h, 10), 30, "unplug after the NIC was removed")
        assert plugged(h, 9)
    finally:
        dom.destroy()


def test_agent_restart_reconciles(lvhost: LvHost) -> None:
    h = lvhost
    keep = h.start("keep", mac(11), addrs(11))
    stop = h.start("stop", mac(12), addrs(12))
    drift = h.start("drift", mac(17), addrs(17))
    late = None
    try:
        wait_for(lambda: plugged(h, 11) and plugged(h, 12) and plugged(h, 17), 15, "plug")
        # a hand-plugged instance (not the agent's) on the same host
        h.frrctl("instance", "plug", "by-hand", "--mac", mac(13), "--ip", addrs(13)[0],
                 "--state-dir", str(h.state_dir))  # fmt: skip
        plugged_at = h.record()[f"{keep.name()}@{mac(11)}"]
        h.stop_agent()
        stop.destroy()  # while the agent is down: its routes stay stale
        h.run("ip", "route", "del", f"{addrs(17)[0]}/32", "dev", "cloudbr0")  # drift
        late = h.start("late", mac(14), addrs(14))  # and one starts unseen
        time.sleep(0.5)
        assert plugged(h, 12) and gone(h, 14)
        h.start_agent()
        wait_for(lambda: gone(h, 12) and plugged(h, 14) and plugged(h, 17), 15,
                 "reconcile after restart")  # fmt: skip
        repaired = [e for e in h.log() if e.get("msg") == "plugged" and drift.name() in str(e)]
        assert repaired and repaired[0]["repaired"]
        assert plugged(h, 11) and addrs(13)[0] in h.routes()  # valid and foreign: untouched
        rec = h.record()
        assert rec[f"{keep.name()}@{mac(11)}"] == plugged_at
        assert "by-hand" in rec
        log = h.log()
        assert not [e for e in log if e.get("msg") == "unplugged" and keep.name() in str(e)]
        assert not [e for e in log if e.get("msg") == "plugged" and keep.name() in str(e)]
    finally:
        for d in (keep, stop, drift, late):
            with contextlib.suppress(Exception):
                d.destroy()
        h.frrctl("instance", "unplug", "by-hand", "--state-dir", str(h.state_dir), check=False)


def test_libvirtd_restart_agent_reconnects(lvhost: LvHost) -> None:
    h = lvhost
    dom = h.start("lvrst", mac(15), addrs(15))
    name = dom.name()
    wait_for(lambda: plugged(h, 15), 15, "plug")
    connects = len([e for e in h.log() if e["msg"] == "connected"])
    h._conn = None
    h.sandbox.restart()  # the guest runs on; the new libvirtd re-attaches to its QEMU
    wait_for(lambda: len([e for e in h.log() if e["msg"] == "connected"]) > connects, 20,
             "the agent reconnected")  # fmt: skip
    assert plugged(h, 15)  # still running: never withdrawn
    assert not [e for e in h.log() if e.get("msg") == "unplugged" and name in str(e)]
    h.conn.lookupByName(name).destroy()
    wait_for(lambda: gone(h, 15), 15, "unplug through the new connection")


def test_inventory_pools_refuse_outside_addresses(lvhost: LvHost) -> None:
    h = lvhost
    h.stop_agent()
    r = h.frrctl("libvirt", "status", "--state-dir", str(h.state_dir), check=False)
    assert r.returncode == 1 and r.stdout.startswith("agent NOT running")
    # examples/fleet.yaml, host hv1: 192.0.2.0/26, 192.0.2.100-120, 2001:db8:100::/64, ...
    h.start_agent("--inventory", str(ROOT / "examples" / "fleet.yaml"), "--host", "hv1")
    inside = h.start("inpool", mac(18), addrs(18))
    outside = h.start("outpool", mac(19), ["192.0.2.200", addrs(19)[1]])
    try:
        wait_for(lambda: plugged(h, 18), 15, "the in-pool domain plugged")
        problem = wait_for(
            lambda: (h.status()["domains"].get(outside.name()) or {}).get("problem"), 10, "problem"
        )
        assert problem == f"192.0.2.200 (interface {mac(19)}) is outside this host's pools"
        assert not {"192.0.2.200", addrs(19)[1]} & h.routes()
    finally:
        inside.destroy()
        outside.destroy()
    wait_for(lambda: gone(h, 18), 10, "unplug")
