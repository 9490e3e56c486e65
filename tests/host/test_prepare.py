"""Host.prepare against the real kernel: the port is guarded, nothing is routed, until plug.

What a live migration's destination does with a guest that arrives paused:
prepare (port settings, fdb, nft guard, record `prepared`), then on resume
the plug of a prepared instance: one netlink batch, no nft process.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.host.conftest import HostNs, needs_root

pytestmark = needs_root

MAC = "52:54:00:00:00:31"
V4, V6 = "192.0.2.31", "2001:db8:100::31"
NAME = f"vm@{MAC}"

_DRIVER = """
import ipaddress, json, sys, time
from pathlib import Path
import frrctl.host.nft as nft
from frrctl.host.instances import Host
calls = []
orig = nft.Nft._proc
nft.Nft._proc = lambda self, argv, script=None: calls.append(argv) or orig(self, argv, script)
state, action, name, mac, port = sys.argv[1:6]
addrs = tuple(ipaddress.ip_address(a) for a in sys.argv[6:])
with Host(Path(state), "cloudbr0") as h:
    t0 = time.perf_counter()
    if action == "prepare":
        res = h.prepare(name, mac, addrs, port)
    elif action == "plug":
        res = h.plug(name, mac, addrs, port)
    elif action == "repair":
        res = h.repair()
    else:
        res = h.unplug(name)
    ms = (time.perf_counter() - t0) * 1e3
    out = res if isinstance(res, list) else res.to_json()
    print(json.dumps({"result": out, "nft_procs": len(calls), "ms": ms}))
"""


def host_call(host: HostNs, action: str, port: str, *addrs: str) -> dict[str, Any]:
    r = host.run(sys.executable, "-c", _DRIVER, str(host.state_dir), action, NAME, MAC, port,
                 *addrs)  # fmt: skip
    return dict(json.loads(r.stdout))


def routes(host: HostNs) -> set[str]:
    out = set()
    for fam in ("-4", "-6"):
        for e in json.loads(host.run("ip", "-j", fam, "route", "show", "dev", "cloudbr0").stdout):
            out.add(e["dst"])
    return out & {V4, V6}


def neighbours(host: HostNs) -> set[str]:
    out = set()
    for fam in ("-4", "-6"):
        r = host.run("ip", "-j", fam, "neigh", "show", "dev", "cloudbr0", "nud", "permanent")
        out |= {e["dst"] for e in json.loads(r.stdout)}
    return out & {V4, V6}


def chains(host: HostNs) -> str:
    return host.run("nft", "list", "chains", "netdev", check=False).stdout


def record(host: HostNs) -> dict[str, Any]:
    data = host.frrctl_json("instance", "list")
    return {i["name"]: i for i in data["instances"]}


def test_prepare_guards_the_port_and_routes_nothing_until_plug(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("p", MAC, V4, V6)
    prep = host_call(hostns, "prepare", g.port, V4, V6)
    assert prep["result"]["changed"] and prep["result"]["added"] == []
    assert routes(hostns) == set() and neighbours(hostns) == set()  # nothing announced
    link = json.loads(hostns.run("ip", "-j", "-d", "link", "show", g.port).stdout)[0]
    assert link["master"] == "cloudbr0" and "UP" in link["flags"]
    assert f'device "{g.port}"' in chains(hostns)  # guarded already
    rec = record(hostns)[NAME]
    assert rec["state"] == "prepared" and rec["ok"], rec  # a prepared instance is no drift
    # preparing again with the same data changes nothing (one `nft list chain`)
    again = host_call(hostns, "prepare", g.port, V4, V6)
    assert not again["result"]["changed"] and again["nft_procs"] == 1
    # repair (e.g. after a reboot) keeps it prepared: still nothing routed
    host_call(hostns, "repair", g.port)
    assert routes(hostns) == set() and record(hostns)[NAME]["state"] == "prepared"

    plug = host_call(hostns, "plug", g.port, V4, V6)
    assert plug["result"]["changed"] and sorted(plug["result"]["added"]) == sorted(
        [f"{V4}/32", f"{V6}/128"]
    )
    assert plug["nft_procs"] == 0  # the guard was prepared: one netlink batch
    assert routes(hostns) == {V4, V6} and neighbours(hostns) == {V4, V6}
    rec = record(hostns)[NAME]
    assert rec["state"] == "plugged" and rec["ok"], rec
    assert g.ping("169.254.0.1")  # the guest reaches its gateway through the guarded port
    # a re-plug of what is right: one nft process (was two: list chains, list chain)
    same = host_call(hostns, "plug", g.port, V4, V6)
    assert not same["result"]["changed"] and same["nft_procs"] == 1


def test_prepared_then_unplugged_leaves_nothing(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    before = hostns.snapshot()
    g = hostns.add_guest("q", MAC, V4, V6)
    host_call(hostns, "prepare", g.port, V4, V6)
    assert f'device "{g.port}"' in chains(hostns)
    out = host_call(hostns, "unplug", g.port)
    assert out["result"]["changed"]
    assert NAME not in record(hostns)
    after = hostns.snapshot()
    assert "chain" not in after.pop("nft")  # frrctl's table stays, as after any unplug
    before.pop("nft")
    assert after == before  # no route, no neighbour
    link = json.loads(hostns.run("ip", "-j", "-d", "link", "show", g.port).stdout)[0]
    assert "master" not in link  # released from the bridge


def test_plugged_instance_prepared_again_is_withdrawn(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("r", MAC, V4, V6)
    host_call(hostns, "plug", g.port, V4, V6)
    assert routes(hostns) == {V4, V6}
    prep = host_call(hostns, "prepare", g.port, V4)  # and one address less
    assert sorted(prep["result"]["removed"]) == sorted([f"{V4}/32", f"{V6}/128"])
    assert routes(hostns) == set() and neighbours(hostns) == set()
    assert record(hostns)[NAME]["addresses"] == [V4]
    assert f'device "{g.port}"' in chains(hostns)


def test_unplug_after_the_guard_was_removed_by_hand(hostns: HostNs) -> None:
    """Unplug deletes the recorded chain with one nft process; gone already, it still ends."""
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("s", MAC, V4, V6)
    host_call(hostns, "plug", g.port, V4, V6)
    out = host_call(hostns, "unplug", g.port)
    assert out["nft_procs"] == 1 and not chains(hostns).count(f'device "{g.port}"')
    host_call(hostns, "plug", g.port, V4, V6)
    chain = next(line.split()[1] for line in chains(hostns).splitlines()
                 if line.strip().startswith("chain vm_"))  # fmt: skip
    hostns.run("nft", "delete", "chain", "netdev", "frrctl", chain)
    out = host_call(hostns, "unplug", g.port)
    assert out["result"]["changed"] and NAME not in record(hostns)
    assert routes(hostns) == set() and neighbours(hostns) == set()
