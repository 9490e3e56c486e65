"""The example fleet with its real guest: vm7 is a QEMU (TCG) VM on hv1.

hv1's own libvirtd starts it, hv1's frrctl libvirt agent plugs it (the lab
never runs `instance plug` for it), and `lab migrate` moves it with libvirt's
live migration to another hypervisor's libvirtd and back, while the upstream
pings both its addresses every 10 ms. No timing is asserted: the figures are
printed (QEMU's downtime, the agents' moments, the longest ping gap).
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
from typing import Any

import pytest

from frrctl.lab import netns, qemu, runner, state
from frrctl.lab.migrate import upstream_routes
from frrctl.lab.verify import collect
from tests.conftest import ROOT, needs_lab
from tests.libvirt.lvharness import skip_reason

pytestmark = [needs_lab, pytest.mark.lab, pytest.mark.slow]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
ADDRS = ["192.0.2.17", "2001:db8:100::17"]


@pytest.fixture(scope="module")
def lab() -> Iterator[runner.Lab]:
    if reason := skip_reason():
        pytest.skip(reason)
    state_dir = Path(f"/run/frrctl-lab-qemu-test-{secrets.token_hex(3)}")
    try:
        yield runner.up(EXAMPLE, state_dir, wait=90)
    finally:
        runner.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def frrctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frrctl.cli", *args], capture_output=True, text=True, timeout=180
    )


def records(lab: runner.Lab, host: str) -> set[str]:
    out = runner.frrctl(lab.plan.host_ns(host), "instance", "list", "--json",
                        "--state-dir", str(lab.host_state(host)))  # fmt: skip
    return {i["name"] for i in json.loads(out)["instances"]}


def assert_exact(lab_dir: Path) -> None:
    report = collect(state.attach(lab_dir), pings=True, reload_test=False)
    assert report.ok, [c for c in report.checks if not c.ok]


def test_the_qemu_guest_is_plugged_by_its_agent(lab: runner.Lab) -> None:
    vm = lab.plan.vm("vm7")
    assert vm.qemu and vm.host == "hv1"
    assert vm.namespace not in netns.existing_namespaces()  # a real guest, not a namespace
    # the agent's plug (DOMAIN@MAC), no `instance plug vm7` by the lab
    assert qemu.instance_name(lab, vm) in records(lab, "hv1")
    assert "vm7" not in records(lab, "hv1")
    status = json.loads(
        frrctl("libvirt", "status", "--json", "--state-dir", str(lab.host_state("hv1"))).stdout
    )
    assert status["running"]
    assert status["domains"][qemu.domain_name(lab, vm)]["instances"] == [
        qemu.instance_name(lab, vm)
    ]
    assert_exact(lab.state_dir)


def test_a_second_announcement_is_seen(lab: runner.Lab) -> None:
    """The no-double-announcement check can fail: hv2 routes vm7's address too."""
    hv2 = lab.plan.host_ns("hv2")
    netns.ip(hv2, "route", "add", "192.0.2.17/32", "dev", "cloudbr0")
    try:
        deadline = time.monotonic() + 30
        while upstream_routes(lab, "192.0.2.17") != 2:
            assert time.monotonic() < deadline, "the second announcement never arrived"
            time.sleep(0.2)
    finally:
        netns.ip(hv2, "route", "del", "192.0.2.17/32", "dev", "cloudbr0")
    deadline = time.monotonic() + 30
    while upstream_routes(lab, "192.0.2.17") != 1:
        assert time.monotonic() < deadline, "the second announcement was never withdrawn"
        time.sleep(0.2)


def migrate(lab: runner.Lab, to: str) -> dict[str, Any]:
    result = frrctl("lab", "--state-dir", str(lab.state_dir), "migrate", "vm7", "--to", to,
                    "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    print(f"\nmigration vm7 -> {to}:", json.dumps({k: data[k] for k in ("pings", "qemu")}))
    assert data["kind"] == "qemu" and data["destination"] == to
    for ping in data["pings"]:  # the pings went on, and resumed after the move
        assert ping["received"] > 0 and ping["gap_ms"] is not None, ping
    assert data["routes_at_upstream"] == dict.fromkeys(ADDRS, 1)  # no double announcement
    moments = data["qemu"]["moments_ms"]
    assert None not in moments.values(), moments  # every handover moment was logged
    # the source kept its routes until its guest paused for the final phase, and
    # withdrew them then (the moment its netlink batch ended, before its port guard)
    assert 0 <= moments["source routes gone"] <= moments["source unplugged"]
    # the destination routed nothing before its guest ran there. The two agents do not
    # wait for each other, so the order between them is measured, not asserted here
    # (tests/libvirt/test_libvirt_migration.py asserts it on both hosts' `ip monitor`)
    assert moments["destination routes added"] <= moments["destination plugged"]
    print(f"both hosts routed the addresses for {data['qemu']['both_routed_ms']} ms")
    # the destination plugs once its guest runs: on RESUMED, or when it reads the domain
    # RUNNING a moment before libvirt's RESUMED callback reaches it (the callback's thread
    # waits for the agent's busy main thread), so the event's own time may be ~1 ms later
    assert (
        moments["destination resumed (RESUMED/MIGRATED)"] - 5 <= moments["destination routes added"]
    )
    assert isinstance(data["qemu"]["downtime_ms"], int)
    return data


def _guest_on(lab_dir: Path, host: str) -> None:
    moved = state.attach(lab_dir)
    vm = moved.plan.vm("vm7")
    assert vm.host == host
    others = {h.hostname for h in moved.plan.fleet.hosts} - {host}
    assert qemu.instance_name(moved, vm) in records(moved, host)
    for other in others:
        assert qemu.instance_name(moved, vm) not in records(moved, other)
    assert_exact(lab_dir)


def test_live_migration_to_a_bgp_host_and_back(lab: runner.Lab) -> None:
    migrate(lab, "hv2")  # numbered BGP -> unnumbered BGP
    _guest_on(lab.state_dir, "hv2")
    migrate(lab, "hv1")
    _guest_on(lab.state_dir, "hv1")


def test_live_migration_to_the_ospf_host_and_back(lab: runner.Lab) -> None:
    migrate(lab, "hv3")  # BGP -> OSPFv2/OSPFv3 (its libvirtd starts on the first arrival)
    _guest_on(lab.state_dir, "hv3")
    migrate(lab, "hv1")
    _guest_on(lab.state_dir, "hv1")


def test_down_removes_every_libvirtd_qemu_and_agent() -> None:
    """A crashed `up` (never stopped cleanly): the next `up` finds it all from the state
    file alone and removes it: the libvirtd, the QEMU, the agent."""
    if reason := skip_reason():
        pytest.skip(reason)
    state_dir = Path(f"/run/frrctl-lab-qemu-down-{secrets.token_hex(3)}")
    try:
        old = runner.up(EXAMPLE, state_dir, wait=0, qemu=["vm7"])
        prefix = old.plan.prefix
        assert qemu.host_running(old, "hv1")
        pidfile = qemu.sandbox_dir(old, "hv1") / "run" / "libvirtd.pid"
        libvirtd = int(pidfile.read_text().strip())
        found = subprocess.run(["pgrep", "-f", prefix], capture_output=True, text=True)
        assert len(found.stdout.split()) >= 2  # the QEMU (-name guest=PREFIX-vm7), the agent
        new = runner.up(EXAMPLE, state_dir, wait=0, qemu=[])
        assert not [vm for vm in new.plan.vms if vm.qemu]
        assert not Path(f"/proc/{libvirtd}").exists()
        found = subprocess.run(["pgrep", "-f", prefix], capture_output=True, text=True)
        assert found.stdout.strip() == ""
        assert not old.workdir.exists()
    finally:
        runner.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
