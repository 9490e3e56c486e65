"""Pure: where the longest ping outage lies (its last reply before, first after)."""

from __future__ import annotations

from frrctl.lab.migrate import longest_gap, longest_gap_ms


def test_longest_gap_is_the_span_between_two_replies() -> None:
    out = "\n".join(
        f"[{t:.6f}] 64 bytes from 192.0.2.17: icmp_seq={i} ttl=62 time=0.1 ms"
        for i, t in enumerate((100.00, 100.01, 100.02, 100.25, 100.26, 100.30))
    )
    assert longest_gap(out) == (100.02, 100.25)
    assert longest_gap_ms(out) == 230.0
    assert longest_gap("[100.0] 64 bytes from x") is None
