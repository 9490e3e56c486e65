"""The lab's QEMU VMs, pure parts: the VM kind, the plan, the migration's figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from frrctl.errors import UsageError
from frrctl.inventory import InventoryError, load_inventory
from frrctl.lab.migrate import _moment, both_routed_ms, longest_gap_ms, routed_at
from frrctl.lab.runner import with_kinds
from frrctl.lab.topology import plan_lab

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"


def test_the_example_has_one_qemu_vm_on_a_bgp_host() -> None:
    plan = plan_lab(load_inventory(EXAMPLE), "flabcdef")
    assert [vm.name for vm in plan.vms if vm.qemu] == ["vm7"]
    assert plan.vm("vm7").host == "hv1" and plan.vm("vm7").host_port == "vm-vm7"
    assert plan.qemu_hosts() == ["hv1"]
    assert plan.vm("vm7").namespace not in plan.namespaces()  # a guest needs no namespace
    assert plan.vm("vm1").namespace in plan.namespaces()
    assert "192.0.2.17/32" in plan.vm_addresses({"hv1"})  # verified like any VM
    moved = plan_lab(plan.fleet, "flabcdef", {"vm7": "hv3"})
    assert moved.qemu_hosts() == ["hv3"]


def test_with_kinds_overrides_the_inventory(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    out = with_kinds(raw, ["vm1"])
    assert {vm["name"]: vm["kind"] for vm in out["lab"]["vms"]}["vm1"] == "qemu"
    assert {vm["name"]: vm["kind"] for vm in out["lab"]["vms"]}["vm7"] == "namespace"
    assert next(vm for vm in raw["lab"]["vms"] if vm["name"] == "vm7")["kind"] == "qemu"
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(with_kinds(raw, [])))
    assert not [vm for vm in plan_lab(load_inventory(path), "flx").vms if vm.qemu]
    with pytest.raises(UsageError, match="no VM vm9"):
        with_kinds(raw, ["vm9"])


def test_a_bad_kind_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    raw["lab"]["vms"][0]["kind"] = "kvm"
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InventoryError, match=r"vm1.*kind"):
        load_inventory(path)


def test_longest_gap_between_replies() -> None:
    out = "\n".join(
        [
            "PING 192.0.2.17 (192.0.2.17) from 198.51.100.254 : 56(84) bytes of data.",
            "[1796159753.900000] 64 bytes from 192.0.2.17: icmp_seq=1 ttl=63 time=0.5 ms",
            "[1796159753.910000] 64 bytes from 192.0.2.17: icmp_seq=2 ttl=63 time=0.5 ms",
            "From 198.51.100.254 icmp_seq=3 Destination Net Unreachable",
            "[1796159754.250000] 64 bytes from 192.0.2.17: icmp_seq=30 ttl=63 time=0.6 ms",
            "[1796159754.260000] 64 bytes from 192.0.2.17: icmp_seq=31 ttl=63 time=0.6 ms",
        ]
    )
    assert longest_gap_ms(out) == pytest.approx(340.0, abs=0.2)
    assert longest_gap_ms("no replies at all") is None


def test_routed_at_reads_the_last_address_routed_via_the_new_links() -> None:
    log = "\n".join(
        [
            "[2026-12-01T21:15:54.073194] Deleted 192.0.2.17 nhid 33 via 198.18.0.1 dev hv1-eth0"
            " proto bgp metric 20",
            "[2026-12-01T21:15:54.100000] 192.0.2.17 nhid 9 via 198.18.0.1 dev hv1-eth0 proto bgp",
            "[2026-12-01T21:15:54.255693] 192.0.2.17 nhid 30 via inet6 fe80::1 dev hv2-eth0"
            " proto bgp metric 20",
            "[2026-12-01T21:15:54.255768] 2001:db8:100::17 nhid 30 via fe80::1 dev hv2-eth0"
            " proto bgp metric 20 pref medium",
        ]
    )
    got = routed_at(log, {"192.0.2.17", "2001:db8:100::17"}, {"hv2-eth0"})
    assert got is not None
    assert got == pytest.approx(routed_at(log, {"2001:db8:100::17"}, {"hv2-eth0"}) or 0)
    assert routed_at(log, {"192.0.2.17"}, {"hv3-eth0"}) is None  # never via hv3


def test_moments_read_the_agents_own_times() -> None:
    log = [
        {"msg": "unplugged", "instance": "a", "t": 9.0, "routes_t": 9.5},  # before `since`
        {"msg": "plugged", "instance": "a", "t": 10.2, "routes_t": 10.1},
        {"msg": "unplugged", "instance": "a", "t": 10.3, "routes_t": 10.01},
        {"msg": "unplugged", "instance": "b", "t": 10.4, "routes_t": None},
    ]
    assert _moment(log, 10.0, msg="unplugged", instance="a") == 10.3
    assert _moment(log, 10.0, "routes_t", msg="unplugged", instance="a") == 10.01
    assert _moment(log, 10.0, "routes_t", msg="unplugged", instance="b") is None
    assert _moment(log, 10.0, msg="unplugged", instance="c") is None


def test_both_routed_is_the_overlap_of_the_two_hosts() -> None:
    assert both_routed_ms(10.005, 10.160) == 0.0  # the source withdrew first
    assert both_routed_ms(10.040, 10.029) == 11.0  # QEMU paused less than the source took
    assert both_routed_ms(None, 10.0) is None
