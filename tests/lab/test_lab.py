"""The example fleet in namespaces with real FRR and a real ExaBGP peer.

One lab serves the module (building it takes ~25 s). The guard tests add
routes that must never be announced next to one that must, wait for the good
one at the ExaBGP peer, and only then check that the bad ones never came: no
timing assumption, the good route is the proof that the policy has run.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from frrctl.lab import netns, runner, state
from frrctl.lab.verify import collect, exabgp_prefixes, static_config_changes
from frrctl.render import static_layout
from tests.conftest import ROOT, needs_lab

pytestmark = [needs_lab, pytest.mark.lab, pytest.mark.slow]
EXAMPLE = ROOT / "examples" / "fleet.yaml"


def _grpc_skip() -> str | None:
    from frrctl.lab.controller import grpc_install

    return None if grpc_install() else "no gRPC-enabled FRR (lab/build-frr-grpc.sh)"


MODES = [
    pytest.param(None, id="redistribute"),
    pytest.param("vtysh", id="daemon-vtysh"),
    pytest.param(
        "grpc",
        id="daemon-grpc",
        marks=pytest.mark.skipif(bool(_grpc_skip()), reason=_grpc_skip() or ""),
    ),
]


@pytest.fixture(scope="module", params=MODES)
def lab(request: pytest.FixtureRequest) -> Iterator[runner.Lab]:
    """The example fleet: FRR redistributes (mode redistribute), or every host runs
    `frrctl daemon` with the vtysh or the gRPC driver (mode controller)."""
    # Not under pytest's tmp_path: FRR runs as user frr and must reach its files.
    state_dir = Path(f"/run/frrctl-lab-test-{secrets.token_hex(3)}")
    try:
        yield runner.up(EXAMPLE, state_dir, wait=90, driver=request.param)
    finally:
        runner.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def held(lab: runner.Lab) -> set[str]:
    return exabgp_prefixes(lab.record.read_text().splitlines())


def wait_for(predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())


def frrctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frrctl.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_verify_is_exact_over_bgp_ospf_and_ospf6(lab: runner.Lab) -> None:
    result = frrctl("lab", "--state-dir", str(lab.state_dir), "verify", "--json")
    report = json.loads(result.stdout)
    failing = [c for c in report["checks"] if not c["ok"]]
    assert result.returncode == 0 and report["ok"], failing
    names = {c["name"] for c in report["checks"]}
    assert {
        "exabgp peer: prefixes held",
        "upstream: OSPFv2 external routes",
        "upstream: OSPFv3 external routes",
    } <= names
    assert sum(n.startswith("ping ") for n in names) == 11  # every VM address, v4 and v6
    assert {"ping vm7 192.0.2.17", "ping vm7 2001:db8:100::17"} <= names  # the QEMU guest
    # every BFD session the inventory asks for: BGP (hv1) and OSPFv2/OSPFv3 (hv3)
    assert {"hv1: BFD sessions up", "hv3: BFD sessions up"} <= names
    exa = next(c for c in report["checks"] if c["name"] == "exabgp peer: prefixes held")
    assert set(exa["got"]) == lab.plan.vm_addresses()


def _bfd_check(lab: runner.Lab, hostname: str):  # type: ignore[no-untyped-def]
    checks = collect(lab, pings=False, reload_test=False).checks
    return next(c for c in checks if c.name == f"{hostname}: BFD sessions up")


def test_verify_fails_while_an_ospf_bfd_session_is_down(lab: runner.Lab) -> None:
    """The upstream stops BFD on hv3's OSPF link: verify names the session, then recovers."""
    if lab.plan.fleet.host("hv3").mode == "controller":
        pytest.skip("BFD is the same in every mode: checked once, in redistribute mode")
    iface = lab.plan.links_of("hv3")[0].upstream_iface
    up, vty = lab.plan.upstream_ns, lab.vty("upstream")
    netns.vtysh(up, vty, "configure terminal", f"interface {iface}", "no ip ospf bfd")
    try:
        assert wait_for(lambda: not _bfd_check(lab, "hv3").ok, 20)
        assert _bfd_check(lab, "hv3").missing == ["eth0 ipv4"]
    finally:
        netns.vtysh(up, vty, "configure terminal", f"interface {iface}", "ip ospf bfd")
    assert wait_for(lambda: _bfd_check(lab, "hv3").ok, 30)
    # a BFD down takes OSPF's adjacency with it: the lab is whole again before the next test
    assert wait_for(lambda: collect(lab, reload_test=False).ok, 60)


def test_rendered_configs_are_a_fixed_point_of_frr(lab: runner.Lab) -> None:
    for host in lab.plan.fleet.hosts:
        workdir = lab.nsdir(host.hostname)
        changes = netns.frr_reload_test(
            lab.plan.host_ns(host.hostname),
            host.hostname,
            workdir / "vty",
            workdir / "etc" / "frr.conf",
        )
        # In controller mode the daemon's own `network` statements or staticd routes are
        # live state on top of the file; nothing else may differ.
        static = static_config_changes(changes, host.mode == "controller")
        assert static == [], (host.hostname, changes)


# (host, interface) -> routes that must never be announced, and one that must.
GUARDS = {
    "hv1": {
        "bad": [
            ("192.0.2.200/32", "cloudbr0"),  # outside the pools
            ("203.0.113.0/24", "cloudbr0"),  # not a host route
            ("192.0.2.11/32", "eth0"),  # inside the pools, wrong interface
            ("2001:db8:999::1/128", "cloudbr0"),
            ("2001:db8:100::/64", "cloudbr0"),
            ("2001:db8:100::99/128", "eth0"),
        ],
        "good": [("192.0.2.12/32", "cloudbr0"), ("2001:db8:100::12/128", "cloudbr0")],
    },
    "hv3": {  # OSPFv2/OSPFv3 host
        "bad": [
            ("192.0.2.201/32", "cloudbr0"),
            ("198.51.100.0/24", "cloudbr0"),
            ("192.0.2.13/32", "eth0"),
            ("2001:db8:998::1/128", "cloudbr0"),
            ("2001:db8:100::98/128", "eth0"),
        ],
        "good": [("192.0.2.14/32", "cloudbr0"), ("2001:db8:100::14/128", "cloudbr0")],
    },
}


def _routes(lab: runner.Lab, action: str) -> None:
    for host, sets in GUARDS.items():
        # staticd hosts (grpc; vtysh on an OSPF host): at the metric `frrctl instance
        # plug` sets (a metric-0 route outranks the static route; the policy refuses it)
        static = static_layout(lab.plan.fleet.host(host)) is not None
        tail = " metric 33554432" if static else ""
        lines = [f"route {action} {p} dev {dev}{tail}" for p, dev in sets["bad"] + sets["good"]]
        result = subprocess.run(
            ["ip", "-n", lab.plan.host_ns(host), "-batch", "-"],
            input="\n".join(lines) + "\n",
            text=True,
            capture_output=True,
        )
        assert result.returncode == 0 or action == "del", result.stderr


def test_guards_never_announce_what_policy_refuses(lab: runner.Lab) -> None:
    good = {p for sets in GUARDS.values() for p, _ in sets["good"]}
    bad = {p for sets in GUARDS.values() for p, _ in sets["bad"]}
    try:
        _routes(lab, "add")
        assert wait_for(lambda: good <= held(lab)), "the control routes never arrived"
        # The good routes went through the same policy run: the bad ones had their chance.
        assert not bad & held(lab)
        ospf = netns.vtysh(
            lab.plan.upstream_ns,
            lab.vty("upstream"),
            "show ip ospf route json",
            "show ipv6 ospf6 route json",
        )
        assert not any(f'"{p}"' in ospf for p in bad)
        upstream_bgp = netns.vtysh(
            lab.plan.upstream_ns,
            lab.vty("upstream"),
            "show bgp ipv4 unicast json",
            "show bgp ipv6 unicast json",
        )
        assert not any(f'"{p}"' in upstream_bgp for p in bad)
    finally:
        _routes(lab, "del")
    assert wait_for(lambda: not good & held(lab)), "the control routes were not withdrawn"
    assert held(lab) == lab.plan.vm_addresses()


def test_upstream_extras_and_other_hosts_routes_never_reach_a_host(lab: runner.Lab) -> None:
    up_ns, vty = lab.plan.upstream_ns, lab.vty("upstream")
    sent = json.loads(
        netns.vtysh(up_ns, vty, "show bgp ipv4 unicast neighbors 198.18.0.1 advertised-routes json")
    )
    advertised = set(sent.get("advertisedRoutes", {}))
    # The upstream really offers hv1 more than a default: its extras, other hosts' VMs.
    assert {"198.18.200.0/24", "192.0.2.20/32"} <= advertised
    hv1_bgp = json.loads(
        netns.vtysh(lab.plan.host_ns("hv1"), lab.vty("hv1"), "show bgp ipv4 unicast json")
    )
    own = {a for a in lab.plan.vm_addresses({"hv1"}) if ":" not in a}  # vm1, vm2, vm7 (QEMU)
    assert own == {"192.0.2.10/32", "192.0.2.100/32", "192.0.2.17/32"}
    assert set(hv1_bgp.get("routes", {})) - own == {"0.0.0.0/0"}
    report = collect(lab, pings=False, reload_test=False)
    for check in report.checks:
        if check.name.endswith("learned kernel routes"):
            assert check.ok, check


def drops(lab: runner.Lab, host: str, vm: str) -> dict[str, int]:
    out = runner.frrctl(
        lab.plan.host_ns(host),
        "instance",
        "list",
        "--counters",
        "--json",
        "--state-dir",
        str(lab.host_state(host)),
    )
    instance = next(i for i in json.loads(out)["instances"] if i["name"] == vm)
    return {rule: c["packets"] for rule, c in instance["drops"].items()}


def vm_ping(lab: runner.Lab, vm: str, target: str, source: str | None = None) -> bool:
    cmd = [
        "ip",
        "netns",
        "exec",
        lab.plan.vm(vm).namespace,
        "ping",
        "-n",
        "-q",
        "-c",
        "2",
        "-i",
        "0.2",
        "-W",
        "1",
        *(["-I", source] if source else []),
        target,
    ]
    return subprocess.run(cmd, capture_output=True).returncode == 0


# An ARP reply from vm2 claiming vm1's address (sent on the VM's own link).
FORGED_ARP = """
import socket, struct, sys
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
claim = socket.inet_aton(sys.argv[2])
gateway = socket.inet_aton("169.254.0.1")
frame = (b"\\xff" * 6 + mac + struct.pack("!H", 0x0806)
         + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + mac + claim + b"\\xff" * 6 + gateway)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(3):
    s.send(frame)
"""


def test_spoofing_vm_reaches_nothing_while_legit_traffic_flows(lab: runner.Lab) -> None:
    vm2 = lab.plan.vm("vm2")  # 192.0.2.100 on hv1
    loopback = lab.plan.fleet.lab.upstream.loopback4
    assert vm_ping(lab, "vm2", loopback)
    before = drops(lab, vm2.host, "vm2")
    netns.ip(vm2.namespace, "address", "add", "192.0.2.55/32", "dev", "eth0")
    try:
        assert not vm_ping(lab, "vm2", loopback, source="192.0.2.55")  # forged source IP
    finally:
        netns.ip(vm2.namespace, "address", "del", "192.0.2.55/32", "dev", "eth0")
    netns.ip(vm2.namespace, "link", "set", "eth0", "address", "52:54:00:00:99:99")
    try:
        assert not vm_ping(lab, "vm2", loopback)  # forged source MAC
    finally:
        netns.ip(vm2.namespace, "link", "set", "eth0", "address", vm2.mac)
    netns.ns_run(vm2.namespace, [sys.executable, "-c", FORGED_ARP, vm2.mac, "192.0.2.10"])
    after = drops(lab, vm2.host, "vm2")
    assert after["ip4-src"] > before["ip4-src"]
    assert after["mac"] > before["mac"]
    assert after["arp-ip"] > before["arp-ip"]
    assert vm_ping(lab, "vm2", loopback)  # legitimate traffic still flows
    assert vm_ping(lab, "vm1", loopback)  # and vm1's address was not stolen


def test_migration_keeps_the_fabric_exact(lab: runner.Lab) -> None:
    from frrctl.lab.migrate import migrate

    result = migrate(lab, "vm3", "hv1")  # unnumbered BGP host -> numbered BGP host
    print(json.dumps(result.as_dict()))
    assert (result.source, result.destination) == ("hv2", "hv1")
    for ping in result.pings:
        assert ping.received > 0 and ping.sent > ping.lost
    moved = state.attach(lab.state_dir)
    assert moved.plan.vm("vm3").host == "hv1"
    report = collect(moved, pings=True, reload_test=False)
    assert report.ok, [c for c in report.checks if not c.ok]


def test_real_guest_migrates_to_the_ospf_host_and_back(lab: runner.Lab) -> None:
    """vm7 (QEMU) by libvirt live migration to hv3: verify exact over OSPFv2/OSPFv3 with a
    real VM, in every mode; then back to hv1 (BGP)."""
    from frrctl.lab.migrate import migrate

    for to in ("hv3", "hv1"):
        result = migrate(state.attach(lab.state_dir), "vm7", to)
        print(json.dumps(result.as_dict()))
        assert result.kind == "qemu" and result.destination == to
        assert all(p.received > 0 for p in result.pings)
        assert set(result.routes_at_upstream.values()) == {1}  # announced by one host only
        report = collect(state.attach(lab.state_dir), pings=True, reload_test=False)
        assert report.ok, [c for c in report.checks if not c.ok]


def test_up_again_removes_leftovers_and_down_removes_everything(lab: runner.Lab) -> None:
    """A second `up` on the same state dir (a crashed run) replaces the first one."""
    if lab.plan.fleet.hosts[0].mode == "controller":
        pytest.skip("shown once, in redistribute mode")
    old = set(lab.plan.namespaces())
    new = runner.up(EXAMPLE, lab.state_dir, wait=90)
    try:
        present = netns.existing_namespaces()
        assert not old & present
        assert set(new.plan.namespaces()) <= present
        assert collect(new, pings=False, reload_test=False).ok
    finally:
        removed = runner.down(lab.state_dir)
    assert set(removed) == set(new.plan.namespaces())
    assert not any(ns.startswith(new.plan.prefix) for ns in netns.existing_namespaces())
    assert not new.workdir.exists() and not (lab.state_dir / state.STATE_FILE).exists()
    leftover = subprocess.run(["pgrep", "-f", new.plan.prefix], capture_output=True, text=True)
    assert leftover.stdout.strip() == ""


def test_lab_down_without_lab_is_a_no_op(tmp_path: Path) -> None:
    result = frrctl("lab", "--state-dir", str(tmp_path), "down")
    assert result.returncode == 0 and "nothing to remove" in result.stdout
    result = frrctl("lab", "--state-dir", str(tmp_path), "verify")
    assert result.returncode == 1 and "no lab is up" in result.stderr


PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("open")
except OSError as exc:
    print(f"closed: {exc}")
"""


def test_grpc_port_is_closed_to_the_fabric(lab: runner.Lab) -> None:
    host = lab.plan.fleet.host("hv1")
    if host.mode != "controller" or host.controller.driver != "grpc":
        pytest.skip("only with the gRPC driver")
    port = str(host.controller.grpc_port)

    def probe(ns: str, address: str) -> str:
        return netns.ns_run(ns, [sys.executable, "-c", PROBE, address, port]).stdout.strip()

    # staticd's northbound module listens on every address of the host...
    assert probe(lab.plan.host_ns("hv1"), "127.0.0.1") == "open"
    assert probe(lab.plan.host_ns("hv1"), "198.18.0.1") == "open"  # the uplink address too
    # ...but from the upstream router, over the uplink, it cannot be reached.
    assert probe(lab.plan.upstream_ns, "198.18.0.1").startswith("closed")
    assert probe(lab.plan.upstream_ns, "2001:db8:ffff:1::1").startswith("closed")
