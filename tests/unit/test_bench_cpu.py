"""The bench's CPU accounting per bulk run: per process from /proc, the machine's
busy and steal time, and the table's median row."""

from __future__ import annotations

import os
import time

from frrctl.lab.bench import PhaseResult, cpu_cell, cpu_seconds, format_table


def test_cpu_seconds_counts_this_process_and_the_machine() -> None:
    before = cpu_seconds({"me": os.getpid(), "gone": 2**22 + 12345})
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    after = cpu_seconds({"me": os.getpid()})
    assert "gone" not in before  # a process that is not there is left out
    assert after["me"] - before["me"] >= 0.02
    assert after["all"] - before["all"] >= 0.02  # the machine was busy at least as long
    assert after["steal"] >= before["steal"] >= 0


def test_table_shows_median_cpu_per_process() -> None:
    native = PhaseResult("native", bulk_s={10000: 0.5})
    native.bulk_cpu_s = {10000: [{"bgpd": 0.1, "ip": 0.2}, {"bgpd": 0.3, "ip": 0.2}]}
    daemon = PhaseResult("daemon-vtysh", bulk_s={10000: 0.6})
    daemon.bulk_cpu_s = {10000: [{"bgpd": 0.2, "frrctl": 0.3}]}
    assert cpu_cell(native.summary(), "10000") == "bgpd=0.20 ip=0.20"
    table = format_table([native, daemon])
    (line,) = [x for x in table.splitlines() if x.startswith("CPU s per 10000 run (median)")]
    assert "bgpd=0.20 ip=0.20" in line and "bgpd=0.20 frrctl=0.30" in line


def test_table_shows_cpu_per_change_on_a_held_host() -> None:
    native = PhaseResult("native", held_announce_ms={10000: [112.0]})
    native.held_cpu_ms = {10000: {"bgpd": 1.5, "staticd": 0.0}}
    daemon = PhaseResult("daemon-grpc", held_announce_ms={10000: [790.0]})
    daemon.held_cpu_ms = {10000: {"frrctl": 27.5, "staticd": 832.0}}
    silent = PhaseResult("daemon-vtysh", held_announce_ms={10000: [110.0]})  # the loop failed
    table = format_table([native, daemon, silent])
    (line,) = [x for x in table.splitlines() if x.startswith("CPU ms per change on 10000")]
    assert line.split()[-3:] == ["frrctl=27.5", "staticd=832", "-"]
    assert "bgpd=1.5 staticd=0" in line
    assert native.summary()["held_cpu_ms_per_change"] == {"10000": {"bgpd": 1.5, "staticd": 0.0}}
