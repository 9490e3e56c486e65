"""`frrctl lab chaos` on the example fleet in controller mode: a short seeded soak
in CI. Safety (no forbidden prefix at the peer in any 50 ms sample) and
liveness (exact convergence after every event) must both hold."""

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

from frrctl.lab import runner
from frrctl.lab.verify import collect
from tests.conftest import ROOT, needs_lab

pytestmark = [needs_lab, pytest.mark.lab, pytest.mark.slow]
EXAMPLE = ROOT / "examples" / "fleet.yaml"
# Known, FRR 8.4.4, not repairable without restarting the OSPF daemons (the
# daemon withdraws ospf6d's stale prefixes and alerts on the rest, see
# frrctl.frr.staticd "OSPF after a zebra restart";
# tests/daemon/test_daemon_ospf_zebra.py): after a zebra restart neither ospfd
# nor ospf6d follows a later change (zclient_stop frees their redistribution
# bitmaps for good). The lab now loads frr.conf into the restarted zebra alone,
# as watchfrr does, so the prefixes held before survive (seed 23: kill-zebra@hv3
# converges in 28 s), but the next event there (seed 23: a drain of hv3) never
# converges: 2001:db8:100::30/128 and 203.0.113.7/32 stay announced.
KNOWN = ["kill-zebra@hv3"]
# grpc: none more (a route withdrawn while zebra restarted is withdrawn through
# zebra, StaticdDriver.withdraw_stale; tests/daemon/test_daemon_grpc_zebra.py)
KNOWN_GRPC: list[str] = []


def _grpc_skip() -> str | None:
    from frrctl.lab.controller import grpc_install

    return None if grpc_install() else "no gRPC-enabled FRR (lab/build-frr-grpc.sh)"


DRIVERS = [
    pytest.param("vtysh", id="vtysh"),
    # chaos adds its routes at the plug metric, so it soaks a staticd host too
    pytest.param(
        "grpc", id="grpc", marks=pytest.mark.skipif(bool(_grpc_skip()), reason=_grpc_skip() or "")
    ),
]


@pytest.fixture(scope="module", params=DRIVERS)
def lab(request: pytest.FixtureRequest) -> Iterator[Path]:
    state_dir = Path(f"/run/frrctl-chaos-test-{secrets.token_hex(3)}")
    try:
        # namespace VMs only: chaos' migrate moves a namespace VM's port (not a QEMU guest)
        runner.up(EXAMPLE, state_dir, wait=90, driver=request.param, qemu=())
        yield state_dir
    finally:
        runner.down(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


def chaos(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "frrctl.cli", "lab", "--state-dir", str(state_dir), "chaos", *args],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def test_short_soak_keeps_safety_and_liveness(lab: Path, request: pytest.FixtureRequest) -> None:
    known = KNOWN + (KNOWN_GRPC if "grpc" in request.node.name else [])
    excludes = [a for k in known for a in ("--exclude", k)]
    result = chaos(lab, "--seed", "3", "--duration", "60", "--bound", "45", "--json", *excludes)
    summary = json.loads(result.stdout)
    print(json.dumps(summary["kinds"], indent=1))
    assert summary["safety_violations"] == []
    assert summary["liveness_failures"] == [], summary["liveness_failures"]
    assert result.returncode == 0 and summary["ok"]
    assert summary["events"] >= 10 and len(summary["kinds"]) >= 5
    for row in summary["kinds"].values():
        assert row["count"] == row["converged"] and row["max_s"] <= 45
    # the run leaves the lab as it found it: verify passes (no bursts, holds, drains)
    from frrctl.lab import state

    # within the run's own bound: the reset's last step (a release, a restart) may still be
    # propagating when the run returns
    attached = state.attach(lab)
    deadline = time.monotonic() + 45
    while not (report := collect(attached, pings=False, reload_test=False)).ok:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert report.ok, [c.as_dict() for c in report.checks if not c.ok]


def test_bad_arguments_are_one_line_exit_2(lab: Path) -> None:
    result = chaos(lab, "--seed", "1", "--duration", "0")
    assert result.returncode == 2 and "--duration" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
