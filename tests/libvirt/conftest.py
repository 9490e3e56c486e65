"""Fixtures for the libvirt agent tests (see lvharness.py); module-scoped: one boot is ~5 s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from frrctl.guest import tinyvm
from tests.conftest import ROOT
from tests.libvirt.lvharness import LvHost, lv_hosts, skip_reason


@pytest.fixture(scope="session")
def guest_image() -> Path:
    if reason := skip_reason():
        pytest.skip(reason)
    return tinyvm.ensure_image(ROOT)  # runs lab/build-guest.sh: cached, rebuilt on a new recipe


@pytest.fixture(scope="module")
def lvhost(guest_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LvHost]:
    with lv_hosts(guest_image, tmp_path_factory.mktemp("lv"), 1) as (host,):
        host.start_agent()
        yield host


@pytest.fixture(scope="module")
def lvpair(guest_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LvHost]]:
    with lv_hosts(guest_image, tmp_path_factory.mktemp("lvm"), 2) as hosts:
        for h in hosts:
            h.start_agent()
        yield hosts
