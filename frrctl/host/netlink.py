"""The only netlink layer of the host commands: one pyroute2 IPRoute socket per command.

Changes go to the kernel as one batch of requests (one sendmsg per chunk,
every request acknowledged), so plugging a VM with four addresses costs one
round trip, not twelve `ip` processes. Lookups are exact (`fibmatch` route
get, neighbour get), never a dump of the whole table, so the cost of a plug
does not grow with the number of VMs already on the host.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import (
    RTM_DELNEIGH,
    RTM_DELROUTE,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from frrctl.errors import FrrctlError
from frrctl.pools import IPAddress

MAIN_TABLE = 254
RTPROT_BOOT = 3  # what `ip route add` sets; FRR redistributes it as a kernel route
# zebra gives a kernel route the distance metric >> 24: at 2 << 24 (distance 2)
# a staticd route (distance 1, the gRPC driver) outranks it and is the one
# redistributed; `redistribute kernel` and `network` ignore the metric.
HOST_ROUTE_METRIC = 2 << 24
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTM_F_FIB_MATCH = 0x2000
NUD_PERMANENT = 0x80
NUD_NOARP = 0x40
NTF_MASTER = 0x04
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
BATCH_CHUNK = 256


def family_of(addr: IPAddress) -> int:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


@dataclass(frozen=True)
class RouteInfo:
    """The FIB entry that matches an address exactly or covers it."""

    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    oif: int | None
    gateway: str | None
    proto: int
    table: int
    multipath: bool = False


@dataclass(frozen=True)
class NeighInfo:
    mac: str | None
    state: int

    @property
    def permanent(self) -> bool:
        return bool(self.state & NUD_PERMANENT)


@dataclass(frozen=True)
class Op:
    """One change: a host route or a neighbour on `ifindex`, added/replaced or removed."""

    kind: str  # "route" | "neigh"
    action: str  # "set" | "del"
    addr: IPAddress
    ifindex: int
    mac: str | None = None
    state: int = NUD_PERMANENT

    def describe(self, ifname: str = "") -> str:
        dev = f" dev {ifname}" if ifname else ""
        plen = 32 if self.addr.version == 4 else 128
        if self.kind == "route":
            return f"route {'add' if self.action == 'set' else 'del'} {self.addr}/{plen}{dev}"
        mac = f" lladdr {self.mac}" if self.mac else ""
        return f"neigh {'replace' if self.action == 'set' else 'del'} {self.addr}{mac}{dev}"


class BatchError(FrrctlError):
    """A batch of netlink changes failed; `done` is how many requests were acknowledged."""

    def __init__(self, message: str, code: int, done: int) -> None:
        super().__init__(message)
        self.code = code
        self.done = done


@dataclass
class LinkInfo:
    index: int
    name: str
    kind: str | None
    master: int | None
    flags: int
    mac: str | None
    raw: Any = field(default=None, repr=False)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


class Netlink:
    """A thin wrapper over one IPRoute socket, closed by `close()` or `with`."""

    def __init__(self) -> None:
        self.ipr = IPRoute()

    def close(self) -> None:
        self.ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- links ---------------------------------------------------------------
    def link(self, name: str | None = None, index: int | None = None) -> LinkInfo | None:
        try:
            if index is None:
                msgs = self.ipr.link("get", ifname=name)
            else:
                msgs = self.ipr.link("get", index=index)
        except NetlinkError as exc:
            if exc.code in (errno.ENODEV, errno.ENOENT):
                return None
            raise
        if not msgs:
            return None
        msg = msgs[0]
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info else None
        return LinkInfo(
            index=int(msg["index"]),
            name=msg.get_attr("IFLA_IFNAME"),
            kind=kind,
            master=msg.get_attr("IFLA_MASTER"),
            flags=int(msg["flags"]),
            mac=msg.get_attr("IFLA_ADDRESS"),
            raw=msg,
        )

    # -- raw requests ----------------------------------------------------------
    def _request(self, msg: Any, msg_type: int, flags: int) -> list[Any]:
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = flags
        return list(self.ipr.nlm_request_batch([msg]))

    def _get(self, msg: Any, msg_type: int) -> list[Any]:
        return [
            m
            for m in self._request(msg, msg_type, NLM_F_REQUEST | NLM_F_ACK)
            if m.get("event") != "NLMSG_ERROR"
        ]

    # -- exact lookups ---------------------------------------------------------
    def fib_match(self, addr: IPAddress) -> RouteInfo | None:
        """The main-table route `ip route get fibmatch ADDR` would show, or None."""
        msg = rtmsg()
        msg["family"] = family_of(addr)
        msg["dst_len"] = addr.max_prefixlen
        msg["flags"] = RTM_F_FIB_MATCH
        msg["attrs"] = [("RTA_DST", str(addr))]
        try:
            found = self._get(msg, RTM_GETROUTE)
        except NetlinkError as exc:
            if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOENT, errno.ESRCH):
                return None
            raise
        for route in found:
            return _route_info(route)
        return None

    def neigh_get(self, addr: IPAddress, ifindex: int) -> NeighInfo | None:
        msg = ndmsg()
        msg["family"] = family_of(addr)
        msg["ifindex"] = ifindex
        msg["attrs"] = [("NDA_DST", str(addr))]
        try:
            found = self._get(msg, RTM_GETNEIGH)
        except NetlinkError as exc:
            if exc.code in (errno.ENOENT, errno.ENODEV):
                return None
            raise
        for neigh in found:
            mac = neigh.get_attr("NDA_LLADDR")
            return NeighInfo(mac=mac.lower() if mac else None, state=int(neigh["state"]))
        return None

    def lookup(
        self, addrs: Sequence[IPAddress], ifindex: int
    ) -> tuple[dict[IPAddress, RouteInfo | None], dict[IPAddress, NeighInfo | None]]:
        """fib_match and neigh_get for every address, in one batch (one round trip).

        A request that fails (no route, no entry) simply has no answer.
        """
        msgs: list[Any] = []
        for addr in addrs:
            route = rtmsg()
            route["family"] = family_of(addr)
            route["dst_len"] = addr.max_prefixlen
            route["flags"] = RTM_F_FIB_MATCH
            route["attrs"] = [("RTA_DST", str(addr))]
            route["header"]["type"] = RTM_GETROUTE
            route["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
            neigh = ndmsg()
            neigh["family"] = family_of(addr)
            neigh["ifindex"] = ifindex
            neigh["attrs"] = [("NDA_DST", str(addr))]
            neigh["header"]["type"] = RTM_GETNEIGH
            neigh["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
            msgs += [route, neigh]
        answers = {
            int(m["header"]["sequence_number"]): m
            for m in self.ipr.nlm_request_batch(msgs, noraise=True)
            if m.get("event") in ("RTM_NEWROUTE", "RTM_NEWNEIGH")
        }
        routes: dict[IPAddress, RouteInfo | None] = {}
        neighs: dict[IPAddress, NeighInfo | None] = {}
        for i, addr in enumerate(addrs):
            r = answers.get(int(msgs[2 * i]["header"]["sequence_number"]))
            routes[addr] = _route_info(r) if r is not None else None
            n = answers.get(int(msgs[2 * i + 1]["header"]["sequence_number"]))
            if n is None:
                neighs[addr] = None
            else:
                mac = n.get_attr("NDA_LLADDR")
                neighs[addr] = NeighInfo(mac.lower() if mac else None, int(n["state"]))
        return routes, neighs

    # -- dumps (list / drift only) --------------------------------------------
    def host_routes(self, ifindex: int) -> dict[IPAddress, RouteInfo]:
        """Main-table /32 and /128 routes whose only next hop is `ifindex`."""
        out: dict[IPAddress, RouteInfo] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in self.ipr.route("dump", family=family, table=MAIN_TABLE):
                info = _route_info(route)
                if info is None or info.oif != ifindex or info.table != MAIN_TABLE:
                    continue
                if info.dst.prefixlen == info.dst.max_prefixlen:
                    out[info.dst.network_address] = info
        return out

    def neighbours(self, ifindex: int) -> dict[IPAddress, NeighInfo]:
        out: dict[IPAddress, NeighInfo] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            for neigh in self.ipr.neigh("dump", family=family, ifindex=ifindex):
                if int(neigh["ifindex"]) != ifindex:
                    continue
                dst = neigh.get_attr("NDA_DST")
                if dst is None:
                    continue
                mac = neigh.get_attr("NDA_LLADDR")
                out[ipaddress.ip_address(dst)] = NeighInfo(
                    mac=mac.lower() if mac else None, state=int(neigh["state"])
                )
        return out

    # -- batched changes -------------------------------------------------------
    def apply(self, ops: Sequence[Op], ignore_missing: bool = False) -> None:
        """Send `ops` in order, one sendmsg per chunk; stop at the first failed chunk.

        With `ignore_missing`, ENOENT/ESRCH on a delete counts as done (rollback,
        unplug of something already gone). Raises BatchError naming the failed
        op; `done` counts the ops acknowledged before it.
        """
        done = 0
        for start in range(0, len(ops), BATCH_CHUNK):
            chunk = ops[start : start + BATCH_CHUNK]
            failed: BatchError | None = None
            for op, code in zip(chunk, self._batch_results(chunk), strict=True):
                if code and ignore_missing and op.action == "del" and code in (
                    errno.ENOENT, errno.ESRCH, errno.EADDRNOTAVAIL,
                ):  # fmt: skip
                    code = 0
                if code and failed is None:
                    failed = BatchError(f"{op.describe()}: {os.strerror(code)}", code, done)
                if not code and failed is None:
                    done += 1
            if failed is not None:
                raise failed

    def _batch_results(self, ops: Sequence[Op]) -> list[int]:
        """Error code (0 = ok) per op of one batch, in order.

        pyroute2 stops collecting acks at the first error although the kernel
        handled every request of the buffer: the ops after it are sent again
        one by one (every op is idempotent: replace, or delete with ENOENT).
        """
        codes: list[int] = []
        try:
            for reply in self.ipr.nlm_request_batch([_encode(op) for op in ops]):
                if reply.get("event") == "NLMSG_ERROR":
                    codes.append(0)
        except NetlinkError as exc:
            codes.append(exc.code or errno.EIO)
        for op in ops[len(codes) :]:
            try:
                list(self.ipr.nlm_request_batch([_encode(op)]))
                codes.append(0)
            except NetlinkError as exc:
                codes.append(exc.code or errno.EIO)
        return codes


def _route_info(route: Any) -> RouteInfo | None:
    family = route["family"]
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    dst = route.get_attr("RTA_DST") or ("0.0.0.0" if family == socket.AF_INET else "::")
    table = route.get_attr("RTA_TABLE") or route["table"]
    multipath = route.get_attr("RTA_MULTIPATH")
    gateway = route.get_attr("RTA_GATEWAY")
    return RouteInfo(
        dst=ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False),
        oif=None if multipath else route.get_attr("RTA_OIF"),
        gateway=str(gateway) if gateway else None,
        proto=int(route["proto"]),
        table=int(table),
        multipath=bool(multipath),
    )


def _encode(op: Op) -> Any:
    flags = NLM_F_REQUEST | NLM_F_ACK
    if op.kind == "route":
        msg = rtmsg()
        msg["family"] = family_of(op.addr)
        msg["dst_len"] = op.addr.max_prefixlen
        msg["table"] = MAIN_TABLE
        msg["proto"] = RTPROT_BOOT
        msg["scope"] = RT_SCOPE_LINK if op.addr.version == 4 else RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_DST", str(op.addr)), ("RTA_OIF", op.ifindex)]
        if op.action == "set":
            msg["attrs"].append(("RTA_PRIORITY", HOST_ROUTE_METRIC))
            msg["header"]["type"] = RTM_NEWROUTE
            flags |= NLM_F_CREATE | NLM_F_REPLACE
        else:  # no metric: also removes a route plugged before the metric existed
            msg["header"]["type"] = RTM_DELROUTE
    else:
        msg = ndmsg()
        msg["family"] = family_of(op.addr)
        msg["ifindex"] = op.ifindex
        msg["state"] = op.state
        attrs: list[tuple[str, Any]] = [("NDA_DST", str(op.addr))]
        if op.action == "set":
            attrs.append(("NDA_LLADDR", op.mac))
            msg["header"]["type"] = RTM_NEWNEIGH
            flags |= NLM_F_CREATE | NLM_F_REPLACE
        else:
            msg["header"]["type"] = RTM_DELNEIGH
        msg["attrs"] = attrs
    msg["header"]["flags"] = flags
    return msg
