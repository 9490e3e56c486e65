"""Address pools: loose sets of host addresses with no subnet to waste.

A pool entry is a single address (`192.0.2.7`), a prefix (`192.0.2.0/26`,
every address usable, no network or broadcast reserved) or an inclusive range
(`192.0.2.100-192.0.2.120`). IPv4 and IPv6 are kept apart. The same model
serves the inventory (what may ever be announced), the FRR prefix-lists
(`ge 32` / `ge 128` guards), the announcement policy and the allocator, so
they all agree on what "in the pool" means.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class _HashOnce:
    """An ipaddress network that computes its hash once. The daemon uses
    prefixes as dict and set keys many times per burst, and ipaddress derives
    the hash from two int conversions on every call (~3x slower)."""

    __slots__ = ()

    def __hash__(self) -> int:
        cache = self.__dict__  # ipaddress networks have one (cached_property)
        try:
            return cache["_hash"]
        except KeyError:
            value: int = super().__hash__()
            cache["_hash"] = value
            return value

    def __str__(self) -> str:
        # From the packed address with the C library (~3x cheaper than
        # ipaddress's formatting): the vtysh driver writes one per change.
        net: Any = self
        value = net.network_address._ip
        if net._version == 4:
            return f"{socket.inet_ntoa(value.to_bytes(4, 'big'))}/{net._prefixlen}"
        if value >> 64:  # glibc's embedded-IPv4 forms all have the upper 64 bits zero
            text = socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))
            return f"{text}/{net._prefixlen}"
        return str(super().__str__())

    # ipaddress's __init__ stores a closure as `hosts` in every /31, /32, /127
    # and /128 it makes (~130 bytes each; the daemon holds 10,000s of /32s).
    # This data descriptor takes that assignment and answers the same when asked.
    @property
    def hosts(self) -> Any:
        net: Any = self
        if net.prefixlen == net.max_prefixlen:
            return lambda: [net.network_address]
        if net.prefixlen == net.max_prefixlen - 1:
            return net.__iter__
        return super().hosts  # type: ignore[misc]

    @hosts.setter
    def hosts(self, _value: Any) -> None:
        pass


class Prefix4(_HashOnce, ipaddress.IPv4Network):
    """IPv4Network, equal to and hashed like one, with its hash computed once."""


class Prefix6(_HashOnce, ipaddress.IPv6Network):
    """IPv6Network, equal to and hashed like one, with its hash computed once."""


def parse_network(text: str, strict: bool = True) -> IPNetwork:
    """ipaddress.ip_network for text, as Prefix4/Prefix6."""
    try:
        return Prefix4(text, strict)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError):
        pass
    try:
        return Prefix6(text, strict)
    except (ipaddress.AddressValueError, ipaddress.NetmaskValueError):
        pass
    raise ValueError(f"{text!r} does not appear to be an IPv4 or IPv6 network")


def network_of(address: IPAddress, length: int) -> IPNetwork:
    """The network `address`/`length` (host bits cleared), as Prefix4/Prefix6."""
    return network_from_int(address.version, int(address), length)


def network_from_int(version: int, value: int, length: int) -> IPNetwork:
    """The network `value`/`length` (host bits cleared), as Prefix4/Prefix6,
    built without ipaddress's parser: ~4x cheaper, and the netlink watcher
    makes one per new route (10,000 in a burst). Equal, hashed and printed
    like ipaddress's own (a unit test compares them on random networks)."""
    try:
        cls, address_class, netmask, mask = _NETMASKS[version, length]
    except KeyError:
        raise ValueError(f"/{length} is not an IPv{version} prefix length") from None
    if value < 0 or value >> (32 if version == 4 else 128):
        raise ValueError(f"{value} is not an IPv{version} address")
    value &= mask
    address = object.__new__(address_class)  # IPv4Address(value) minus its checks
    address._ip = value
    if version == 6:
        address._scope_id = None
    net = object.__new__(cls)
    net.__dict__.update(network_address=address, netmask=netmask, _prefixlen=length,
                        _hash=hash(value ^ mask))  # fmt: skip  # _hash: ipaddress's hash
    return net


def _netmasks() -> dict[tuple[int, int], tuple[Any, Any, Any, int]]:
    table: dict[tuple[int, int], tuple[Any, Any, Any, int]] = {}
    for version, cls, address_class in ((4, Prefix4, ipaddress.IPv4Address),
                                        (6, Prefix6, ipaddress.IPv6Address)):  # fmt: skip
        for length in range((32 if version == 4 else 128) + 1):
            netmask = cls(f"{'0.0.0.0' if version == 4 else '::'}/{length}").netmask
            table[version, length] = (cls, address_class, netmask, int(netmask))
    return table


_NETMASKS = _netmasks()


@dataclass(frozen=True, order=True)
class PoolEntry:
    """An inclusive range of addresses of one IP version."""

    version: int
    first: int
    last: int
    text: str

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return address.version == self.version and self.first <= int(address) <= self.last

    def overlaps(self, other: PoolEntry) -> bool:
        return (
            self.version == other.version and self.first <= other.last and other.first <= self.last
        )

    def prefixes(self) -> list[IPNetwork]:
        """The smallest list of prefixes covering exactly this range."""
        if self.version == 4:
            lo: IPAddress = ipaddress.IPv4Address(self.first)
            hi: IPAddress = ipaddress.IPv4Address(self.last)
        else:
            lo = ipaddress.IPv6Address(self.first)
            hi = ipaddress.IPv6Address(self.last)
        return list(ipaddress.summarize_address_range(lo, hi))

    def addresses(self) -> Iterator[IPAddress]:
        cls = ipaddress.IPv4Address if self.version == 4 else ipaddress.IPv6Address
        for value in range(self.first, self.last + 1):
            yield cls(value)


def parse_entry(text: str) -> PoolEntry:
    """Parse one pool entry; raise ValueError with a message that names it."""
    raw = str(text).strip()
    try:
        if "-" in raw:
            lo_text, hi_text = (part.strip() for part in raw.split("-", 1))
            lo = ipaddress.ip_address(lo_text)
            hi = ipaddress.ip_address(hi_text)
            if lo.version != hi.version:
                raise ValueError(f"range {raw!r} mixes IPv4 and IPv6")
            if int(hi) < int(lo):
                raise ValueError(f"range {raw!r} ends before it starts")
            return PoolEntry(lo.version, int(lo), int(hi), raw)
        if "/" in raw:
            net = ipaddress.ip_network(raw, strict=True)
            return PoolEntry(net.version, int(net.network_address), int(net.broadcast_address), raw)
        addr = ipaddress.ip_address(raw)
        return PoolEntry(addr.version, int(addr), int(addr), raw)
    except ValueError as exc:
        if str(exc).startswith("range "):
            raise
        raise ValueError(f"{raw!r} is not an address, prefix or range ({exc})") from None


def check_no_overlap(entries: Iterable[PoolEntry]) -> None:
    """Raise ValueError naming the first two entries that overlap."""
    ordered = sorted(entries)
    for before, after in itertools.pairwise(ordered):
        if before.overlaps(after):
            raise ValueError(f"pool entries {before.text!r} and {after.text!r} overlap")


@dataclass(frozen=True)
class Pools:
    """The announceable address space of a fabric or host, per IP version."""

    ipv4: tuple[PoolEntry, ...] = ()
    ipv6: tuple[PoolEntry, ...] = ()

    @classmethod
    def parse(cls, ipv4: Iterable[str] = (), ipv6: Iterable[str] = ()) -> Pools:
        v4 = tuple(sorted(parse_entry(t) for t in ipv4))
        v6 = tuple(sorted(parse_entry(t) for t in ipv6))
        for entry in v4:
            if entry.version != 4:
                raise ValueError(f"{entry.text!r} is IPv6 but listed under ipv4")
        for entry in v6:
            if entry.version != 6:
                raise ValueError(f"{entry.text!r} is IPv4 but listed under ipv6")
        check_no_overlap(v4)
        check_no_overlap(v6)
        return cls(v4, v6)

    def entries(self, version: int) -> tuple[PoolEntry, ...]:
        return self.ipv4 if version == 4 else self.ipv6

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            try:
                address = ipaddress.ip_address(address)
            except ValueError:
                return False
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return self.holds(address.version, int(address))

    def contains_host_route(self, prefix: IPNetwork) -> bool:
        """True when `prefix` is a /32 or /128 whose address is in the pools."""
        return prefix.prefixlen == prefix.max_prefixlen and self.holds(
            prefix.version, int(prefix.network_address)
        )

    def holds(self, version: int, value: int) -> bool:
        """Whether the address `value` of IP `version` is in the pools."""
        # The policy asks this for every prefix of a burst: plain ints, and the
        # entries are sorted and disjoint, so the walk stops early.
        for entry in self.ipv4 if version == 4 else self.ipv6:
            if value < entry.first:
                return False
            if value <= entry.last:
                return True
        return False

    def prefixes(self, version: int) -> list[IPNetwork]:
        """Prefixes covering the pools exactly, sorted, for `ge 32`/`ge 128` lists."""
        nets: list[IPNetwork] = []
        for entry in self.entries(version):
            nets.extend(entry.prefixes())
        return sorted(nets, key=lambda n: (int(n.network_address), n.prefixlen))

    def is_empty(self) -> bool:
        return not self.ipv4 and not self.ipv6
