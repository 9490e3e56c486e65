"""Input checks shared by the host commands: one clear UsageError per bad value."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from frrctl.errors import UsageError
from frrctl.pools import IPAddress

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")


def parse_name(text: str) -> str:
    if not NAME_RE.match(text or ""):
        raise UsageError(
            f"instance name {text!r} is invalid (1-128 of letters, digits, '_.:@-', "
            "starting with a letter or digit)"
        )
    return text


def parse_ifname(text: str, what: str = "interface") -> str:
    if not IFNAME_RE.match(text or "") or text in (".", ".."):
        raise UsageError(f"{what} name {text!r} is invalid (1-15 characters)")
    return text


def parse_mac(text: str) -> str:
    """A unicast MAC in lower-case colon form; multicast and all-zero MACs are refused."""
    raw = (text or "").strip().lower()
    if not MAC_RE.match(raw):
        raise UsageError(
            f"MAC {text!r} is malformed (expected six hex octets, e.g. 52:54:00:12:34:56)"
        )
    mac = raw.replace("-", ":")
    first = int(mac[:2], 16)
    if first & 1:
        raise UsageError(f"MAC {mac} is a multicast/broadcast address")
    if mac == "00:00:00:00:00:00":
        raise UsageError("MAC 00:00:00:00:00:00 is not a valid VM address")
    return mac


def parse_host_address(text: str) -> IPAddress:
    """`192.0.2.30`, `192.0.2.30/32`, `2001:db8::5/128`; anything else is refused."""
    raw = (text or "").strip()
    try:
        if "/" in raw:
            net = ipaddress.ip_network(raw, strict=False)
            if net.prefixlen != net.max_prefixlen:
                raise UsageError(
                    f"{raw!r} is not a host address: give a /{net.max_prefixlen} "
                    "(a VM gets single addresses, never a subnet)"
                )
            addr: IPAddress = net.network_address
        else:
            addr = ipaddress.ip_address(raw)
    except ValueError:
        raise UsageError(f"{text!r} is not an IPv4 or IPv6 address") from None
    if (
        addr.is_unspecified
        or addr.is_multicast
        or addr.is_loopback
        or addr.is_link_local
        or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255"))
    ):
        raise UsageError(
            f"{addr} cannot be a VM address (unspecified, multicast, loopback or link-local)"
        )
    return addr


def parse_addresses(texts: Iterable[str]) -> tuple[IPAddress, ...]:
    """Parsed, de-duplicated, sorted (IPv4 first); at least one is required."""
    seen: dict[IPAddress, None] = {}
    for text in texts:
        seen[parse_host_address(text)] = None
    if not seen:
        raise UsageError("give at least one --ip address")
    return tuple(sorted(seen, key=lambda a: (a.version, int(a))))


def eui64_link_local(mac: str) -> ipaddress.IPv6Address:
    """The link-local address a guest derives from its MAC (modified EUI-64)."""
    octets = [int(x, 16) for x in mac.split(":")]
    octets[0] ^= 0x02
    iid = [*octets[:3], 255, 254, *octets[3:]]
    return ipaddress.IPv6Address(bytes([0xFE, 0x80] + [0] * 6 + iid))
