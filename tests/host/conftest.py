"""Throw-away network namespaces for the host data plane tests (need root).

Every namespace carries a unique `fh-<hex>-` prefix and is deleted at the end
of the test, also when it fails. frrctl runs as a subprocess inside the host
namespace exactly as the lab and a hypervisor hook call it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "ping"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return None


needs_root = pytest.mark.skipif(bool(_skip_reason()), reason=_skip_reason() or "")


def sh(
    *argv: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class Guest:
    ns: str
    port: str
    mac: str
    v4: str | None
    v6: str | None

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def ping(self, target: str, source: str | None = None, tries: int = 3) -> bool:
        """True when one of `tries` single pings is answered (no timing asserted)."""
        cmd = ["ping", "-n", "-c", "1", "-W", "2"]
        if source:
            cmd += ["-I", source]
        return any(self.run(*cmd, target, check=False).returncode == 0 for _ in range(tries))


@dataclass
class HostNs:
    prefix: str
    ns: str
    state_dir: Path
    guests: list[Guest] = field(default_factory=list)
    extra_ns: list[str] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def frrctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`frrctl ARGV --state-dir S` inside the host namespace."""
        cmd = [sys.executable, "-m", "frrctl.cli", *argv]
        if argv and argv[0] in ("host", "instance"):
            cmd += ["--state-dir", str(self.state_dir)]
        return self.run(*cmd, check=check)

    def frrctl_json(self, *argv: str) -> Any:
        return json.loads(self.frrctl(*argv, "--json").stdout)

    def snapshot(self) -> dict[str, Any]:
        """Kernel routes and neighbours of the namespace, for 'nothing changed' checks."""
        out = {}
        for fam in ("-4", "-6"):
            routes = json.loads(self.run("ip", "-j", fam, "route", "show", "table", "all").stdout)
            # the kernel's own ff00::/8 appears once a link had carrier: not ours
            out[f"route{fam}"] = sorted(
                json.dumps(r, sort_keys=True) for r in routes if r.get("type") != "multicast"
            )
            out[f"neigh{fam}"] = sorted(
                json.dumps(n, sort_keys=True)
                for n in json.loads(
                    self.run("ip", "-j", fam, "neigh", "show", "nud", "permanent").stdout
                )
            )
        out["nft"] = self.run("nft", "list", "table", "netdev", "frrctl", check=False).stdout
        return out

    def add_guest(
        self, tag: str, mac: str, v4: str | None, v6: str | None, configure: bool = True
    ) -> Guest:
        """A VM namespace whose eth0 is a veth; the other end (the port) is in the host ns."""
        gns = f"{self.prefix}-{tag}"
        port = f"{self.prefix[-6:]}{tag}"[:15]
        sh("ip", "netns", "add", gns)
        self.extra_ns.append(gns)
        sh("ip", "link", "add", port, "netns", self.ns, "type", "veth", "peer", "name", "eth0",
           "netns", gns)  # fmt: skip
        g = Guest(gns, port, mac, v4, v6)
        g.run("ip", "link", "set", "lo", "up")
        g.run("ip", "link", "set", "eth0", "address", mac)
        if configure:
            configure_guest(g)
        self.guests.append(g)
        return g


def configure_guest(g: Guest) -> None:
    """Exactly what a VM gets from its ConfigDrive: /32, /128 nodad, on-link gateways."""
    g.run("ip", "link", "set", "eth0", "up")
    if g.v4:
        g.run("ip", "addr", "add", f"{g.v4}/32", "dev", "eth0")
        g.run("ip", "route", "add", "default", "via", "169.254.0.1", "dev", "eth0", "onlink")
    if g.v6:
        g.run("ip", "addr", "add", f"{g.v6}/128", "dev", "eth0", "nodad")
        g.run("ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")


@pytest.fixture
def hostns(tmp_path: Path) -> Iterator[HostNs]:
    if reason := _skip_reason():
        pytest.skip(reason)
    prefix = f"fh-{secrets.token_hex(3)}"
    host = HostNs(prefix, f"{prefix}-hv", tmp_path / "state")
    sh("ip", "netns", "add", host.ns)
    try:
        yield host
    finally:
        for ns in [*host.extra_ns, host.ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
