"""The text view of `frrctl instance list` (pure)."""

from __future__ import annotations

from typing import Any

from frrctl.commands.host import format_listing


def _data(*instances: dict[str, Any]) -> dict[str, Any]:
    return {"bridge": "cloudbr0", "bridge_present": True, "instances": list(instances),
            "unrecorded_routes": [], "drift": 0}  # fmt: skip


def _inst(state: str, ok: bool = True) -> dict[str, Any]:
    drift = [] if ok else [{"address": "192.0.2.9", "problem": "route missing"}]
    return {"name": "vm1", "mac": "52:54:00:00:00:01", "port": "vm1-eth0",
            "addresses": ["192.0.2.9"], "state": state, "ok": ok, "drift": drift}  # fmt: skip


def test_state_is_shown() -> None:
    assert format_listing(_data(_inst("plugged"))) == [
        "vm1 52:54:00:00:00:01 port vm1-eth0 192.0.2.9 plugged ok"
    ]
    assert format_listing(_data(_inst("prepared"))) == [
        "vm1 52:54:00:00:00:01 port vm1-eth0 192.0.2.9 prepared (not routed yet) ok"
    ]


def test_drift_and_empty() -> None:
    (line,) = format_listing(_data(_inst("plugged", ok=False)))
    assert line.endswith("plugged DRIFT: 192.0.2.9 route missing")
    assert format_listing(_data()) == ["no instances plugged on cloudbr0"]
