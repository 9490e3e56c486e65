"""Netlink watcher: the kernel's routes, neighbours and addresses on the bridge.

One long-lived NETLINK_ROUTE socket, subscribed to link, address, route and
neighbour groups for IPv4 and IPv6, serves both the dumps and the events. A
burst of events is gathered until the socket has been quiet for `window`
seconds (at most `max_window` after the first event) and then reported as one
snapshot. Whenever the view could be wrong - the socket overran (ENOBUFS), a
dump was interrupted (NLM_F_DUMP_INTR), the bridge was deleted, re-created or
went down (the kernel flushes such routes without telling) - the watcher
throws its view away and dumps everything again.

The messages are decoded and built with struct (no pyroute2: see below); the
socket is a plain one so that select(), the receive buffer and ENOBUFS are
under our control. `KernelView`
(pure: messages in, state out) is unit-testable without a kernel.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import itertools
import logging
import operator
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from frrctl.policy import FRR_PROTOCOLS, MAIN_TABLE, KernelRoute, canonical_of
from frrctl.pools import IPAddress, IPNetwork

log = logging.getLogger(__name__)

# linux/netlink.h and linux/rtnetlink.h. The messages are decoded and built
# here with struct: pyroute2's package import alone costs the daemon ~13 MB of
# memory and ~0.4 s at start (it loads its NDB, IPDB, asyncio, conntrack).
NLM_F_REQUEST = 0x1
NLM_F_DUMP_INTR = 0x10
NLM_F_REPLACE = 0x100
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400


class NetlinkDumpInterrupted(Exception):
    """The kernel flagged a dump NLM_F_DUMP_INTR: its tables changed meanwhile."""


GROUPS = (
    RTMGRP_LINK
    | RTMGRP_NEIGH
    | RTMGRP_IPV4_IFADDR
    | RTMGRP_IPV6_IFADDR
    | RTMGRP_IPV4_ROUTE
    | RTMGRP_IPV6_ROUTE
)
LOCAL_TABLE = 255
RTM_F_CLONED = 0x200
NUD_PERMANENT = 0x80
IFF_UP = 0x1
IFF_RUNNING = 0x40  # operstate up (or unknown): what zebra's if_is_operative reads
IFF_LOWER_UP = 0x10000  # carrier
_RTN_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
              6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}  # fmt: skip
_AF_INET, _AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)  # plain ints, not enum members
# A KernelRoute from a 7-tuple in C (NamedTuple's constructor is Python code)
_kernel_route: Callable[[tuple[Any, ...]], KernelRoute] = functools.partial(
    tuple.__new__, KernelRoute
)
# family, dst, dst_len, table, metric, tos, oif: the kernel's route identity plus oif
RouteKey = tuple[int, int, int, int, int, int, int]


_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE, RTA_VIA = (
    1,
    4,
    5,
    6,
    9,
    15,
    18,
)


class RouteMessage(dict):
    """An RTM_NEWROUTE/RTM_DELROUTE decoded with struct: the few fields and
    attributes KernelView reads, with pyroute2's message interface. pyroute2's
    generic decoder costs ~0.2 ms per message, too slow for 10,000 routes."""

    def __init__(self, fields: dict[str, Any], attrs: dict[str, Any]) -> None:
        super().__init__(fields)
        self._attrs = attrs

    def get_attr(self, name: str) -> Any:
        return self._attrs.get(name)


def _addr(family: int, raw: bytes) -> IPAddress:
    # From the packed bytes: ~5x cheaper than parsing the text form.
    return ipaddress.IPv4Address(raw) if family == socket.AF_INET else ipaddress.IPv6Address(raw)


def _header(data: bytes | memoryview, offset: int, length: int) -> dict[str, Any]:
    """The netlink header, in pyroute2's field names."""
    _, kind, flags, seq, pid = _NLMSGHDR.unpack_from(data, offset)
    return {"length": length, "type": kind, "flags": flags, "sequence_number": seq,
            "pid": pid, "error": None}  # fmt: skip


def _attributes(data: bytes | memoryview, pos: int, end: int) -> Iterator[tuple[int, bytes]]:
    """(type, value) of each rtattr between `pos` and `end`."""
    while pos + 4 <= end:
        alen, atype = _RTATTR.unpack_from(data, pos)
        if alen < 4:
            return
        yield atype & 0x3FFF, bytes(data[pos + 4 : pos + alen])  # drop NLA_F_NESTED etc.
        pos += (alen + 3) & ~3


def parse_route(data: bytes | memoryview, offset: int, length: int) -> RouteMessage:
    """Decode one route message at `offset` (header included) of `length` bytes."""
    family, dst_len, _, tos, table, proto, _, rtype, rflags = _RTMSG.unpack_from(data, offset + 16)
    attrs: dict[str, Any] = {}
    for atype, value in _attributes(data, offset + 16 + _RTMSG.size, offset + length):
        if atype == RTA_DST and len(value) in (4, 16):
            attrs["RTA_DST"] = _addr(family, value)
        elif atype == RTA_OIF:
            attrs["RTA_OIF"] = _U32.unpack(value)[0]
        elif atype == RTA_GATEWAY and len(value) in (4, 16):
            attrs["RTA_GATEWAY"] = _addr(family, value)
        elif atype == RTA_PRIORITY:
            attrs["RTA_PRIORITY"] = _U32.unpack(value)[0]
        elif atype == RTA_TABLE:
            attrs["RTA_TABLE"] = _U32.unpack(value)[0]
        elif atype == RTA_MULTIPATH:
            attrs["RTA_MULTIPATH"] = [value]
        elif atype == RTA_VIA and len(value) in (6, 18):
            via_family = int.from_bytes(value[:2], "little")
            attrs["RTA_VIA"] = {"family": via_family, "addr": _addr(via_family, value[2:])}
    fields = {"header": _header(data, offset, length), "family": family, "dst_len": dst_len,
              "tos": tos, "table": table, "proto": proto, "type": rtype,
              "flags": rflags}  # fmt: skip
    return RouteMessage(fields, attrs)


class RouteEvent(NamedTuple):
    """What KernelView needs of one route message, in plain fields."""

    new: bool
    replace: bool  # NLM_F_REPLACE
    family: int
    dst: int | None  # the destination address as an int; None: the default route
    dst_len: int
    tos: int
    table: int  # RTA_TABLE, else the header's
    proto: int
    rtype: int
    cloned: bool  # RTM_F_CLONED: a cache entry, not a route
    oif: int
    metric: int
    multipath: bool
    gateway: str | IPAddress | None  # RTA_GATEWAY, else RTA_VIA's address


def route_event(msg: Any) -> RouteEvent:
    """A RouteEvent from a route message (ours or pyroute2's)."""
    gateway = msg.get_attr("RTA_GATEWAY")
    via = msg.get_attr("RTA_VIA")
    if gateway is None and via:
        gateway = via.get("addr") if hasattr(via, "get") else None
    dst = msg.get_attr("RTA_DST")
    return RouteEvent(
        new=msg["header"]["type"] == RTM_NEWROUTE,
        replace=bool(msg["header"]["flags"] & NLM_F_REPLACE),
        family=msg["family"],
        dst=None if dst is None else int(_address(dst)),
        dst_len=msg["dst_len"],
        tos=msg["tos"],
        table=msg.get_attr("RTA_TABLE") or msg["table"],
        proto=msg["proto"],
        rtype=msg["type"],
        cloned=bool(msg["flags"] & RTM_F_CLONED),
        oif=msg.get_attr("RTA_OIF") or 0,
        metric=msg.get_attr("RTA_PRIORITY") or 0,
        multipath=bool(msg.get_attr("RTA_MULTIPATH")),
        gateway=gateway,
    )


def decode_route_event(data: bytes | memoryview, offset: int, length: int) -> RouteEvent:
    """parse_route + route_event in one step, for the event stream: a burst of
    10,000 routes pays for no intermediate message objects."""
    if length in _HOST4:
        event = _host4(data, offset, length)
        if event is not None:
            return event
    _, kind, nlflags, _, _ = _NLMSGHDR.unpack_from(data, offset)
    family, dst_len, _, tos, table, proto, _, rtype, rflags = _RTMSG.unpack_from(data, offset + 16)
    dst = gateway = None
    oif = metric = 0
    multipath = False
    pos = offset + 16 + _RTMSG.size
    end = offset + length
    while pos + 4 <= end:
        alen, atype = _RTATTR.unpack_from(data, pos)
        if alen < 4:
            break
        atype &= 0x3FFF
        if atype == RTA_DST and alen in (8, 20):
            # an int, not an address object: the view keys routes by ints
            dst = int.from_bytes(data[pos + 4 : pos + alen], "big")
        elif atype == RTA_OIF:
            oif = _U32.unpack_from(data, pos + 4)[0]
        elif atype == RTA_PRIORITY:
            metric = _U32.unpack_from(data, pos + 4)[0]
        elif atype == RTA_TABLE:
            table = _U32.unpack_from(data, pos + 4)[0] or table  # as route_event reads it
        elif atype == RTA_GATEWAY and alen in (8, 20):
            gateway = _addr(family, bytes(data[pos + 4 : pos + alen]))
        elif atype == RTA_MULTIPATH:
            multipath = True
        elif atype == RTA_VIA and alen in (10, 22) and gateway is None:
            via_family = int.from_bytes(data[pos + 4 : pos + 6], "little")
            gateway = _addr(via_family, bytes(data[pos + 6 : pos + alen]))
        pos += (alen + 3) & ~3
    return _route_event((
        kind == RTM_NEWROUTE, bool(nlflags & NLM_F_REPLACE), family, dst, dst_len, tos, table,
        proto, rtype, bool(rflags & RTM_F_CLONED), oif, metric, multipath, gateway,
    ))  # fmt: skip


# A RouteEvent from a 14-tuple in C (see _kernel_route)
_route_event: Callable[[tuple[Any, ...]], RouteEvent] = functools.partial(tuple.__new__, RouteEvent)
# An IPv4 host route as the kernel announces one with no gateway, in one
# unpack: a burst of 10,000 VM routes is all of these. Without a metric it is
# 52 bytes (RTA_TABLE, RTA_DST, RTA_OIF), with one (`frrctl instance plug`
# sets it) 60 (RTA_PRIORITY before RTA_OIF). Anything else takes the loop.
# Fields: 0 kind, 1 flags, 2 family, 3 dst_len, 4 tos, 5 table, 6 proto,
# 7 type, 8 rtm flags, then per attribute its length, type and value (9-11
# RTA_TABLE, 12-14 RTA_DST as 4 bytes, 15-17 RTA_OIF or RTA_PRIORITY, 18-20
# RTA_OIF).
_HOST4_HEAD = "=4xHH8xBBxBBBxBIHHIHH4s"
_Layout = Callable[[tuple[Any, ...]], tuple[int, ...]]
# length -> (its struct, its layout fields, their expected values, where its
# metric is (None: no metric, 0), where its output interface is)
_HOST4: dict[int, tuple[struct.Struct, _Layout, tuple[int, ...], int | None, int]] = {
    52: (struct.Struct(_HOST4_HEAD + "HHI"),
         operator.itemgetter(2, 9, 10, 12, 13, 15, 16),
         (_AF_INET, 8, RTA_TABLE, 8, RTA_DST, 8, RTA_OIF), None, 17),
    60: (struct.Struct(_HOST4_HEAD + "HHIHHI"),
         operator.itemgetter(2, 9, 10, 12, 13, 15, 16, 18, 19),
         (_AF_INET, 8, RTA_TABLE, 8, RTA_DST, 8, RTA_PRIORITY, 8, RTA_OIF), 17, 20),
}  # fmt: skip


def _host4(data: bytes | memoryview, offset: int, length: int) -> RouteEvent | None:
    """decode_route_event for the layouts in _HOST4 (None: not one of them)."""
    shape, layout, expected, metric_at, oif_at = _HOST4[length]
    f = shape.unpack_from(data, offset)
    if layout(f) != expected:
        return None
    metric, oif = 0 if metric_at is None else f[metric_at], f[oif_at]
    return _route_event((
        f[0] == RTM_NEWROUTE, bool(f[1] & NLM_F_REPLACE), f[2], int.from_bytes(f[14], "big"),
        f[3], f[4], f[11] or f[5], f[6], f[7], bool(f[8] & RTM_F_CLONED), oif, metric, False, None,
    ))  # fmt: skip


_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NDA_DST = 1


def parse_neighbor(data: bytes | memoryview, offset: int, length: int) -> RouteMessage:
    """Decode one neighbour message the way parse_route does routes: a burst of
    10,000 plugged addresses brings 10,000 of these next to the routes."""
    family, ifindex, state, nflags, ntype = _NDMSG.unpack_from(data, offset + 16)
    attrs: dict[str, Any] = {}
    if family in (socket.AF_INET, socket.AF_INET6):  # AF_BRIDGE: fdb entries, no NDA_DST use
        for atype, value in _attributes(data, offset + 16 + _NDMSG.size, offset + length):
            if atype == NDA_DST and len(value) in (4, 16):
                attrs["NDA_DST"] = _addr(family, value)
    fields = {"header": _header(data, offset, length), "family": family, "ifindex": ifindex,
              "state": state, "flags": nflags, "ndm_type": ntype}  # fmt: skip
    return RouteMessage(fields, attrs)


_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_ERROR = struct.Struct("=i")
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
# body of a dump request per kind: the family byte, the rest of the struct zero
_REQUEST_BODY = {RTM_GETLINK: _IFINFOMSG.size, RTM_GETADDR: _IFADDRMSG.size,
                 RTM_GETROUTE: _RTMSG.size, RTM_GETNEIGH: _NDMSG.size}  # fmt: skip


def parse_link(data: bytes | memoryview, offset: int, length: int) -> RouteMessage:
    """Decode one link message: index, flags and IFLA_IFNAME are all KernelView reads."""
    family, ltype, index, lflags, _ = _IFINFOMSG.unpack_from(data, offset + 16)
    attrs: dict[str, Any] = {}
    for atype, value in _attributes(data, offset + 16 + _IFINFOMSG.size, offset + length):
        if atype == IFLA_IFNAME:
            attrs["IFLA_IFNAME"] = value.split(b"\0", 1)[0].decode(errors="replace")
    fields = {"header": _header(data, offset, length), "family": family, "ifi_type": ltype,
              "index": index, "flags": lflags}  # fmt: skip
    return RouteMessage(fields, attrs)


def parse_addr(data: bytes | memoryview, offset: int, length: int) -> RouteMessage:
    """Decode one address message (the bridge's own addresses)."""
    family, prefixlen, aflags, scope, index = _IFADDRMSG.unpack_from(data, offset + 16)
    attrs: dict[str, Any] = {}
    if family in (socket.AF_INET, socket.AF_INET6):
        for atype, value in _attributes(data, offset + 16 + _IFADDRMSG.size, offset + length):
            if atype == IFA_ADDRESS and len(value) in (4, 16):
                attrs["IFA_ADDRESS"] = _addr(family, value)
            elif atype == IFA_LOCAL and len(value) in (4, 16):
                attrs["IFA_LOCAL"] = _addr(family, value)
    fields = {"header": _header(data, offset, length), "family": family,
              "prefixlen": prefixlen, "flags": aflags, "scope": scope,
              "index": index}  # fmt: skip
    return RouteMessage(fields, attrs)


def parse_control(data: bytes | memoryview, offset: int, length: int) -> RouteMessage:
    """Any other message by its header (NLMSG_DONE, ...); NLMSG_ERROR with its
    `error` (a negative errno, 0 for an acknowledgement)."""
    header = _header(data, offset, length)
    fields: dict[str, Any] = {"header": header, "error": None}
    if header["type"] == NLMSG_ERROR and length >= 20:
        fields["error"] = _ERROR.unpack_from(data, offset + 16)[0]
    return RouteMessage(fields, {})


def dump_request(kind: int, family: int, seq: int) -> bytes:
    """An RTM_GET* dump request: the header and a zeroed body naming the family."""
    body = bytes([family]) + bytes(_REQUEST_BODY[kind] - 1)
    return _NLMSGHDR.pack(16 + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _address(value: str | IPAddress) -> IPAddress:
    """An address from our decoders (already an object) or pyroute2's (text)."""
    return ipaddress.ip_address(value) if isinstance(value, str) else value


class Resync(Exception):
    """The view can no longer be trusted; the message says why."""


@dataclass(frozen=True)
class KernelSnapshot:
    """What the policy needs from the kernel, at one moment."""

    bridge: str
    bridge_index: int | None
    bridge_up: bool
    routes: tuple[KernelRoute, ...]
    permanent_neighbors: frozenset[IPAddress]
    bridge_addresses: frozenset[str]
    generation: int  # counts full resyncs
    cause: str  # "initial dump", "events", "resync: ..."
    # The prefixes whose routes or neighbour entries changed since the previous
    # snapshot, each with its routes now (empty: gone); None after a resync or
    # a link or address change, when anything may have changed. It lets the
    # daemon judge a burst at the cost of what the burst touched.
    changed: Mapping[IPNetwork, tuple[KernelRoute, ...]] | None = None
    # The bridge has carrier: a bridge loses it when no port is up (a new
    # bridge that never had a port keeps it). zebra keeps a static route to an
    # interface without it inactive.
    bridge_carrier: bool = True


Keys = RouteKey | set[RouteKey]


def _keys(entry: Keys | None) -> Iterator[RouteKey]:
    if entry is None:
        return iter(())
    return iter(entry) if isinstance(entry, set) else iter((entry,))


def _index_add(index: dict[Any, Keys], at: Any, key: RouteKey) -> None:
    entry = index.get(at)
    if entry is None or entry == key:
        index[at] = key
    elif isinstance(entry, set):
        entry.add(key)
    else:
        index[at] = {entry, key}


def _index_discard(index: dict[Any, Keys], at: Any, key: RouteKey) -> None:
    entry = index.get(at)
    if entry is None:
        return
    if isinstance(entry, set):
        entry.discard(key)
        if len(entry) == 1:
            index[at] = next(iter(entry))
        elif not entry:
            del index[at]
    elif entry == key:
        del index[at]


@dataclass
class KernelView:
    """The kernel state that matters, kept current by applying netlink messages.

    Kept: every route on the bridge (any table but local) and every host route
    in the main table on any interface (a second route for a VM's address
    elsewhere must block its announcement); the bridge's addresses; its
    neighbour entries. `apply` raises Resync when the kernel may have changed
    things without telling.
    """

    bridge: str
    links: dict[int, str] = field(default_factory=dict)
    link_flags: dict[int, int] = field(default_factory=dict)
    routes: dict[RouteKey, KernelRoute] = field(default_factory=dict)  # key[6]: the oif
    neighbors: dict[tuple[int, IPAddress], int] = field(default_factory=dict)  # -> state
    permanent: set[IPAddress] = field(default_factory=set)  # permanent entries on the bridge
    addresses: dict[tuple[int, str], None] = field(default_factory=dict)
    # (family, dst, table, metric, tos) -> keys: the kernel's own route identity.
    # Both indexes hold a lone key as itself, a set only for two or more: a set
    # per route cost ~4.7 MB at 10,000 routes.
    by_base: dict[tuple[int, int, int, int, int, int], Keys] = field(default_factory=dict)
    by_prefix: dict[IPNetwork, Keys] = field(default_factory=dict)
    # touched since the last snapshot; None: everything (see KernelSnapshot.changed)
    dirty: set[IPNetwork] | None = None

    @property
    def bridge_index(self) -> int | None:
        for index, name in self.links.items():
            if name == self.bridge:
                return index
        return None

    def _usable(self, flags: int) -> bool:
        return bool(flags & IFF_UP and flags & IFF_LOWER_UP)

    @staticmethod
    def _carrier(flags: int) -> bool:
        return bool(flags & IFF_UP and flags & IFF_LOWER_UP and flags & IFF_RUNNING)

    def apply(self, msg: Any) -> None:
        if type(msg) is RouteEvent:
            self.route(msg)
            return
        kind = msg["header"]["type"]
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            self._link(msg, kind == RTM_NEWLINK)
        elif kind in (RTM_NEWROUTE, RTM_DELROUTE):
            self.route(route_event(msg))
        elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
            self._neighbor(msg, kind == RTM_NEWNEIGH)
        elif kind in (RTM_NEWADDR, RTM_DELADDR):
            self._address(msg, kind == RTM_NEWADDR)

    def _link(self, msg: Any, new: bool) -> None:
        self.dirty = None
        index = int(msg["index"])
        name = msg.get_attr("IFLA_IFNAME") or self.links.get(index, "")
        flags = int(msg["flags"])
        bridge_index = self.bridge_index
        if not new:
            self.links.pop(index, None)
            self.link_flags.pop(index, None)
            # The kernel flushes routes and neighbours of a deleted device silently.
            self._forget_device(index)
            if name == self.bridge or index == bridge_index:
                raise Resync(f"{self.bridge} deleted")
            return
        if name == self.bridge and bridge_index not in (None, index):
            raise Resync(f"{self.bridge} re-created (index {bridge_index} -> {index})")
        if index == bridge_index and name != self.bridge:
            self._forget_device(index)
            raise Resync(f"{self.bridge} renamed to {name}")
        if name == self.bridge and bridge_index == index:
            was = self.link_flags.get(index, flags)
            if self._usable(was) and not self._usable(flags):
                raise Resync(f"{self.bridge} went down")
        if index in self.link_flags and index != bridge_index:
            was = self.link_flags[index]
            if self._usable(was) != self._usable(flags) and any(k[6] == index for k in self.routes):
                raise Resync(f"{name} carrying host routes changed state")
        self.links[index] = name
        self.link_flags[index] = flags

    def _forget_device(self, index: int) -> None:
        for key in [k for k in self.routes if k[6] == index]:
            self._forget_route(key)
        for nkey in [k for k in self.neighbors if k[0] == index]:
            del self.neighbors[nkey]
            if index == self.bridge_index:
                self.permanent.discard(nkey[1])
        for akey in [k for k in self.addresses if k[0] == index]:
            del self.addresses[akey]

    def kept(self, ev: RouteEvent) -> RouteKey | None:
        """The key `route` would keep this (new) route under, or None: the
        audit's filter, the same as route()'s."""
        if ev.family not in (socket.AF_INET, socket.AF_INET6) or ev.cloned:
            return None
        if ev.table == LOCAL_TABLE:
            return None
        ifname = None if ev.multipath else self.links.get(ev.oif)
        host = ev.dst_len == (32 if ev.family == socket.AF_INET else 128)
        if not (ifname == self.bridge or (host and ev.table == MAIN_TABLE)):
            return None
        if ifname == self.bridge and ev.proto in FRR_PROTOCOLS:
            return None  # FRR's own output (see route())
        dst = 0 if ev.dst is None else ev.dst
        return (ev.family, dst, ev.dst_len, ev.table, ev.metric, ev.tos, ev.oif)

    def route(self, ev: RouteEvent) -> None:
        # (the hot path of a burst: plain ints, no calls it can do without)
        family = ev.family
        if (family != _AF_INET and family != _AF_INET6) or ev.cloned:
            return
        table = ev.table
        if table == LOCAL_TABLE:
            return
        dst_len = ev.dst_len
        oif = ev.oif
        ifname = None if ev.multipath else self.links.get(oif)
        on_bridge = ifname == self.bridge
        if not on_bridge and not (
            table == MAIN_TABLE and dst_len == (32 if family == _AF_INET else 128)
        ):
            return
        if on_bridge and ev.proto in FRR_PROTOCOLS:
            # zebra's copy of a staticd route (the gRPC driver's announcement,
            # proto static, metric 20), never a VM: it must not count as a
            # second route for the VM's prefix
            return
        dst = 0 if ev.dst is None else ev.dst
        # ints hash fast; an address object would hash through hex() each time
        key: RouteKey = (family, dst, dst_len, table, ev.metric, ev.tos, oif)
        base = key[:6]
        if not ev.new:
            self._forget_route(key)
            return
        if ev.replace:
            # `ip route replace` onto another device: the kernel's route key has
            # no output interface, so the entry on the old device is gone.
            for other in list(_keys(self.by_base.get(base))):
                if other != key:
                    self._forget_route(other)
        prefix = canonical_of(4 if family == _AF_INET else 6, dst, dst_len)
        if self.dirty is not None:
            self.dirty.add(prefix)
        gateway = ev.gateway
        self.routes[key] = _kernel_route((
            prefix, ifname, _address(gateway) if gateway else None,
            _RTN_TYPES.get(ev.rtype) or str(ev.rtype), ev.proto, table, ev.metric,
        ))  # fmt: skip
        # a lone key is stored as itself (see by_base): most routes end here
        if self.by_base.setdefault(base, key) is not key:
            _index_add(self.by_base, base, key)
        if self.by_prefix.setdefault(prefix, key) is not key:
            _index_add(self.by_prefix, prefix, key)

    def _touch(self, prefix: IPNetwork) -> None:
        if self.dirty is not None:
            self.dirty.add(prefix)

    def _forget_route(self, key: RouteKey) -> None:
        route = self.routes.pop(key, None)
        if route is not None:
            self._touch(route.prefix)
            _index_discard(self.by_prefix, route.prefix, key)
        _index_discard(self.by_base, key[:6], key)

    def _neighbor(self, msg: Any, new: bool) -> None:
        if msg["family"] not in (socket.AF_INET, socket.AF_INET6):
            return  # AF_BRIDGE: fdb entries
        dst = msg.get_attr("NDA_DST")
        if dst is None:
            return
        address = _address(dst)
        key = (int(msg["ifindex"]), address)
        state = int(msg["state"]) if new else 0
        if new:
            self.neighbors[key] = state
        else:
            self.neighbors.pop(key, None)
        if key[0] == self.bridge_index:
            if state & NUD_PERMANENT:
                self.permanent.add(address)
            else:
                self.permanent.discard(address)
            self._touch(canonical_of(address.version, int(address), address.max_prefixlen))

    def _address(self, msg: Any, new: bool) -> None:
        self.dirty = None
        addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if addr is None:
            return
        key = (int(msg["index"]), f"{addr}/{msg['prefixlen']}")
        if new:
            self.addresses[key] = None
        else:
            self.addresses.pop(key, None)

    def _routes_of(self, prefix: IPNetwork) -> tuple[KernelRoute, ...]:
        entry = self.by_prefix.get(prefix)
        if entry is None:
            return ()
        if type(entry) is tuple:  # the usual lone route
            return (self.routes[entry],)
        return tuple(self.routes[k] for k in sorted(_keys(entry)))

    def snapshot(self, generation: int, cause: str) -> KernelSnapshot:
        """The view now; what changed since the previous snapshot starts afresh."""
        index = self.bridge_index
        changed = None
        if self.dirty is not None:
            changed = {p: self._routes_of(p) for p in self.dirty}
        self.dirty = set()
        return KernelSnapshot(
            bridge=self.bridge,
            bridge_index=index,
            bridge_up=index is not None and self._usable(self.link_flags.get(index, 0)),
            bridge_carrier=index is not None and self._carrier(self.link_flags.get(index, 0)),
            # unsorted: the policy orders by prefix itself
            routes=tuple(self.routes.values()),
            permanent_neighbors=frozenset(self.permanent),
            bridge_addresses=frozenset(a for (i, a) in self.addresses if i == index),
            generation=generation,
            cause=cause,
            changed=changed,
        )


def _dump_requests(neighbors: bool = True) -> list[tuple[int, int]]:
    """(kind, family) of each dump: links first, so that routes and neighbours
    can be matched to the bridge."""
    out: list[tuple[int, int]] = [(RTM_GETLINK, socket.AF_UNSPEC), (RTM_GETADDR, socket.AF_UNSPEC)]
    out += [(RTM_GETROUTE, socket.AF_INET), (RTM_GETROUTE, socket.AF_INET6)]
    if neighbors:
        out.append((RTM_GETNEIGH, socket.AF_UNSPEC))
    return out


@dataclass(frozen=True)
class AuditResult:
    """The kernel against the view: routes the view lacks, routes it has too many."""

    missing: frozenset[RouteKey]
    extra: frozenset[RouteKey]
    routes: int  # routes the kernel has that the view should hold
    # IP versions (4, 6) with a unicast default route in the main table: the
    # view does not keep those (they are not on the bridge), the daemon checks
    # them against bgpd (issue 10, 4.3).
    defaults: frozenset[int] = frozenset()

    @property
    def differs(self) -> frozenset[RouteKey]:
        return self.missing | self.extra


def _dump_route_keys(
    sock: socket.socket, view: KernelView, seq: Iterator[int]
) -> tuple[set[RouteKey], set[int]] | None:
    """The keys `view` would hold for the kernel's routes now, and the IP
    versions with a default route in the main table (None: dump interrupted)."""
    buf = bytearray(1 << 20)
    keys: set[RouteKey] = set()
    defaults: set[int] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        number = next(seq)
        sock.send(dump_request(RTM_GETROUTE, family, number))
        done = False
        while not done:
            size = sock.recv_into(buf)
            data = memoryview(buf)[:size]
            offset = 0
            while offset + 16 <= size:
                length, kind, flags, number_in = _NLMSGHDR.unpack_from(data, offset)[:4]
                if length < 16 or offset + length > size:
                    break
                if number_in == number:
                    if flags & NLM_F_DUMP_INTR:
                        return None
                    if kind == NLMSG_DONE:
                        done = True
                    elif kind == NLMSG_ERROR:
                        raise OSError("netlink route dump failed (audit)")
                    elif kind == RTM_NEWROUTE:
                        ev = decode_route_event(data, offset, length)
                        key = view.kept(ev)
                        if key is not None:
                            keys.add(key)
                        if ev.dst_len == 0 and ev.table == MAIN_TABLE and ev.rtype == 1:
                            defaults.add(4 if family == socket.AF_INET else 6)
                offset += (length + 3) & ~3
    return keys, defaults


class NetlinkWatcher:
    """Watch the bridge; `poll()` returns a new snapshot after a burst, or None."""

    def __init__(
        self,
        bridge: str = "cloudbr0",
        netns: str | None = None,
        window: float = 0.01,
        max_window: float = 0.1,
        rcvbuf: int = 32 << 20,
        dump_attempts: int = 5,
        neighbors: bool = True,
    ) -> None:
        """`neighbors=False` leaves neighbour entries out (no dump, no events):
        the policy needs them only with require-neighbor, and a burst of VM
        plugs brings as many neighbour events as routes."""
        self.bridge = bridge
        self.neighbors = neighbors
        self.netns = netns
        self.window = window
        self.max_window = max_window
        self.rcvbuf = rcvbuf
        self.dump_attempts = dump_attempts
        self.generation = 0
        self.resyncs: dict[str, int] = {}
        self._seq = itertools.count(1)
        self._sock: socket.socket | None = None
        self._buf = bytearray(1 << 20)
        self._view = KernelView(bridge)

    # -- socket --------------------------------------------------------------
    def _open(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        ctx: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.netns:
            from frrctl.frr.netns import in_netns

            ctx = in_netns(self.netns)
        with ctx:  # the socket stays in the namespace it was created in
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            # SO_RCVBUFFORCE (root) goes past net.core.rmem_max; else best effort.
            sock.setsockopt(socket.SOL_SOCKET, 33, self.rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind((0, GROUPS if self.neighbors else GROUPS & ~RTMGRP_NEIGH))
        self._sock = sock
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self) -> int:
        return self._open().fileno()

    def selectable(self) -> socket.socket:
        """The socket to select on. A resync replaces it, often under the same
        fd number: a caller registers this object and compares by identity."""
        return self._open()

    def audit(self) -> AuditResult | None:
        """Dump the kernel's routes over a socket of its own (no groups: it
        hears nothing else) and compare them with the view the events built.
        None when the dump was interrupted (inconclusive). Costs one route
        dump of each family (~10 ms per 1,000 routes)."""
        ctx: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.netns:
            from frrctl.frr.netns import in_netns

            ctx = in_netns(self.netns)
        with ctx:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        try:
            sock.bind((0, 0))
            kernel = _dump_route_keys(sock, self._view, self._seq)
        finally:
            sock.close()
        if kernel is None:
            return None
        keys, defaults = kernel
        view = set(self._view.routes)
        return AuditResult(
            missing=frozenset(keys - view),
            extra=frozenset(view - keys),
            routes=len(keys),
            defaults=frozenset(defaults),
        )

    def _recv(self, block: bool = True, events: bool = False) -> list[Any] | None:
        """One datagram's messages (None: nothing there, when not blocking);
        ENOBUFS (overrun) becomes Resync."""
        sock = self._open()
        try:
            size = sock.recv_into(self._buf, 0, 0 if block else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.ENOBUFS:
                raise Resync("netlink socket overrun (ENOBUFS)") from exc
            raise
        data = memoryview(self._buf)[:size]
        out: list[Any] = []
        offset = 0
        while offset + 16 <= size:
            length, kind = _NLMSGHDR.unpack_from(data, offset)[:2]
            if length < 16 or offset + length > size:
                break
            if kind in (RTM_NEWROUTE, RTM_DELROUTE):
                # a dump needs the header (sequence, flags); events only the route
                decode = decode_route_event if events else parse_route
                out.append(decode(data, offset, length))
            elif kind in (RTM_NEWNEIGH, RTM_DELNEIGH):
                out.append(parse_neighbor(data, offset, length))
            elif kind in (RTM_NEWLINK, RTM_DELLINK):
                out.append(parse_link(data, offset, length))
            elif kind in (RTM_NEWADDR, RTM_DELADDR):
                out.append(parse_addr(data, offset, length))
            else:
                out.append(parse_control(data, offset, length))
            offset += (length + 3) & ~3
        return out

    # -- full dump -----------------------------------------------------------
    def _dump_once(self) -> KernelView:
        sock = self._open()
        view = KernelView(self.bridge)
        events: list[Any] = []
        for kind, family in _dump_requests(self.neighbors):
            seq = next(self._seq)
            sock.send(dump_request(kind, family, seq))
            done = False
            while not done:
                for msg in self._recv() or ():
                    header = msg["header"]
                    if header["sequence_number"] != seq:
                        events.append(msg)  # a broadcast that raced the dump
                        continue
                    if header["flags"] & NLM_F_DUMP_INTR:
                        raise NetlinkDumpInterrupted()
                    if header["type"] == NLMSG_DONE:
                        done = True
                    elif header["type"] == NLMSG_ERROR:
                        if msg["error"]:
                            raise OSError(-msg["error"], f"netlink dump {kind} failed")
                    else:
                        view.apply(msg)
        # Events are absolute (add = full new state, del = gone), so replaying
        # the ones that raced the dump, in order, converges on the truth. One
        # that needs a resync itself (bridge deleted meanwhile) raises Resync:
        # the caller dumps again rather than trust a half-applied view.
        for msg in events:
            view.apply(msg)
        return view

    def resync(self, cause: str) -> KernelSnapshot:
        """Throw the view away and dump everything (retrying interrupted dumps)."""
        self.resyncs[cause] = self.resyncs.get(cause, 0) + 1
        for attempt in range(1, self.dump_attempts + 1):
            # A fresh socket each time: the old one may hold events older than
            # a lost one (after ENOBUFS) or the rest of an abandoned dump, and
            # replaying those after the dump would bring back stale state.
            # Subscribing before dumping means every later change is an event.
            self.close()
            try:
                self._view = self._dump_once()
                break
            except (NetlinkDumpInterrupted, Resync) as exc:
                log.warning("netlink dump attempt %d: %s; dumping again", attempt, exc)
                if attempt == self.dump_attempts:
                    raise
                time.sleep(0.01 * attempt)
        self.generation += 1
        log.info("netlink resync (%s): %d routes", cause, len(self._view.routes))
        return self._view.snapshot(self.generation, cause)

    def start(self) -> KernelSnapshot:
        """Open the socket (subscribing before dumping, so nothing falls between)."""
        return self.resync("initial dump")

    # -- events --------------------------------------------------------------
    def _readable(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._open()], [], [], max(timeout, 0))
        return bool(ready)

    def _settled(self, timeout: float, stop: int | None) -> bool:
        """Sleep `timeout` (ended early only by `stop` becoming readable); True
        when events came meanwhile. Not a select() on the socket: that would
        wake the daemon for every route while the kernel adds them one by one,
        and each wake-up costs the process adding them (and the daemon)."""
        ready, _, _ = select.select([] if stop is None else [stop], [], [], max(timeout, 0))
        if ready:
            return False
        return self._readable(0)

    def poll(
        self, timeout: float | None = None, max_window: float | None = None, stop: int | None = None
    ) -> KernelSnapshot | None:
        """Wait up to `timeout` for events; gather the burst; return the new snapshot.

        `max_window` overrides the watcher's for this call. The gathering also
        ends as soon as the descriptor `stop` is readable (the daemon's worker
        finished a batch: the next one should start now, not when the burst
        goes quiet)."""
        if not self._readable(timeout if timeout is not None else 3600):
            return None
        first = time.monotonic()
        limit = self.max_window if max_window is None else max_window
        try:
            while True:
                # Everything queued now, without a select() per datagram, but never
                # past the window: a long burst goes out in pieces, so FRR starts
                # announcing while the kernel is still adding routes...
                while (batch := self._recv(block=False, events=True)) is not None:
                    for msg in batch:
                        self._view.apply(msg)
                    if time.monotonic() - first >= limit:
                        break
                # ... then wait for the burst to go quiet (or the window to end).
                remaining = limit - (time.monotonic() - first)
                if remaining <= 0 or not self._settled(min(self.window, remaining), stop):
                    break
        except Resync as exc:
            return self.resync(f"resync: {exc}")
        return self._view.snapshot(self.generation, "events")

    def snapshots(self, timeout: float = 1.0) -> Iterator[KernelSnapshot]:
        """The initial snapshot, then one per burst, forever."""
        yield self.start()
        while True:
            snap = self.poll(timeout)
            if snap is not None:
                yield snap

    def __enter__(self) -> NetlinkWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
