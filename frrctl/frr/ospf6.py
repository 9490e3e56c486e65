"""ospf6d's own view of what it redistributes (pure parsing)."""

from __future__ import annotations

import contextlib
import ipaddress

from frrctl.pools import IPNetwork


def parse_redistributed(text: str, kind: str = "S") -> set[IPNetwork]:
    """Prefixes of the `S ...` (static; `K`: kernel) lines of `show ipv6 ospf6 redistribute`."""
    out: set[IPNetwork] = set()
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == kind:
            with contextlib.suppress(ValueError):
                out.add(ipaddress.ip_network(words[1]))
    return out
