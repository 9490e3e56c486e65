"""`frrctl lab bench`'s pure parts: the table (ratios to native), every sample in
the summary, the NLRI count of bgpd's update log, the driver list."""

from __future__ import annotations

import typing
from pathlib import Path

from frrctl.inventory import ControllerSettings
from frrctl.lab.bench import (
    PhaseResult,
    bench_drivers,
    count_nlri,
    default_drivers,
    format_table,
    stats,
)


def phase(name: str, scale: float) -> PhaseResult:
    return PhaseResult(
        name,
        announce_ms=[100 * scale, 110 * scale],
        withdraw_ms=[90 * scale],
        bulk_s={1000: 0.2 * scale},
        bulk_samples_s={1000: [0.2 * scale, 0.3 * scale]},
        held_announce_ms={1000: [100 * scale, 120 * scale, 140 * scale]},
        held_withdraw_ms={1000: [90 * scale]},
        held_nlri={1000: [1, 1, 1, 3]},
        held_rss_mb={1000: 50.0},
        ospf_announce_ms={"ospf": [200 * scale], "ospf6": [300 * scale]},
        ospf_withdraw_ms={"ospf": [210 * scale], "ospf6": [310 * scale]},
    )


def row(table: str, label: str) -> list[str]:
    (line,) = [line for line in table.splitlines() if line.startswith(label + "  ")]
    return line[len(label) :].split()


def test_table_has_every_phase_and_its_ratio_to_native() -> None:
    table = format_table([phase("native", 1), phase("daemon-grpc", 2)])
    assert table.splitlines()[0].split() == ["native", "daemon-grpc"]
    assert row(table, "1 prefix announce p50 ms") == ["105", "210", "(2.00x)"]
    assert row(table, "1000 at once, at peer s") == ["0.2", "0.4", "(2.00x)"]
    assert row(table, "+1 on 1000 announce p50 ms") == ["120", "240", "(2.00x)"]
    assert row(table, "+1 on 1000 announce p90 ms") == ["140", "280", "(2.00x)"]
    assert row(table, "OSPFv2 announce p50 ms") == ["200", "400", "(2.00x)"]
    assert row(table, "OSPFv3 withdraw p50 ms") == ["310", "620", "(2.00x)"]
    assert row(table, "NLRIs at upstream per change on 1000") == ["1.5", "(max", "3)"] * 2


def test_a_failed_part_shows_as_missing_and_is_named() -> None:
    broken = PhaseResult("daemon-x", announce_ms=[100.0], errors=["10000 at once: timeout"])
    table = format_table([phase("native", 1), broken])
    assert row(table, "1000 at once, at peer s") == ["0.2", "-"]
    assert row(table, "OSPFv2 announce p50 ms") == ["200", "-"]
    assert "daemon-x: FAILED 10000 at once: timeout" in table


def test_summary_keeps_every_sample() -> None:
    summary = phase("x", 1).summary()
    assert summary["announce_samples_ms"] == [100, 110]
    assert summary["bulk_samples_s"] == {"1000": [0.2, 0.3]}
    assert summary["held_announce_samples_ms"] == {"1000": [100, 120, 140]}
    assert summary["held_nlri_per_change"] == {"1000": [1, 1, 1, 3]}
    assert summary["ospf_withdraw_samples_ms"] == {"ospf": [210], "ospf6": [310]}
    assert stats([float(x) for x in range(1, 11)]) == {"p50": 5.5, "p90": 9, "p99": 10, "n": 10}


def test_nlris_are_counted_per_prefix_not_per_message() -> None:
    # FRR 8.4.4 bgpd `debug bgp updates in` lines (bgp_route.c, %pBP = "host(hostname)")
    log = "\n".join([
        "2026/12/01 23:59:00.100 BGP: [R3YHK-XQ7T3] 198.18.0.1(bench) rcvd UPDATE w/ attr: "
        "nexthop 198.18.0.1, origin ?, metric 0, path 65099",
        "2026/12/01 23:59:00.100 BGP: [X] 198.18.0.1(bench) rcvd 198.19.0.5/32 IPv4 unicast",
        "2026/12/01 23:59:00.100 BGP: [X] 198.18.0.1(bench) rcvd 198.19.0.6/32 IPv4 unicast",
        "2026/12/01 23:59:00.200 BGP: [X] 198.18.0.1(bench) rcvd 198.19.0.6/32 IPv4 unicast"
        "...duplicate ignored",
        "2026/12/01 23:59:00.300 BGP: [X] 198.18.0.1(bench) rcvd UPDATE about 198.19.0.5/32 "
        "IPv4 unicast -- withdrawn",
        "2026/12/01 23:59:00.300 BGP: [X] 198.18.0.1(bench) rcvd UPDATE about "
        "2001:db8:b::5/128 IPv6 unicast -- DENIED due to: filtered",
        "2026/12/01 23:59:00.400 BGP: [X] 198.18.0.1(bench) rcvd End-of-RIB for IPv4 Unicast",
        "2026/12/01 23:59:00.400 BGP: [X] bgp_update_receive: something else",
    ])  # fmt: skip
    assert count_nlri(log) == 5
    assert count_nlri("") == 0


def test_drivers_follow_the_inventory() -> None:
    names = typing.get_args(ControllerSettings.model_fields["driver"].annotation)
    assert default_drivers() == list(names)
    assert bench_drivers()["vtysh+import-check"] == ("vtysh", {"import-check": True})


def test_waiting_stops_when_the_daemon_is_gone(tmp_path: Path) -> None:
    import time

    import pytest

    from frrctl.lab.bench import PeerRecord, has
    from frrctl.lab.netns import LabError

    record_file = tmp_path / "updates.jsonl"
    record_file.write_text("")
    record = PeerRecord(record_file)
    record.broken = lambda: "the daemon exited (1)"
    started = time.monotonic()
    with pytest.raises(LabError, match="daemon exited"):
        record.wait(has("198.19.0.1/32"), 60)
    assert time.monotonic() - started < 2
