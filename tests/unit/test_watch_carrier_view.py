"""KernelView and the bridge's carrier (pure): what zebra's if_is_operative reads,
IFF_UP, IFF_LOWER_UP and IFF_RUNNING (operstate up) together."""

from __future__ import annotations

import pytest

from frrctl.watch import IFF_LOWER_UP, IFF_RUNNING, IFF_UP, KernelView, Resync
from tests.unit.test_watch_resync import link

CARRIER = IFF_UP | IFF_LOWER_UP | IFF_RUNNING


def test_carrier_needs_lower_up_and_running() -> None:
    view = KernelView("cloudbr0")
    view.apply(link(2, "cloudbr0", IFF_UP))  # up, no port up: no carrier
    assert not view.snapshot(1, "dump").bridge_carrier
    view.apply(link(2, "cloudbr0", IFF_UP | IFF_LOWER_UP))  # operstate not up yet
    assert not view.snapshot(1, "events").bridge_carrier
    view.apply(link(2, "cloudbr0", CARRIER))  # the first port up: no resync needed
    snap = view.snapshot(1, "events")
    assert snap.bridge_carrier and snap.changed is None  # every prefix judged again


def test_carrier_lost_resyncs_and_the_dump_says_so() -> None:
    view = KernelView("cloudbr0")
    view.apply(link(2, "cloudbr0", CARRIER))
    assert view.snapshot(1, "dump").bridge_carrier
    with pytest.raises(Resync, match="cloudbr0 went down"):
        view.apply(link(2, "cloudbr0", IFF_UP))
    fresh = KernelView("cloudbr0")
    fresh.apply(link(2, "cloudbr0", IFF_UP))
    assert not fresh.snapshot(2, "resync").bridge_carrier


def test_no_bridge_no_carrier() -> None:
    view = KernelView("cloudbr0")
    view.apply(link(3, "eth0", CARRIER))
    assert not view.snapshot(1, "dump").bridge_carrier
