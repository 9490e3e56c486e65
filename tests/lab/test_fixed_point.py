"""Every rendered config (example and edge-case fleets), loaded into a real FRR, is a fixed point.

`frr-reload.py --test` must find nothing to change: the file is written the
way FRR prints it back, so a later reload never touches a session.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest

from frrctl.inventory import load_inventory
from frrctl.lab import netns
from frrctl.lab.frrproc import enabled_daemons, prepare_dir, start_frr
from frrctl.render import render_fleet
from tests.conftest import ROOT, needs_lab

pytestmark = [needs_lab, pytest.mark.lab]
EDGE = ROOT / "tests" / "data" / "edge-fleet.yaml"
FLEET = load_inventory(EDGE)
RENDERED = render_fleet(FLEET)
EXAMPLE = load_inventory(ROOT / "examples" / "fleet.yaml")
FLEETS = {"edge": (FLEET, RENDERED), "example": (EXAMPLE, render_fleet(EXAMPLE))}
CASES = [
    (name, host) for name, (_, rendered) in sorted(FLEETS.items()) for host in sorted(rendered)
]


@pytest.mark.parametrize(("fleet_name", "hostname"), CASES)
def test_rendered_config_is_a_fixed_point(fleet_name: str, hostname: str) -> None:
    fleet, rendered = FLEETS[fleet_name]
    files = rendered[hostname]
    tag = secrets.token_hex(3)
    ns, peer = f"fp{tag}-{hostname}", f"fp{tag}-peer"
    workdir = Path(f"/run/frrctl-fp-{tag}")
    try:
        netns.add_namespace(ns)
        netns.add_namespace(peer)
        for uplink in fleet.host(hostname).uplinks:
            netns.veth(ns, uplink.interface, peer, uplink.interface)
            netns.ip(ns, "link", "set", uplink.interface, "up")
        netns.ip(ns, "link", "add", "cloudbr0", "type", "bridge")
        prepare_dir(workdir)
        conf = workdir / "frr.conf"
        conf.write_text(files["frr.conf"])
        start_frr(ns, hostname, workdir, ["zebra", *enabled_daemons(files["daemons"])], conf)
        assert netns.frr_reload_test(ns, hostname, workdir / "vty", conf) == []
        # The check can fail: a change to the running config shows up as a line to undo.
        netns.vtysh(
            ns,
            workdir / "vty",
            "configure terminal",
            "ip prefix-list cloud-pool-v4 seq 999 permit 198.18.9.0/24",
        )
        changes = netns.frr_reload_test(ns, hostname, workdir / "vty", conf)
        assert [c for c in changes if "seq 999 permit 198.18.9.0/24" in c] == changes != []
    finally:
        netns.delete_namespace(ns)
        netns.delete_namespace(peer)
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)


def test_rendered_sysctl_file_applies_to_a_real_bridge(tmp_path: Path) -> None:
    files = RENDERED["v6only"]
    conf = tmp_path / "bridge.conf"
    conf.write_text(files["sysctl.d/90-frrctl-cloudbr0.conf"])
    ns = f"fp{secrets.token_hex(3)}-br"
    try:
        netns.add_namespace(ns)
        netns.ip(ns, "link", "add", "cloudbr0", "type", "bridge")
        result = netns.ns_run(ns, ["sysctl", "-p", str(conf)], check=False)
        assert result.returncode == 0, result.stderr
        assert (
            netns.ns_run(ns, ["sysctl", "-n", "net.ipv4.conf.cloudbr0.arp_ignore"]).stdout == "1\n"
        )
    finally:
        netns.delete_namespace(ns)
