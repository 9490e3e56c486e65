"""The grpc driver's pieces around a zebra restart: registry wiring, pure decisions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from frrctl.frr import registry
from frrctl.frr.staticd import StaticdDriver


def test_grpc_host_with_ospfv3_gets_the_ospf6d_check(tmp_path: Path) -> None:
    spec = registry.AnnouncerSpec(bridge="cloudbr0", vty_dir=tmp_path, asn=64512)
    plain = registry.make_announcer("grpc", spec)
    assert isinstance(plain, StaticdDriver) and not plain.ospf6
    assert plain.redistribution_lost({}) is None
    v3 = registry.make_announcer("grpc", dataclasses.replace(spec, ospf_versions=(4, 6)))
    assert isinstance(v3, StaticdDriver) and v3.ospf6 and v3.bgp
    v2 = registry.make_announcer("grpc", dataclasses.replace(spec, ospf_versions=(4,)))
    assert isinstance(v2, StaticdDriver) and not v2.ospf6
    only = dataclasses.replace(spec, runs_bgp=False, ospf_versions=(6,), asn=None)
    carried = registry.make_announcer("grpc", only)
    assert isinstance(carried, StaticdDriver) and carried.ospf6 and not carried.bgp
