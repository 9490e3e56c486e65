"""Rendering for the grpc-static driver: bgpd redistributes staticd's routes, staticd
runs the gRPC module, and nothing of the first gRPC driver's gate is left."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frrctl.frrcheck import check_config
from frrctl.inventory import load_inventory
from frrctl.render import render_host

EDGE = Path(__file__).resolve().parents[1] / "data" / "edge-fleet.yaml"


def static_host_files() -> dict[str, str]:
    fleet = load_inventory(EDGE)
    host = next(h for h in fleet.hosts if h.mode == "controller" and h.runs_bgp)
    controller = host.controller.model_copy(update={"driver": "grpc-static", "grpc_port": 50077})
    return render_host(fleet, host.model_copy(update={"controller": controller}))


def test_bgpd_redistributes_static_routes_through_the_guard() -> None:
    conf = static_host_files()["frr.conf"]
    bgp = conf.split("router bgp")[1].split("\nexit\n")[0]
    assert "redistribute static route-map static-cloud\n" in bgp
    assert "redistribute static route-map static-cloud-v6\n" in bgp
    assert "redistribute kernel" not in bgp
    assert "frrctl-announce" not in conf and "delay-timer" not in conf
    for version, name in ((4, "static-cloud"), (6, "static-cloud-v6")):
        match = "ip" if version == 4 else "ipv6"
        for seq in (10, 20):
            block = conf.split(f"route-map {name} permit {seq}\n")[1].split("exit\n")[0]
            assert " match interface cloudbr0\n" in block
            assert f" match {match} address prefix-list cloud-pool-v{version}\n" in block
        drain = conf.split(f"route-map {name} permit 10\n")[1].split("exit\n")[0]
        assert " match tag 65534\n set community graceful-shutdown additive\n" in drain


def test_staticd_runs_the_grpc_module_bgpd_does_not() -> None:
    daemons = static_host_files()["daemons"]
    assert 'staticd_options="-A 127.0.0.1 -M grpc:50077"' in daemons
    assert 'bgpd_options="   -A 127.0.0.1"' in daemons


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh")
def test_frr_accepts_it() -> None:
    check_config(static_host_files()["frr.conf"], "static/frr.conf")


def test_grpc_static_on_a_host_with_bgp_and_ospf_is_refused(tmp_path: Path) -> None:
    """zebra would redistribute the static route instead of the kernel route
    that ospfd redistributes: one line naming the key, exit 2, nothing written."""
    import yaml

    raw = yaml.safe_load(EDGE.read_text())
    mixed = next(h for h in raw["hosts"] if h["hostname"] == "mixed")
    mixed["mode"] = "controller"
    mixed["controller"] = {**(mixed.get("controller") or {}), "driver": "grpc-static"}
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "frrctl.cli", "render", "--inventory", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "controller.driver" in result.stderr and "grpc-static" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
