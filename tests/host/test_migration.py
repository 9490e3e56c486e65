"""Live migration as the lab does it: unplug on the source, move the port, plug on the target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.host.conftest import HostNs, configure_guest, needs_root, sh

pytestmark = needs_root

MAC = "52:54:00:00:00:0a"


def _second_host(a: HostNs) -> HostNs:
    b = HostNs(a.prefix, f"{a.prefix}-hvb", a.state_dir.parent / "state-b")
    sh("ip", "netns", "add", b.ns)
    a.extra_ns.append(b.ns)
    return b


def _plug(host: HostNs, port: str) -> dict:
    return host.frrctl_json("instance", "plug", "vm1", "--mac", MAC, "--ip", "192.0.2.40",
                            "2001:db8:100::40", "--port", port)  # fmt: skip


def test_migrate_between_two_hosts(hostns: HostNs) -> None:
    a = hostns
    b = _second_host(a)
    for h in (a, b):
        h.frrctl("host", "setup")
    g = a.add_guest("vm", MAC, "192.0.2.40", "2001:db8:100::40", configure=False)
    configure_guest(g)
    _plug(a, g.port)
    assert g.ping("169.254.0.1") and g.ping("fe80::1%eth0")
    gw_mac = json.loads(g.run("ip", "-j", "neigh", "show", "169.254.0.1").stdout)[0]["lladdr"]

    a.frrctl("instance", "unplug", "vm1")
    assert a.run("ip", "route", "show", "192.0.2.40").stdout.strip() == ""
    a.run("ip", "link", "set", g.port, "netns", b.ns)
    res = _plug(b, g.port)
    assert res["changed"] and res["added"] == ["192.0.2.40/32", "2001:db8:100::40/128"]
    # Same gateway MAC on every host: the guest's neighbour entry stays right.
    assert g.ping("169.254.0.1") and g.ping("fe80::1%eth0", source="2001:db8:100::40")
    after = json.loads(g.run("ip", "-j", "neigh", "show", "169.254.0.1").stdout)[0]["lladdr"]
    assert after == gw_mac == "02:a9:fe:00:00:01"
    assert a.frrctl_json("instance", "list")["instances"] == []
    assert b.frrctl_json("instance", "list")["drift"] == 0


def test_unplug_after_the_port_left(hostns: HostNs) -> None:
    """Moving the port away first, then unplugging on the source, also works."""
    a = hostns
    b = _second_host(a)
    a.frrctl("host", "setup")
    g = a.add_guest("vm", MAC, "192.0.2.40", "2001:db8:100::40")
    _plug(a, g.port)
    a.run("ip", "link", "set", g.port, "netns", b.ns)
    listing = a.frrctl_json("instance", "list")
    assert {"port": g.port, "problem": "port missing"} in listing["instances"][0]["drift"]
    out = a.frrctl_json("instance", "unplug", "vm1")
    assert out["changed"]
    assert "vm_vm1_" not in a.run("nft", "list", "table", "netdev", "frrctl").stdout
    assert a.run("ip", "neigh", "show", "nud", "permanent").stdout.strip() == ""


def test_state_dir_from_environment(hostns: HostNs, tmp_path: Path) -> None:
    hostns.frrctl("host", "setup")
    env_dir = tmp_path / "env-state"
    cmd = ["ip", "netns", "exec", hostns.ns, "env", f"FRRCTL_STATE_DIR={env_dir}",
           sys.executable, "-m", "frrctl.cli", "instance", "plug", "vm1", "--mac", MAC, "--ip",
           "192.0.2.40"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    assert (env_dir / "instances.db").exists()
