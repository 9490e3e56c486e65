"""`frrctl lab bench` runs end to end (small sizes) and reports every phase.

Speed is printed by the benchmark, never asserted here: this checks that each
part really measured something at the ExaBGP peer (and the upstream's NLRI
count), that every sample is in the JSON and that nothing is left.
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
from frrctl.lab.bench import default_drivers
from frrctl.lab.controller import grpc_install
from tests.conftest import needs_lab

pytestmark = [needs_lab, pytest.mark.lab, pytest.mark.slow]


def test_bench_measures_native_and_each_driver(tmp_path: Path) -> None:
    drivers = [d for d in default_drivers() if grpc_install() or not d.startswith("grpc")]
    state_dir = Path(f"/run/frrctl-bench-test-{secrets.token_hex(3)}")
    out = tmp_path / "bench.json"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "frrctl.cli", "lab", "--state-dir", str(state_dir), "bench",
             "--samples", "3", "--bulk", "200", "--bulk-repeat", "2", "--held", "200",
             "--held-samples", "2", "--ospf-samples", "2", "--drivers", *drivers,
             "--json", str(out)],
            capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        print(result.stdout)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    phases = json.loads(out.read_text())
    assert [p["name"] for p in phases] == ["native", *(f"daemon-{d}" for d in drivers)]
    for phase in phases:
        assert not phase["errors"]
        assert phase["announce_ms"]["n"] == 3 and phase["announce_ms"]["p50"] > 0
        assert len(phase["withdraw_samples_ms"]) == 3
        assert len(phase["bulk_samples_s"]["200"]) == 2 and phase["recovery_s"] > 0
        assert len(phase["held_announce_samples_ms"]["200"]) == 2
        # every change (2 announced, 2 withdrawn) reached the upstream as NLRIs
        nlri = phase["held_nlri_per_change"]["200"]
        assert len(nlri) == 4 and all(n >= 1 for n in nlri), nlri
        for key in ("ospf", "ospf6"):
            assert len(phase["ospf_announce_samples_ms"][key]) == 2
            assert len(phase["ospf_withdraw_samples_ms"][key]) == 2
    # FRR alone sends exactly one NLRI per change: the count is NLRIs, not messages
    assert phases[0]["held_nlri_per_change"]["200"] == [1, 1, 1, 1]
    assert all(p["daemon_rss_mb"] and p["held_rss_mb"]["200"] for p in phases[1:])
    assert "1 prefix announce p50 ms" in result.stdout and "x)" in result.stdout
    assert not any(ns.startswith("fl") and "bench" in ns for ns in netns.existing_namespaces())
