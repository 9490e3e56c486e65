"""`frrctl instance list` (text) names each instance's state: a guest prepared on a
migration's destination (guarded port, nothing routed) reads `prepared`, not just `ok`."""

from __future__ import annotations

from tests.host.conftest import HostNs, needs_root
from tests.host.test_prepare import MAC, NAME, V4, V6, host_call

pytestmark = needs_root


def _line(hostns: HostNs) -> str:
    lines = [ln for ln in hostns.frrctl("instance", "list").stdout.splitlines() if NAME in ln]
    assert len(lines) == 1, lines
    return lines[0]


def test_text_list_shows_prepared_then_plugged(hostns: HostNs) -> None:
    hostns.frrctl("host", "setup")
    g = hostns.add_guest("p", MAC, V4, V6)
    host_call(hostns, "prepare", g.port, V4, V6)
    line = _line(hostns)
    assert " prepared (not routed yet) ok" in line and f"port {g.port}" in line, line
    host_call(hostns, "plug", g.port, V4, V6)
    line = _line(hostns)
    assert line.endswith(" plugged ok") and "prepared" not in line, line
