"""`frrctl lab bench` runs end to end (small sizes) and reports every phase.

Speed is printed by the benchmark, never asserted here: this checks that each
phase really measured something at the ExaBGP peer and that nothing is left.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from frrctl.lab import netns
from frrctl.lab.controller import grpc_install
from tests.conftest import needs_lab

pytestmark = [needs_lab, pytest.mark.lab, pytest.mark.slow]


def test_bench_measures_native_and_each_driver(tmp_path: Path) -> None:
    drivers = ["vtysh", "grpc"] if grpc_install() else ["vtysh"]
    state_dir = Path(f"/run/frrctl-bench-test-{secrets.token_hex(3)}")
    out = tmp_path / "bench.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "frrctl.cli", "lab", "--state-dir", str(state_dir), "bench",
             "--samples", "5", "--bulk", "200", "--bulk-repeat", "2", "--drivers", *drivers,
             "--json", str(out)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        print(result.stdout)
        assert result.returncode == 0, result.stderr[-2000:]
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    phases = json.loads(out.read_text())
    assert [p["name"] for p in phases] == ["native", *(f"daemon-{d}" for d in drivers)]
    for phase in phases:
        assert phase["announce_ms"]["n"] == 5 and phase["announce_ms"]["p50"] > 0
        assert phase["withdraw_ms"]["n"] == 5
        assert phase["bulk_s"]["200"] > 0 and phase["recovery_s"] > 0
        assert len(phase["bulk_samples_s"]["200"]) == 2
    assert all(p["daemon_rss_mb"] for p in phases[1:])
    assert "ratio p50" in result.stdout
    assert not any(ns.startswith("fl") and "bench" in ns for ns in netns.existing_namespaces())
