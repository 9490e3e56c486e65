"""The daemon's memory starts with what it imports: `frrctl daemon` with the
vtysh driver must not load the renderer, the lab, pyroute2 or gRPC (the whole
CLI parser alone took 60 MB of RSS, the daemon's own modules ~28 MB)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pyroute2", "grpc", "jinja2", "frrctl.lab", "frrctl.render", "frrctl.host.netlink")

PROBE = """
import sys
from frrctl import cli
try:
    cli.main(["daemon", "--help"])
except SystemExit:
    pass
import frrctl.daemon, frrctl.inventory
from frrctl.frr.vtysh import VtyshDriver
print(" ".join(sorted(m for m in sys.modules if m.startswith(HEAVY))))
"""


def test_frrctl_daemon_imports_nothing_heavy() -> None:
    code = f"HEAVY = {HEAVY!r}\n{PROBE}"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.splitlines()[-1] == ""


def test_other_commands_still_get_the_whole_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "frrctl.cli", "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    for command in ("render", "lab", "host", "daemon", "libvirt"):
        assert command in out
