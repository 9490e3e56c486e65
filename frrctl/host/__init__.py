"""Host data plane: the routed VM bridge, per-VM host routes and neighbours, filters.

Side effects live in thin layers (`netlink`, `nft`, `sysctl` writes); what to
change is decided by pure functions that the unit tests exercise directly.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

DEFAULT_BRIDGE = "cloudbr0"
DEFAULT_STATE_DIR = Path("/var/lib/frrctl")
GATEWAY4 = ipaddress.IPv4Address("169.254.0.1")
GATEWAY6 = ipaddress.IPv6Address("fe80::1")


def state_dir_default() -> Path:
    return Path(os.environ.get("FRRCTL_STATE_DIR") or DEFAULT_STATE_DIR)
