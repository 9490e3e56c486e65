"""Render -> check -> atomic write (frrctl.pipeline), with FRR's real parser where present."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from frrctl.errors import CheckError
from frrctl.frrcheck import check_config
from frrctl.inventory import load_inventory
from frrctl.pipeline import publish, write_rendered

ROOT = Path(__file__).resolve().parents[2]
FLEET = load_inventory(ROOT / "examples" / "fleet.yaml")


def test_publish_writes_each_host_and_leaves_unchanged_files_alone(tmp_path: Path) -> None:
    first = publish(FLEET, lambda host: tmp_path / host, check=False)
    assert {w.host for w in first} == {"hv1", "hv2", "hv3", "hv4"} and all(w.changed for w in first)
    conf = tmp_path / "hv1" / "frr.conf"
    stamp = conf.stat().st_mtime_ns
    again = publish(FLEET, lambda host: tmp_path / host, check=False)
    assert not any(w.changed for w in again) and conf.stat().st_mtime_ns == stamp
    conf.write_text("edited by hand\n")
    only = publish(FLEET, lambda host: tmp_path / host, only="hv1", check=False)
    assert [w.path.name for w in only if w.changed] == ["frr.conf"]
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind


def test_write_rendered_targets_one_directory_per_host(tmp_path: Path) -> None:
    out = write_rendered({"hvX": {"etc/a": "1\n"}}, {"hvX": tmp_path / "x"})
    assert (tmp_path / "x" / "etc" / "a").read_text() == "1\n" and out[0].changed


@pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs FRR's vtysh")
def test_a_config_frr_refuses_is_one_line_naming_the_host(tmp_path: Path) -> None:
    with pytest.raises(CheckError) as exc:
        check_config("router bgp 65001\n neighbor 192.0.2.1 frobnicate\n", "hvX/frr.conf")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("hvX/frr.conf: rejected")
    assert "frobnicate" in str(exc.value)
