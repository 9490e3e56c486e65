"""Every rendered config (example and edge-case fleets), loaded into a real FRR, is a fixed point.

`frr-reload.py --test` must find nothing to change: the file is written the
way FRR prints it back, so a later reload never touches a session.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from frrctl.inventory import load_inventory
from frrctl.lab import netns
from frrctl.render import render_fleet
from tests.conftest import ROOT, needs_lab
from tests.frr.rendered_host import running_host

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
    with running_host(fleet, hostname, rendered[hostname]) as (ns, vty):
        conf = vty.parent / "frr.conf"
        assert netns.frr_reload_test(ns, hostname, vty, conf) == []
        # The check can fail: a change to the running config shows up as a line to undo.
        netns.vtysh(
            ns, vty, "configure terminal",
            "ip prefix-list cloud-pool-v4 seq 999 permit 198.18.9.0/24",
        )  # fmt: skip
        changes = netns.frr_reload_test(ns, hostname, vty, conf)
        assert [c for c in changes if "seq 999 permit 198.18.9.0/24" in c] == changes != []


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
