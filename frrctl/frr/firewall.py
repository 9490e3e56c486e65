"""Close FRR's gRPC port to everything but the host itself.

FRR 8.4's gRPC module (`-M grpc:PORT`) listens on every address without TLS
or authentication: anyone who reaches the port can rewrite bgpd's filters.
The daemon (driver grpc) therefore installs, in the host's network
namespace, an nftables table of its own that drops TCP to the port unless it
arrives on the loopback interface. It replaces the whole table atomically
each time, so it is idempotent, and touches no other table.
"""

from __future__ import annotations

import shutil
import subprocess

from frrctl.frr.base import DriverError

TABLE = "frrctl_grpc_guard"


def ruleset(port: int, table: str = TABLE) -> str:
    """One nft transaction: (re)create the table with the input guard (pure)."""
    if not 1 <= port <= 65535:
        raise ValueError(f"bad port {port}")
    return f"""table inet {table}
delete table inet {table}
table inet {table} {{
    chain input {{
        type filter hook input priority -150; policy accept;
        iifname != "lo" tcp dport {port} counter drop
    }}
}}
"""


def guard_grpc_port(port: int, table: str = TABLE) -> None:
    """Install the guard; DriverError with nft's message if it cannot."""
    nft = shutil.which("nft")
    if nft is None:
        raise DriverError(
            f"nft not found: cannot close gRPC port {port} to the outside "
            "(install nftables, or firewall the port yourself and pass --no-grpc-guard)"
        )
    result = subprocess.run(
        [nft, "-f", "-"], input=ruleset(port, table), capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0:
        raise DriverError(f"nft refused the gRPC port guard: {result.stderr.strip()}")
