"""Prefix objects the daemon holds by the 10,000: one per prefix (canonical), and
no per-object `hosts` closure, with the answers ipaddress gives."""

from __future__ import annotations

import gc
import ipaddress

import pytest

from frrctl.policy import canonical, parse_prefix
from frrctl.pools import network_of, parse_network


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
