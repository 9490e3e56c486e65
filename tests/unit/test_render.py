"""Rendering: golden files, determinism, FRR's own syntax check."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from frrctl.cli import main
from frrctl.frrcheck import check_config
from frrctl.host import GATEWAY4, GATEWAY6
from frrctl.inventory import load_inventory
from frrctl.pools import Pools
from frrctl.render import bgp_section, prefix_list_lines, render_fleet, render_host, static_layout

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASES = {
    "example": ROOT / "examples" / "fleet.yaml",
    "edge": ROOT / "tests" / "data" / "edge-fleet.yaml",
}
UPDATE = os.environ.get("FRRCTL_UPDATE_GOLDEN") == "1"


def golden_files(case: str) -> dict[str, str]:
    base = GOLDEN / case
    return {str(p.relative_to(base)): p.read_text() for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    rendered = {
        f"{host}/{rel}": text
        for host, files in render_fleet(load_inventory(CASES[case])).items()
        for rel, text in files.items()
    }
    if UPDATE:
        shutil.rmtree(GOLDEN / case, ignore_errors=True)
        for rel, text in rendered.items():
            (GOLDEN / case / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / case / rel).write_text(text)
    assert rendered == golden_files(case), "run with FRRCTL_UPDATE_GOLDEN=1 and review the diff"


def test_policy_lines_in_every_config() -> None:
    for path in CASES.values():
        fleet = load_inventory(path)
        for host, files in render_fleet(fleet).items():
            conf = files["frr.conf"]
            h = fleet.host(host)
            static = static_layout(h) is not None  # grpc, and vtysh on an OSPF host
            assert "route-map only-cloud permit 10\n match interface cloudbr0\n" in conf, host
            allowed = {
                "redistribute kernel route-map only-cloud",
                "redistribute kernel route-map only-cloud-v6",
            }
            if static:  # BGP and OSPF redistribute the daemon's staticd routes, nothing else
                allowed = {
                    "redistribute static route-map static-cloud",
                    "redistribute static route-map static-cloud-v6",
                }
            for line in conf.splitlines():
                if "redistribute " in line:
                    assert line.strip() in allowed, host
            # Every route-map entry that lets a route out is tied to the bridge.
            for block in conf.split("\nroute-map ")[1:]:
                head = block.split("\n", 1)[0].split()
                if head[0].startswith(("only-cloud", "static-cloud")) and head[1] == "permit":
                    assert "\n match interface cloudbr0\n" in block, (host, block[:60])
            for uplink in h.uplinks:
                if uplink.bgp:
                    names = uplink.bgp.neighbors or [uplink.interface]
                    for name in names:
                        assert f"neighbor {name} prefix-list cloud-pool-v" in conf
                        assert f"neighbor {name} prefix-list default-only-v" in conf
            if h.mode == "controller" and not static:
                bgp = conf.split("router bgp")[-1].split("exit\n")[0]
                assert "redistribute kernel" not in bgp, host
            # import-check off only where frrctl's vtysh driver owns `network`
            # statements and asked for it; FRR's default everywhere else
            off = h.mode == "controller" and not static and not h.controller.import_check
            assert ("no bgp network import-check" in conf) is (off and h.runs_bgp), host


def test_import_check_follows_the_controller_setting() -> None:
    fleet = load_inventory(CASES["edge"])
    host = next(h for h in fleet.hosts if h.mode == "controller" and h.controller.driver == "vtysh")
    assert "no bgp network import-check" in render_fleet(fleet)[host.hostname]["frr.conf"]
    on = host.model_copy(
        update={"controller": host.controller.model_copy(update={"import_check": True})}
    )
    assert "import-check" not in render_host(fleet, on)["frr.conf"]


def test_prefix_lists_cover_pools_exactly() -> None:
    pools = Pools.parse(["192.0.2.100-192.0.2.120", "203.0.113.7"], [])
    assert prefix_list_lines(pools, 4)[:5] == [
        "ip prefix-list cloud-pool-v4 seq 10 permit 192.0.2.100/30 ge 32",
        "ip prefix-list cloud-pool-v4 seq 20 permit 192.0.2.104/29 ge 32",
        "ip prefix-list cloud-pool-v4 seq 30 permit 192.0.2.112/29 ge 32",
        "ip prefix-list cloud-pool-v4 seq 40 permit 192.0.2.120/32",
        "ip prefix-list cloud-pool-v4 seq 50 permit 203.0.113.7/32",
    ]
    # No IPv6 pool: the list exists and denies everything.
    assert prefix_list_lines(pools, 6)[0] == "ipv6 prefix-list cloud-pool-v6 seq 5 deny any"


def test_render_is_deterministic_and_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["render", "-i", str(CASES["example"]), "-o", str(tmp_path), "--no-check", "--json"]
    assert main(args) == 0
    first = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in first}
    capsys.readouterr()
    assert main(args) == 0
    assert '"changed": true' not in capsys.readouterr().out
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == first
    assert {p: p.stat().st_mtime_ns for p in first} == mtimes


def test_render_one_host_and_unknown_host(tmp_path: Path) -> None:
    assert (
        main(
            [
                "render",
                "-i",
                str(CASES["example"]),
                "-o",
                str(tmp_path),
                "--no-check",
                "--host",
                "hv3",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hv3"]
    assert (
        main(
            [
                "render",
                "-i",
                str(CASES["example"]),
                "-o",
                str(tmp_path / "x"),
                "--no-check",
                "--host",
                "nope",
            ]
        )
        == 2
    )
    assert not (tmp_path / "x").exists()


needs_vtysh = pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh")


@needs_vtysh
@pytest.mark.parametrize("case", sorted(CASES))
def test_vtysh_accepts_every_rendered_config(case: str) -> None:
    for host, files in render_fleet(load_inventory(CASES[case])).items():
        check_config(files["frr.conf"], f"{host}/frr.conf")


@needs_vtysh
def test_vtysh_rejects_a_broken_config() -> None:
    from frrctl.errors import CheckError

    with pytest.raises(CheckError, match=r"hvX/frr\.conf: rejected by vtysh"):
        check_config("router bgp 65000\n neighbor 192.0.2.1 remote-ass 1\n", "hvX/frr.conf")


@needs_vtysh
def test_render_with_check_writes_files(tmp_path: Path) -> None:
    assert main(["render", "-i", str(CASES["edge"]), "-o", str(tmp_path), "--check"]) == 0
    assert (tmp_path / "v6only" / "networkd" / "10-cloudbr0.netdev").is_file()


def test_controller_ospf_hosts_redistribute_static_routes_with_either_driver() -> None:
    """One mechanism for BGP and both OSPFs: every controller host that runs OSPF,
    vtysh or grpc, redistributes the daemon's staticd routes (no admission gate,
    no kernel redistribution); staticd loads the gRPC module only for grpc."""
    fleet = load_inventory(CASES["edge"])
    for name in ("ospfonly", "mixed", "ospfvty"):
        for driver in ("vtysh", "grpc"):
            host = fleet.host(name)
            ctl = host.controller.model_copy(update={"driver": driver})
            files = render_host(fleet, host.model_copy(update={"mode": "controller",
                                                               "controller": ctl}))  # fmt: skip
            conf = files["frr.conf"]
            assert "redistribute kernel" not in conf and "frrctl-" not in conf, (name, driver)
            assert "timers throttle lsa" not in conf, (name, driver)
            ospf = conf.split("\nrouter ospf\n")[1].split("\nexit\n")[0]
            assert " redistribute static route-map static-cloud" in ospf.splitlines()
            if host.runs_bgp:
                assert "  redistribute static route-map static-cloud\n" in conf
                assert "no bgp network import-check" not in conf
            grpc = "-M grpc:" in files["daemons"]
            assert grpc is (driver == "grpc"), (name, driver)


def test_a_vtysh_bgp_only_host_keeps_network_statements() -> None:
    fleet = load_inventory(CASES["edge"])
    conf = render_fleet(fleet)["unnum"]["frr.conf"]
    assert "redistribute" not in conf and "static-cloud" not in conf


def _bgp_families(conf: str) -> dict[str, dict[str, set[str]]]:
    """{family: {neighbor: lines}} of the `router bgp` section of a rendered frr.conf."""
    section = conf.split("\nrouter bgp ", 1)[1].split("\nexit\n", 1)[0]
    out: dict[str, dict[str, set[str]]] = {}
    for block in section.split(" address-family ")[1:]:
        name = block.split()[0]
        for line in block.splitlines()[1:]:
            words = line.split()
            if words[:1] == ["neighbor"]:
                out.setdefault(name, {}).setdefault(words[1], set()).add(" ".join(words[2:]))
    return out


def test_every_session_is_active_only_where_activated_with_both_lists() -> None:
    """FRR activates every neighbour in IPv4 unless told not to: each BGP config
    turns that off and activates each session in its families, next to both lists."""
    for path in CASES.values():
        fleet = load_inventory(path)
        for hostname, files in render_fleet(fleet).items():
            host = fleet.host(hostname)
            bgp = bgp_section(host)
            if bgp is None:
                continue
            conf = files["frr.conf"]
            assert f" bgp router-id {host.router_id}\n no bgp default ipv4-unicast\n" in conf
            assert "no neighbor" not in conf
            expected = {
                f"ipv{v}": {
                    n.name: {
                        "activate",
                        f"prefix-list default-only-v{v} in",
                        f"prefix-list cloud-pool-v{v} out",
                    }
                    for n in bgp.neighbors
                    if v in n.versions
                }
                for v in (4, 6)
                if any(v in n.versions for n in bgp.neighbors)
            }
            assert _bgp_families(conf) == expected, hostname


def test_bridge_files_use_the_fixed_gateways() -> None:
    fleet = load_inventory(CASES["example"])
    files = render_host(fleet, fleet.hosts[0])
    assert f"    address {GATEWAY4}/32\n" in files["ifupdown/cloudbr0"]
    assert f"    address {GATEWAY6}/64\n" in files["ifupdown/cloudbr0"]
    network = files["networkd/10-cloudbr0.network"]
    assert f"Address={GATEWAY4}/32\nAddress={GATEWAY6}/64\n" in network
