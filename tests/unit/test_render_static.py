"""Rendering for the staticd (gRPC) driver: bgpd, ospfd and ospf6d all redistribute
staticd's routes through the same guard route-maps, staticd runs the gRPC module,
and nothing of the first gRPC driver's gate nor of the OSPF admission gate is left."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from frrctl.frrcheck import check_config
from frrctl.inventory import load_inventory
from frrctl.render import render_host
from tests.conftest import ROOT

EDGE = ROOT / "tests" / "data" / "edge-fleet.yaml"
STATICD = "grpc"


def static_host_files(hostname: str = "mixed") -> dict[str, str]:
    fleet = load_inventory(EDGE)
    host = fleet.host(hostname)
    controller = host.controller.model_copy(update={"driver": STATICD, "grpc_port": 50077})
    update = {"mode": "controller", "controller": controller}
    return render_host(fleet, host.model_copy(update=update))


def section(conf: str, head: str) -> str:
    return conf.split(f"\n{head}\n")[1].split("\nexit\n")[0]


def test_bgpd_redistributes_static_routes_through_the_guard() -> None:
    conf = static_host_files()["frr.conf"]
    bgp = conf.split("router bgp")[1].split("\nexit\n")[0]
    assert "redistribute static route-map static-cloud\n" in bgp
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


def test_ospf_redistributes_the_same_static_routes_with_no_admission_gate() -> None:
    """One mechanism for BGP and OSPF: on a host with both, ospfd redistributes
    staticd's routes too (a kernel route loses to them in zebra, so
    `redistribute kernel` would lose it), and no admission gate is rendered:
    a route the daemon refuses never is a static route."""
    conf = static_host_files("mixed")["frr.conf"]
    ospf = section(conf, "router ospf")
    assert " redistribute static route-map static-cloud" in ospf.splitlines()
    assert "redistribute kernel" not in conf
    assert "frrctl-admit" not in conf and "frrctl-block" not in conf
    assert "timers throttle lsa" not in conf


def test_an_ospf_only_host_gets_both_ospfs_and_no_bgp_only_lines() -> None:
    files = static_host_files("ospfonly")
    conf = files["frr.conf"]
    assert " redistribute static route-map static-cloud\n" in section(conf, "router ospf") + "\n"
    ospf6 = section(conf, "router ospf6")
    assert " redistribute static route-map static-cloud-v6" in ospf6.splitlines()
    # no bgpd: no GRACEFUL_SHUTDOWN entry (OSPF keeps announcing a drained route)
    assert "graceful-shutdown" not in conf and "route-map static-cloud permit 10" not in conf
    assert "route-map static-cloud permit 20\n" in conf
    assert "route-map static-cloud-v6 permit 20\n" in conf
    assert 'staticd_options="-A 127.0.0.1 -M grpc:50077"' in files["daemons"]


def test_vtysh_on_an_ospf_host_is_staticd_too_without_the_grpc_module() -> None:
    fleet = load_inventory(EDGE)
    host = fleet.host("ospfonly")
    ctl = host.controller.model_copy(update={"driver": "vtysh"})
    conf = render_host(fleet, host.model_copy(update={"mode": "controller", "controller": ctl}))
    text = conf["frr.conf"]
    assert " redistribute static route-map static-cloud\n" in text
    assert "redistribute kernel" not in text and "frrctl-admit" not in text
    assert 'staticd_options="-A 127.0.0.1"' in conf["daemons"]


def test_staticd_runs_the_grpc_module_bgpd_does_not() -> None:
    daemons = static_host_files()["daemons"]
    assert 'staticd_options="-A 127.0.0.1 -M grpc:50077"' in daemons
    assert 'bgpd_options="   -A 127.0.0.1"' in daemons


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh")
@pytest.mark.parametrize("hostname", ["mixed", "ospfonly", "v6only", "unnum"])
def test_frr_accepts_it(hostname: str) -> None:
    check_config(static_host_files(hostname)["frr.conf"], f"static/{hostname}/frr.conf")


def test_the_old_name_grpc_static_is_one_line_naming_grpc(tmp_path: Path) -> None:
    raw = yaml.safe_load(EDGE.read_text())
    mixed = next(h for h in raw["hosts"] if h["hostname"] == "mixed")
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
    assert len(result.stderr.strip().splitlines()) == 1
    assert "controller.driver" in result.stderr and "`driver: grpc`" in result.stderr
    assert not out.exists()
