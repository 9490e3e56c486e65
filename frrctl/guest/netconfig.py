"""What a routed guest needs to configure itself: /32 and /128, on-link gateways.

One model (`GuestNet`), several renderings:

* `netplan`: cloud-init network-config version 2, matched by MAC: addresses
  as /32 and /128, `accept-ra: false`, no DHCP, `gateway4: 169.254.0.1` with
  a link route `169.254.0.1/32 via 0.0.0.0`, `gateway6: fe80::1`,
  nameservers. Meant for netplan guests (cloud-init passes it through); it
  also survives cloud-init 22.4's ENI and networkd renderers, which drop the
  `on-link` flag a default route would need (see netplan());
* `network-data`: OpenStack `network_data.json`, as ConfigDrive carries it;
  what Debian (ENI/ifupdown) and systemd-networkd guests should read. The
  format has no on-link flag, so each family names its gateway as the
  network's `gateway` (cloud-init's ENI renderer turns that into ifupdown's
  `gateway`, i.e. `ip route add default via GW dev eth0 onlink`, and
  `ip -6 route replace default via fe80::1 dev eth0 onlink`); a `::/0` or
  `0.0.0.0/0` *route* instead becomes a device-less `route add ... || true`,
  which fails for a link-local gateway and hides the failure. The first IPv4
  network also carries a link route to 169.254.0.1 (for networkd and netplan,
  which have no onlink here) and `pointopoint: 169.254.0.1` (ifupdown's
  `ip addr add X/32 peer 169.254.0.1`);
* `windows`: PowerShell for the same (adapter found by MAC; an on-link route
  to the gateway, then the default routes);
* `ip`: the iproute2 commands (what the lab runs in a VM namespace).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from frrctl.errors import UsageError
from frrctl.host import GATEWAY4, GATEWAY6
from frrctl.host.validate import parse_addresses, parse_mac
from frrctl.pools import IPAddress

FORMATS = ("netplan", "network-data", "windows", "ip", "json")


@dataclass(frozen=True)
class GuestNet:
    mac: str
    addresses: tuple[IPAddress, ...]
    dns: tuple[IPAddress, ...] = ()
    ifname: str = "eth0"
    mtu: int | None = None

    @classmethod
    def parse(
        cls,
        mac: str,
        addresses: Sequence[str],
        dns: Sequence[str] = (),
        ifname: str = "eth0",
        mtu: int | None = None,
    ) -> GuestNet:
        servers: list[IPAddress] = []
        for text in dns:
            try:
                servers.append(ipaddress.ip_address(text))
            except ValueError:
                raise UsageError(f"--dns {text!r} is not an IP address") from None
        if mtu is not None and not 576 <= mtu <= 65535:
            raise UsageError(f"--mtu {mtu} is outside 576..65535")
        return cls(parse_mac(mac), parse_addresses(addresses), tuple(servers), ifname, mtu)

    @property
    def v4(self) -> list[IPAddress]:
        return [a for a in self.addresses if a.version == 4]

    @property
    def v6(self) -> list[IPAddress]:
        return [a for a in self.addresses if a.version == 6]


def _cidr(addr: IPAddress) -> str:
    return f"{addr}/{addr.max_prefixlen}"


def netplan(g: GuestNet) -> dict[str, Any]:
    eth: dict[str, Any] = {
        "match": {"macaddress": g.mac},
        "set-name": g.ifname,
        "addresses": [_cidr(a) for a in g.addresses],
        "dhcp4": False,
        "dhcp6": False,
        "accept-ra": False,
    }
    if g.mtu:
        eth["mtu"] = g.mtu
    if g.v4:
        # `gateway4` and a link route to it, not a 0.0.0.0/0 route with `on-link`:
        # cloud-init 22.4 drops on-link when it renders v2 as ENI or networkd, while
        # gateway4 becomes ifupdown's `gateway` (added `onlink`) and networkd's
        # Gateway=, which the link route makes reachable (netplan: the same).
        eth["gateway4"] = str(GATEWAY4)
        eth["routes"] = [{"to": f"{GATEWAY4}/32", "via": "0.0.0.0"}]
    if g.v6:
        # `gateway6`, not a `::/0` route: cloud-init 22.4 turns a v2 route to ::/0
        # into ::/64 when it renders ENI or networkd; gateway6 survives every
        # renderer, and a link-local gateway is on-link by definition.
        eth["gateway6"] = str(GATEWAY6)
    if g.dns:
        eth["nameservers"] = {"addresses": [str(a) for a in g.dns]}
    return {"network": {"version": 2, "ethernets": {g.ifname: eth}}}


def netplan_yaml(g: GuestNet) -> str:
    return yaml.safe_dump(netplan(g), sort_keys=False, default_flow_style=False)


def network_data(g: GuestNet) -> dict[str, Any]:
    link_id = "interface0"
    link: dict[str, Any] = {
        "id": link_id, "type": "phy", "ethernet_mac_address": g.mac, "vif_id": g.mac,
    }  # fmt: skip
    if g.mtu:
        link["mtu"] = g.mtu
    networks: list[dict[str, Any]] = []
    for i, addr in enumerate(g.v4):
        net: dict[str, Any] = {
            "id": f"network{len(networks)}",
            "type": "ipv4",
            "link": link_id,
            "ip_address": str(addr),
            "netmask": "255.255.255.255",
            "network_id": f"routed-v4-{i}",
            "routes": [],
        }
        if i == 0:
            # ENI: `pointopoint` = `ip addr add X/32 peer GW`, a kernel route to the
            # gateway; networkd and netplan get the link route instead.
            net["pointopoint"] = str(GATEWAY4)
            net["gateway"] = str(GATEWAY4)
            net["routes"] = [
                {"network": str(GATEWAY4), "netmask": "255.255.255.255", "gateway": "0.0.0.0"},
            ]
        networks.append(net)
    for i, addr in enumerate(g.v6):
        net = {
            "id": f"network{len(networks)}",
            "type": "ipv6",
            "link": link_id,
            "ip_address": str(addr),
            "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "network_id": f"routed-v6-{i}",
            "routes": [],
        }
        if i == 0:
            # the network's gateway, not a ::/0 route: see the module docstring
            net["gateway"] = str(GATEWAY6)
        networks.append(net)
    services = [{"type": "dns", "address": str(a)} for a in g.dns]
    return {"links": [link], "networks": networks, "services": services}


def windows(g: GuestNet) -> str:
    """PowerShell (Windows Server 2012+): static /32 and /128, on-link gateways."""
    mac = g.mac.upper().replace(":", "-")
    lines = [
        "# frrctl guest-config: routed /32 and /128, gateways 169.254.0.1 and fe80::1 on-link",
        "$ErrorActionPreference = 'Stop'",
        f"$if = (Get-NetAdapter | Where-Object {{ $_.MacAddress -eq '{mac}' }}).ifIndex",
        f"if (-not $if) {{ throw 'no network adapter with MAC {mac}' }}",
    ]
    if g.mtu:
        lines.append(f"Set-NetIPInterface -InterfaceIndex $if -NlMtuBytes {g.mtu}")
    if g.v4:
        lines += [
            "Set-NetIPInterface -InterfaceIndex $if -AddressFamily IPv4 -Dhcp Disabled",
            "Remove-NetRoute -InterfaceIndex $if -AddressFamily IPv4 -Confirm:$false "
            "-ErrorAction SilentlyContinue",
        ]
        lines += [
            f"New-NetIPAddress -InterfaceIndex $if -IPAddress {a} -PrefixLength 32 "
            "-SkipAsSource $false | Out-Null"
            for a in g.v4
        ]
        lines += [
            # netsh: route add 169.254.0.1/32 interface=$if nexthop=0.0.0.0 (on-link)
            f"New-NetRoute -InterfaceIndex $if -DestinationPrefix {GATEWAY4}/32 "
            "-NextHop 0.0.0.0 | Out-Null",
            f"New-NetRoute -InterfaceIndex $if -DestinationPrefix 0.0.0.0/0 -NextHop {GATEWAY4}"
            " | Out-Null",
        ]
    if g.v6:
        lines += [
            "Set-NetIPInterface -InterfaceIndex $if -AddressFamily IPv6 -RouterDiscovery "
            "Disabled -Dhcp Disabled",
        ]
        lines += [
            f"New-NetIPAddress -InterfaceIndex $if -IPAddress {a} -PrefixLength 128 | Out-Null"
            for a in g.v6
        ]
        lines.append(
            f"New-NetRoute -InterfaceIndex $if -DestinationPrefix ::/0 -NextHop {GATEWAY6}"
            " | Out-Null"
        )
    if g.dns:
        servers = ",".join(f"'{a}'" for a in g.dns)
        lines.append(f"Set-DnsClientServerAddress -InterfaceIndex $if -ServerAddresses {servers}")
    return "\r\n".join(lines) + "\r\n"


def ip_commands(g: GuestNet, ifname: str | None = None) -> list[list[str]]:
    """iproute2 argv lists that configure a Linux guest (or a lab VM namespace).

    The MAC is set before the link comes up: the guest's EUI-64 link-local
    address (the one the port guard allows by default) derives from it.
    """
    dev = ifname or g.ifname
    cmds: list[list[str]] = [["ip", "link", "set", "dev", dev, "address", g.mac]]
    if g.mtu:
        cmds.append(["ip", "link", "set", "dev", dev, "mtu", str(g.mtu)])
    cmds.append(["ip", "link", "set", "dev", dev, "up"])
    cmds += [["ip", "addr", "add", _cidr(a), "dev", dev] for a in g.v4]
    cmds += [["ip", "-6", "addr", "add", _cidr(a), "dev", dev, "nodad"] for a in g.v6]
    if g.v4:
        cmds.append(["ip", "route", "add", "default", "via", str(GATEWAY4), "dev", dev, "onlink"])
    if g.v6:
        cmds.append(["ip", "-6", "route", "add", "default", "via", str(GATEWAY6), "dev", dev])
    return cmds


def render(g: GuestNet, fmt: str) -> str:
    if fmt == "netplan":
        return netplan_yaml(g)
    if fmt == "network-data":
        return json.dumps(network_data(g), indent=2) + "\n"
    if fmt == "windows":
        return windows(g)
    if fmt == "ip":
        return "".join(" ".join(c) + "\n" for c in ip_commands(g))
    if fmt == "json":
        return (
            json.dumps(
                {
                    "mac": g.mac,
                    "ifname": g.ifname,
                    "addresses": [_cidr(a) for a in g.addresses],
                    "gateway4": str(GATEWAY4) if g.v4 else None,
                    "gateway6": str(GATEWAY6) if g.v6 else None,
                    "dns": [str(a) for a in g.dns],
                    "mtu": g.mtu,
                    "ip_commands": ip_commands(g),
                },
                indent=2,
            )
            + "\n"
        )
    raise UsageError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
