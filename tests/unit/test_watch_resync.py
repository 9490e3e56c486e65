"""The watcher without a kernel: KernelView fed with built netlink messages, and
the resync logic (interrupted dumps are retried)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWLINK,
    RTM_NEWNEIGH,
    RTM_NEWROUTE,
)
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from frrctl.watch import (
    IFF_LOWER_UP,
    IFF_UP,
    NLM_F_REPLACE,
    NUD_PERMANENT,
    KernelView,
    NetlinkDumpInterrupted,
    NetlinkWatcher,
    Resync,
)

UP = IFF_UP | IFF_LOWER_UP


def link(index: int, name: str, flags: int = UP, new: bool = True) -> Any:
    msg = ifinfmsg()
    msg["index"], msg["flags"] = index, flags
    msg["attrs"] = [("IFLA_IFNAME", name)]
    msg["header"] = {"type": RTM_NEWLINK if new else RTM_DELLINK, "flags": 0}
    return msg


def route(dst: str, oif: int, new: bool = True, nlflags: int = 0, **fields: Any) -> Any:
    net = ipaddress.ip_network(dst)
    msg = rtmsg()
    msg["family"] = 2 if net.version == 4 else 10
    msg["dst_len"] = net.prefixlen
    msg["table"], msg["proto"], msg["type"], msg["flags"], msg["tos"] = 254, 3, 1, 0, 0
    priority = fields.pop("priority", None)
    for key, value in fields.items():
        msg[key] = value
    msg["attrs"] = [("RTA_DST", str(net.network_address)), ("RTA_OIF", oif)]
    if priority is not None:
        msg["attrs"].append(("RTA_PRIORITY", priority))
    msg["header"] = {"type": RTM_NEWROUTE if new else RTM_DELROUTE, "flags": nlflags}
    return msg


def neigh(addr: str, ifindex: int, state: int) -> Any:
    msg = ndmsg()
    msg["family"] = 2 if ":" not in addr else 10
    msg["ifindex"], msg["state"] = ifindex, state
    msg["attrs"] = [("NDA_DST", addr)]
    msg["header"] = {"type": RTM_NEWNEIGH, "flags": 0}
    return msg


def view() -> KernelView:
    v = KernelView("cloudbr0")
    v.apply(link(2, "cloudbr0"))
    v.apply(link(3, "eth0"))
    return v


def prefixes(v: KernelView, ifname: str = "cloudbr0") -> set[str]:
    return {str(r.prefix) for r in v.snapshot(1, "t").routes if r.ifname == ifname}


def test_routes_kept_and_dropped() -> None:
    v = view()
    v.apply(route("192.0.2.30/32", 2))
    v.apply(route("2001:db8:100::80/128", 2))
    v.apply(route("203.0.113.9/32", 3))  # host route elsewhere: kept (blocks the prefix)
    v.apply(route("198.51.100.0/24", 3))  # not a host route, not on the bridge: dropped
    v.apply(route("192.0.2.0/24", 2))  # on the bridge: kept (policy refuses it)
    assert prefixes(v) == {"192.0.2.30/32", "2001:db8:100::80/128", "192.0.2.0/24"}
    assert prefixes(v, "eth0") == {"203.0.113.9/32"}
    v.apply(route("192.0.2.30/32", 2, new=False))
    assert "192.0.2.30/32" not in prefixes(v)


def test_replace_onto_other_device_drops_the_old_route() -> None:
    v = view()
    v.apply(route("192.0.2.30/32", 3))
    v.apply(route("192.0.2.30/32", 2, nlflags=NLM_F_REPLACE))
    assert prefixes(v) == {"192.0.2.30/32"} and prefixes(v, "eth0") == set()
    v.apply(route("192.0.2.30/32", 3, nlflags=NLM_F_REPLACE))
    assert prefixes(v) == set() and prefixes(v, "eth0") == {"192.0.2.30/32"}


def test_bridge_deleted_forgets_its_routes_then_resyncs() -> None:
    v = view()
    v.apply(route("192.0.2.30/32", 2))
    v.apply(neigh("192.0.2.30", 2, NUD_PERMANENT))
    with pytest.raises(Resync, match="deleted"):
        v.apply(link(2, "cloudbr0", new=False))
    snap = v.snapshot(1, "t")
    assert snap.routes == () and snap.bridge_index is None and not snap.bridge_up


def test_bridge_recreated_renamed_or_down_resyncs() -> None:
    v = view()
    with pytest.raises(Resync, match="re-created"):
        v.apply(link(7, "cloudbr0"))
    v = view()
    v.apply(route("192.0.2.30/32", 2))
    with pytest.raises(Resync, match="renamed"):
        v.apply(link(2, "oldbr0"))
    assert prefixes(v) == set()
    v = view()
    with pytest.raises(Resync, match="went down"):
        v.apply(link(2, "cloudbr0", flags=IFF_UP))  # carrier lost


def test_other_device_with_host_routes_changing_state_resyncs() -> None:
    v = view()
    v.apply(route("203.0.113.9/32", 3))
    with pytest.raises(Resync, match="eth0"):
        v.apply(link(3, "eth0", flags=0))


def test_cloned_local_and_frr_routes() -> None:
    v = view()
    v.apply(route("192.0.2.31/32", 2, flags=0x200))  # RTM_F_CLONED: ignored
    v.apply(route("192.0.2.32/32", 2, table=255))  # local table: ignored
    v.apply(route("192.0.2.33/32", 3, proto=186))  # bgp-installed elsewhere: policy refuses
    # zebra's copy of a staticd route on the bridge (gRPC driver): FRR's output, ignored
    v.apply(route("192.0.2.34/32", 2, proto=196, priority=20))
    v.apply(route("192.0.2.34/32", 2, priority=2 << 24))  # the VM's own route: kept
    snap = v.snapshot(1, "t")
    assert {str(r.prefix): (r.protocol, r.metric) for r in snap.routes} == {
        "192.0.2.33/32": (186, 0),
        "192.0.2.34/32": (3, 2 << 24),
    }


def test_permanent_neighbors_only_on_the_bridge() -> None:
    v = view()
    v.apply(neigh("192.0.2.30", 2, NUD_PERMANENT))
    v.apply(neigh("192.0.2.31", 2, 0x02))  # reachable, not permanent
    v.apply(neigh("192.0.2.32", 3, NUD_PERMANENT))  # other device
    assert v.snapshot(1, "t").permanent_neighbors == {ipaddress.ip_address("192.0.2.30")}


def test_interrupted_dump_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = NetlinkWatcher()
    calls = []

    def flaky() -> KernelView:
        calls.append(1)
        if len(calls) == 1:
            raise NetlinkDumpInterrupted()
        if len(calls) == 2:
            raise Resync("cloudbr0 deleted")  # an event replayed after the dump
        return KernelView("cloudbr0")

    monkeypatch.setattr(watcher, "_dump_once", flaky)
    snap = watcher.resync("test")
    assert len(calls) == 3 and snap.generation == 1 and snap.cause == "test"


def test_dump_that_never_settles_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    watcher = NetlinkWatcher(dump_attempts=2)

    def always() -> KernelView:
        raise NetlinkDumpInterrupted()

    monkeypatch.setattr(watcher, "_dump_once", always)
    with pytest.raises(NetlinkDumpInterrupted):
        watcher.resync("test")


@pytest.mark.parametrize(
    "attrs",
    [
        [("RTA_DST", "192.0.2.30"), ("RTA_OIF", 2), ("RTA_TABLE", 254)],
        # the kernel's own order for `ip route add A/32 dev D`: decode_route_event's fast path
        [("RTA_TABLE", 254), ("RTA_DST", "192.0.2.30"), ("RTA_OIF", 2)],
        [
            ("RTA_DST", "2001:db8:100::80"),
            ("RTA_OIF", 7),
            ("RTA_PRIORITY", 1024),
            ("RTA_TABLE", 254),
            ("RTA_GATEWAY", "2001:db8:100::1"),
        ],
    ],
)
def test_fast_route_parser_matches_pyroute2(attrs: list[tuple[str, Any]]) -> None:
    from pyroute2.netlink.rtnl.marshal import MarshalRtnl

    from frrctl.watch import decode_route_event, parse_route, route_event

    v6 = any(":" in str(value) for _, value in attrs)
    msg = rtmsg()
    msg["family"] = 10 if v6 else 2
    msg["dst_len"] = 128 if v6 else 32
    msg["table"], msg["proto"], msg["type"], msg["flags"], msg["tos"] = 254, 3, 1, 0, 0
    msg["attrs"] = attrs
    msg["header"] = {"type": RTM_NEWROUTE, "flags": NLM_F_REPLACE, "sequence_number": 7}
    msg.encode()
    data = bytes(msg.data)
    (slow,) = MarshalRtnl().parse(data)
    fast = parse_route(data, 0, len(data))
    for key in ("family", "dst_len", "table", "proto", "type", "flags", "tos"):
        assert fast[key] == slow[key], key
    for key in ("type", "flags", "sequence_number"):
        assert fast["header"][key] == slow["header"][key], key
    for name, _ in attrs:
        # addresses come as objects (decoded from their bytes), pyroute2's as text
        value = fast.get_attr(name)
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            value = str(value)
        assert value == slow.get_attr(name), name
    # the event decoder gives what both messages give, field by field
    event = decode_route_event(data, 0, len(data))
    assert event == route_event(fast)
    # (dst is an int from every decoder; pyroute2 gives the gateway as text)
    assert event._replace(gateway=event.gateway and str(event.gateway)) == route_event(slow)
    # and KernelView reads all three the same way
    a, b, c = view(), view(), view()
    a.apply(fast)
    b.apply(slow)
    c.apply(event)
    assert a.snapshot(1, "t").routes == b.snapshot(1, "t").routes == c.snapshot(1, "t").routes
    assert a.snapshot(1, "t").routes  # something was kept


def test_fast_neighbour_decoder_matches_pyroute2() -> None:
    import socket

    from pyroute2.netlink.rtnl import RTM_NEWNEIGH
    from pyroute2.netlink.rtnl.ndmsg import ndmsg

    from frrctl.watch import parse_neighbor

    for family, dst in ((socket.AF_INET, "192.0.2.30"), (socket.AF_INET6, "2001:db8:100::80")):
        msg = ndmsg()
        msg["family"] = family
        msg["ifindex"] = 7
        msg["state"] = 0x80  # NUD_PERMANENT
        msg["attrs"] = [("NDA_DST", dst), ("NDA_LLADDR", "52:02:45:76:d2:35")]
        msg["header"]["type"] = RTM_NEWNEIGH
        msg.encode()
        data = bytes(msg.data)
        fast = parse_neighbor(data, 0, len(data))
        assert (fast["family"], fast["ifindex"], fast["state"]) == (family, 7, 0x80)
        assert fast.get_attr("NDA_DST") == ipaddress.ip_address(dst)
        assert fast["header"]["type"] == RTM_NEWNEIGH


def test_snapshot_names_what_changed_since_the_previous_one() -> None:
    v = view()
    assert v.snapshot(1, "t").changed is None  # a fresh view: judge everything
    assert v.snapshot(1, "t").changed == {}
    v.apply(route("192.0.2.30/32", 2))
    v.apply(route("192.0.2.40/32", 3))  # host route elsewhere: kept, it blocks
    v.apply(route("198.18.0.0/24", 3))  # neither: not kept, not a change
    v.apply(neigh("192.0.2.31", 2, NUD_PERMANENT))
    snap = v.snapshot(1, "t")
    assert snap.changed is not None
    assert {str(p): len(r) for p, r in snap.changed.items()} == {
        "192.0.2.30/32": 1,
        "192.0.2.40/32": 1,
        "192.0.2.31/32": 0,
    }
    v.apply(route("192.0.2.30/32", 2, new=False))
    changed = v.snapshot(1, "t").changed
    assert changed == {ipaddress.ip_network("192.0.2.30/32"): ()}
    v.apply(link(4, "eth1"))  # a link may move routes silently: everything again
    assert v.snapshot(1, "t").changed is None


def test_audit_filter_keeps_exactly_what_the_view_keeps() -> None:
    """The kernel view check (issue 10, 4.1) compares a dump filtered by
    KernelView.kept with the view's keys: the two filters must agree, or a
    healthy daemon would look deaf."""
    from frrctl.watch import route_event

    cases = [
        route("192.0.2.30/32", 2),
        route("2001:db8:100::80/128", 2),
        route("203.0.113.9/32", 3),  # host route elsewhere
        route("198.51.100.0/24", 3),  # dropped
        route("192.0.2.0/24", 2),  # on the bridge, not a host route
        route("192.0.2.31/32", 2, table=255),  # local table: dropped
        route("192.0.2.32/32", 3, table=100),  # host route, other table, elsewhere: dropped
        route("192.0.2.33/32", 2, flags=0x200),  # cloned: dropped
    ]
    for msg in cases:
        v = view()
        v.apply(msg)
        key = v.kept(route_event(msg))
        assert (key is not None) == bool(v.routes), msg
        if key is not None:
            assert set(v.routes) == {key}


def test_host_route_fast_path_decodes_as_the_general_one() -> None:
    """decode_route_event unpacks an IPv4 host route (52 bytes, or 60 with a
    metric) in one go; on every field value, and on look-alikes of those sizes,
    it must give what parse_route gives (which reads attribute by attribute)."""
    import random
    import struct

    from frrctl.watch import RTM_DELROUTE, _host4, decode_route_event, parse_route, route_event

    rng = random.Random(7)
    fast = {3: 0, 4: 0}
    for _ in range(4000):
        kind = rng.choice((RTM_NEWROUTE, RTM_DELROUTE))
        attrs = [(15, rng.choice((0, 254, 100))), (1, rng.getrandbits(32))]
        if rng.random() < 0.5:
            attrs.append((6, rng.choice((0, 2 << 24, rng.getrandbits(32)))))  # RTA_PRIORITY
        attrs.append((4, rng.getrandbits(32)))
        if rng.random() < 0.3:  # another attribute (gateway, metric) in a place
            attrs[rng.randrange(len(attrs))] = (rng.choice((5, 6)), rng.getrandbits(32))
        if rng.random() < 0.1:
            rng.shuffle(attrs)
        body = struct.pack(
            "=BBBBBBBBI", 2, rng.choice((32, 24, 0)), 0, rng.choice((0, 4)),
            rng.choice((254, 0, 255)), rng.choice((3, 4, 186)), 0, rng.choice((1, 6)),
            rng.choice((0, 0x200)),
        )  # fmt: skip
        for atype, value in attrs:
            raw = value.to_bytes(4, "big") if atype in (1, 5) else struct.pack("=I", value)
            body += struct.pack("=HH", 8, atype) + raw
        flags = rng.choice((0, 0x100, 0x600))
        data = struct.pack("=IHHII", 16 + len(body), kind, flags, 9, 0) + body
        types = [t for t, _ in attrs]
        # the fast path takes exactly the kernel's two layouts, nothing else
        layout = types in ([15, 1, 4], [15, 1, 6, 4])
        assert (_host4(data, 0, len(data)) is not None) == layout, types
        fast[len(types)] += layout
        general = route_event(parse_route(data, 0, len(data)))
        assert decode_route_event(data, 0, len(data)) == general
    assert min(fast.values()) > 1000  # both fast layouts were met, and so were look-alikes
