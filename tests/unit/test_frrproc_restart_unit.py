"""restart_in applies frr.conf to the restarted daemon alone (`vtysh -d`, as
watchfrr); a boot applies it to every daemon. Real FRR: tests/conformance."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from frrctl.lab import frrproc, netns


def test_restart_loads_the_config_into_the_restarted_daemon_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    loads: list[list[str]] = []
    monkeypatch.setattr(frrproc, "kill_daemon", lambda vty, daemon: None)
    monkeypatch.setattr(
        netns, "start_frr_daemon", lambda ns, host, daemon, *rest: started.append(daemon)
    )

    def ns_run(ns: str, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        loads.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(netns, "ns_run", ns_run)
    conf = tmp_path / "frr.conf"
    frrproc.restart_in("ns", "hv1", tmp_path, "zebra", conf, "ospf6d=yes\n")
    assert started == ["zebra"]
    assert loads[-1][-4:] == ["-d", "zebra", "-f", str(conf)]
    frrproc.start_frr("ns", "hv1", tmp_path, ["zebra", "ospf6d"], conf)  # boot: all of them
    assert "-d" not in loads[-1] and loads[-1][-2:] == ["-f", str(conf)]
