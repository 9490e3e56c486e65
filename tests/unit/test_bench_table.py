"""`frrctl lab bench`'s table: ratios to native, the held-host phase included."""

from __future__ import annotations

from frrctl.lab.bench import PhaseResult, format_table


def phase(name: str, scale: float) -> PhaseResult:
    return PhaseResult(
        name,
        announce_ms=[100 * scale, 110 * scale],
        withdraw_ms=[90 * scale],
        bulk_s={1000: 0.2 * scale},
        held_announce_ms={1000: [100 * scale, 120 * scale, 140 * scale]},
        held_withdraw_ms={1000: [90 * scale]},
    )


def test_table_has_the_held_phase_and_its_ratio() -> None:
    table = format_table([phase("native", 1), phase("daemon-grpc-static", 2)])
    head, native, driver = table.splitlines()
    assert "+1 on 1000 p50/p99 ms" in head and "ratio +1 on 1000" in head
    assert " 120/140 " in native and " 240/280 " in driver
    assert driver.split()[-3:] == ["2.00x", "2.00x", "2.00x"]
    summary = phase("x", 1).summary()
    assert summary["held_samples_ms"] == {"1000": [100, 120, 140]}
