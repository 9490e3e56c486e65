"""Prefix objects the daemon holds by the 10,000: one per prefix (canonical), and
no per-object `hosts` closure, with the answers ipaddress gives."""

from __future__ import annotations

import gc
import ipaddress
import random

import pytest

from frrctl.policy import canonical, canonical_of, parse_prefix, prefix_key
from frrctl.pools import network_from_int, network_of, parse_network


@pytest.mark.parametrize(
    "text",
    ["198.19.0.5/32", "198.19.0.4/31", "198.19.0.0/30", "2001:db8::1/128", "2001:db8::/127",
     "2001:db8::/126"],
)  # fmt: skip
def test_hosts_as_ipaddress_gives_them_without_a_closure(text: str) -> None:
    prefix = parse_network(text)
    assert list(prefix.hosts()) == list(ipaddress.ip_network(text).hosts())
    assert "hosts" not in prefix.__dict__


def test_one_object_per_prefix_while_it_is_held() -> None:
    held = parse_prefix("198.19.0.7/32")
    again = canonical(network_of(ipaddress.IPv4Address("198.19.0.7"), 32))
    assert again is held and parse_prefix("198.19.0.7") is held
    assert canonical(parse_network("198.19.0.8/32")) is not held
    other = id(parse_prefix("2001:db8::9/128"))
    del held, again
    gc.collect()
    # nothing holds it any more: the table does not keep it alive
    fresh = parse_prefix("198.19.0.7/32")
    assert fresh == parse_network("198.19.0.7/32") and id(fresh) != other


def _reference(
    version: int, value: int, length: int
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    cls = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    return cls((value, length), strict=False)


def test_prefix_built_from_an_int_is_ipaddress_own() -> None:
    """network_from_int skips ipaddress's parser: equal, hashed, printed, sorted
    and answering as ipaddress's networks, on random and edge networks (the
    IPv6 forms glibc prints with an embedded IPv4 address among them)."""
    rng = random.Random(11)
    cases = [(4, 0, 0), (4, 2**32 - 1, 32), (6, 0, 0), (6, 1, 128), (6, 0xFFFF_0000_0001, 128),
             (6, 0x0102_0304, 128), (6, 2**128 - 1, 128), (6, 0x2001_0DB8 << 96, 128)]  # fmt: skip
    for _ in range(3000):
        version = rng.choice((4, 6))
        bits = 32 if version == 4 else 128
        value = rng.getrandbits(rng.choice([b for b in (8, 32, 48, 64, 96, 128) if b <= bits]))
        cases.append((version, value, rng.choice((bits, bits - 1, rng.randint(0, bits)))))
    for version, value, length in cases:
        fast, ref = network_from_int(version, value, length), _reference(version, value, length)
        assert fast == ref and hash(fast) == hash(ref), (version, value, length)
        assert str(fast) == str(ref) and repr(fast).endswith(f"('{ref}')")
        assert (fast.network_address, fast.netmask, fast.prefixlen) == (
            ref.network_address, ref.netmask, ref.prefixlen)  # fmt: skip
        assert fast.broadcast_address == ref.broadcast_address
        assert prefix_key(fast) == (ref.version, int(ref.network_address), ref.prefixlen)
        if length >= ref.max_prefixlen - 1:  # (a host route, or two addresses)
            assert list(fast.hosts()) == list(ref.hosts())
        assert parse_network(str(fast)) == fast


@pytest.mark.parametrize(
    ("version", "value", "length"),
    [(4, 2**32, 32), (4, -1, 32), (4, 1, 33), (6, 2**128, 128), (6, 1, -1)],
)
def test_prefix_from_an_int_out_of_range_is_refused(version: int, value: int, length: int) -> None:
    with pytest.raises(ValueError, match=f"IPv{version}"):
        network_from_int(version, value, length)


def test_canonical_of_an_int_is_the_live_object() -> None:
    held = parse_prefix("198.19.0.9/32")
    assert canonical_of(4, int(held.network_address), 32) is held
    net = canonical_of(6, 0x2001_0DB8 << 96 | 5, 128)
    assert net == ipaddress.ip_network("2001:db8::5/128") and parse_prefix("2001:db8::5") is net
    # host bits set: the network of it, keyed as canonical() keys it
    assert canonical_of(4, int(held.network_address) + 1, 24) is canonical(
        parse_network("198.19.0.0/24")
    )
