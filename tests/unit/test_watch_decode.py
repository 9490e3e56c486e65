"""The watcher's own netlink codec against pyroute2's (which the daemon no longer
imports): constants, dump requests, link, address, error and done messages."""

from __future__ import annotations

import socket

import pytest
from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, nlmsgerr, rtnl
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from frrctl import watch
from frrctl.watch import KernelView, dump_request, parse_addr, parse_control, parse_link


@pytest.mark.parametrize(
    "name",
    ["RTM_NEWLINK", "RTM_DELLINK", "RTM_GETLINK", "RTM_NEWADDR", "RTM_DELADDR", "RTM_GETADDR",
     "RTM_NEWROUTE", "RTM_DELROUTE", "RTM_GETROUTE", "RTM_NEWNEIGH", "RTM_DELNEIGH",
     "RTM_GETNEIGH", "RTMGRP_LINK", "RTMGRP_NEIGH", "RTMGRP_IPV4_IFADDR", "RTMGRP_IPV4_ROUTE",
     "RTMGRP_IPV6_IFADDR", "RTMGRP_IPV6_ROUTE"],
)  # fmt: skip
def test_constants_are_the_kernels(name: str) -> None:
    assert getattr(watch, name) == getattr(rtnl, name)


def test_netlink_flags() -> None:
    assert (watch.NLM_F_REQUEST, watch.NLM_F_DUMP) == (NLM_F_REQUEST, NLM_F_DUMP)
    assert (watch.NLMSG_ERROR, watch.NLMSG_DONE) == (NLMSG_ERROR, NLMSG_DONE)


@pytest.mark.parametrize(
    ("cls", "kind", "family"),
    [(ifinfmsg, rtnl.RTM_GETLINK, 0), (ifaddrmsg, rtnl.RTM_GETADDR, 0),
     (rtmsg, rtnl.RTM_GETROUTE, socket.AF_INET), (rtmsg, rtnl.RTM_GETROUTE, socket.AF_INET6),
     (ndmsg, rtnl.RTM_GETNEIGH, 0)],
)  # fmt: skip
def test_dump_requests_are_byte_for_byte_pyroute2s(cls: type, kind: int, family: int) -> None:
    msg = cls()
    msg["family"] = family
    msg["header"]["type"] = kind
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_DUMP
    msg["header"]["sequence_number"] = 77
    msg.encode()
    assert dump_request(kind, family, 77) == bytes(msg.data)


def encoded(msg: object) -> bytes:
    msg.encode()  # type: ignore[attr-defined]
    return bytes(msg.data)  # type: ignore[attr-defined]


def test_link_messages_decode_as_pyroute2_does() -> None:
    msg = ifinfmsg()
    msg["index"], msg["flags"], msg["family"] = 7, 0x11043, 0
    msg["attrs"] = [("IFLA_IFNAME", "cloudbr0"), ("IFLA_MTU", 1500)]
    msg["header"]["type"] = rtnl.RTM_NEWLINK
    data = encoded(msg)
    (theirs,) = MarshalRtnl().parse(data)
    ours = parse_link(data, 0, len(data))
    assert ours["index"] == theirs["index"] == 7
    assert ours["flags"] == theirs["flags"] == 0x11043
    assert ours.get_attr("IFLA_IFNAME") == theirs.get_attr("IFLA_IFNAME") == "cloudbr0"
    assert ours["header"]["type"] == rtnl.RTM_NEWLINK


@pytest.mark.parametrize(
    ("family", "local", "address", "prefixlen"),
    [(socket.AF_INET, "169.254.0.1", "169.254.0.1", 32), (socket.AF_INET6, None, "fe80::1", 64)],
)
def test_address_messages_decode_as_pyroute2_does(
    family: int, local: str | None, address: str, prefixlen: int
) -> None:
    msg = ifaddrmsg()
    msg["family"], msg["prefixlen"], msg["index"] = family, prefixlen, 7
    msg["attrs"] = [("IFA_ADDRESS", address)] + ([("IFA_LOCAL", local)] if local else [])
    msg["header"]["type"] = rtnl.RTM_NEWADDR
    data = encoded(msg)
    (theirs,) = MarshalRtnl().parse(data)
    ours = parse_addr(data, 0, len(data))
    for name in ("IFA_ADDRESS", "IFA_LOCAL"):
        mine = ours.get_attr(name)
        assert (str(mine) if mine is not None else None) == theirs.get_attr(name)
    view = KernelView("cloudbr0")
    view.apply(ours)
    assert view.addresses == {(7, f"{address}/{prefixlen}"): None}


def test_error_and_done_messages() -> None:
    err = nlmsgerr()
    err["error"] = -16
    err["header"]["type"] = NLMSG_ERROR
    data = encoded(err)
    assert parse_control(data, 0, len(data))["error"] == -16
    done = dump_request(rtnl.RTM_GETROUTE, 2, 5)[:16]  # any header-only message
    msg = parse_control(done, 0, 16)
    assert msg["header"]["sequence_number"] == 5 and msg["error"] is None
