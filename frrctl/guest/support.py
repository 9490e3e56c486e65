"""Which frrctl output each guest family reads, and what is known not to work.

Facts from cloud-init 22.4 (Debian 12) rendering frrctl's output and the guest's own tool
applying it in a network namespace (tests/guest/test_guest_apply.py proves every supported
row for dual-stack, IPv4-only and IPv6-only guests).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Support:
    renderer: str  # cloud-init's renderer on the guest: eni, networkd, netplan, sysconfig
    source: str  # frrctl guest-config --format: network-data or netplan
    supported: bool
    note: str


MATRIX: tuple[Support, ...] = (
    Support("eni", "network-data", True, "Debian with ifupdown (the ConfigDrive path)"),
    Support(
        "networkd",
        "network-data",
        True,
        "systemd-networkd guests; cloud-init 22.4 writes no IPv6AcceptRA=no (only with "
        "DHCPv6), so the guest would accept an RA and waits ~13 s for one before it is "
        "'configured': the host sends none and the port guard drops RAs from VMs",
    ),
    Support(
        "netplan",
        "netplan",
        True,
        "netplan guests (Ubuntu): v2 passed through; netplan 0.106 warns that gateway4 "
        "and gateway6 are deprecated, and applies them",
    ),
    Support("netplan", "network-data", True, "netplan guests booted from a ConfigDrive"),
    Support("eni", "netplan", True, "ifupdown from v2: gateway4/gateway6 as ENI `gateway`"),
    Support(
        "networkd",
        "netplan",
        True,
        "networkd from v2: as from network-data (RAs and the ~13 s wait alike)",
    ),
    Support(
        "sysconfig",
        "network-data",
        False,
        "RHEL family: GATEWAY=169.254.0.1 lies outside the /32 (ifcfg has no onlink) and "
        "IPV6_DEFAULTGW=fe80::1 names no device, so neither default route works; not "
        "applied here (Debian has neither network-scripts nor NetworkManager's ifcfg-rh); "
        "configure such guests with --format ip (e.g. from user data)",
    ),
    Support("sysconfig", "netplan", False, "as for network-data (same renderer)"),
)


def ra_refused(renderer: str, source: str, has_v6: bool) -> bool:
    """Whether the config a guest applies refuses router advertisements.

    cloud-init reads accept-ra: false from network_data.json only when it has an IPv6
    network (an IPv4-only guest keeps the kernel's or networkd's default, which accepts);
    ifupdown's `inet6 static` writes accept_ra=0 (an IPv4-only guest has none);
    cloud-init 22.4's networkd renderer never writes IPv6AcceptRA=no for static
    addresses; netplan writes it from accept-ra, which frrctl's v2 always sets.
    """
    if renderer == "networkd":
        return False
    if renderer == "netplan" and source == "netplan":
        return True
    return has_v6


def help_text(width: int = 88) -> str:
    """The support table for `guest-config --help` (and the README)."""
    lines = ["Guest renderer (cloud-init 22.4) <- --format, applied for real by the test suite:"]
    for row in MATRIX:
        status = "supported" if row.supported else "UNSUPPORTED"
        head = f"  {row.renderer} <- {row.source}: {status}. "
        lines += textwrap.wrap(head + row.note, width, subsequent_indent="      ")
    lines += textwrap.wrap(
        "  RAs: refused where the guest has IPv6 (accept-ra: false), except by networkd; "
        "an IPv4-only guest keeps its default, except netplan from v2. windows: PowerShell, "
        "not applied by the test suite.",
        width,
        subsequent_indent="      ",
    )
    return "\n".join(lines)
