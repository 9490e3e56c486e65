"""`frrctl host setup`: create or repair the routed VM bridge in the current netns.

What a guest with `default via 169.254.0.1 onlink` / `default via fe80::1`
needs from the host, and why each setting is here:

* the bridge: no uplink ports, STP off, forward delay 0 (a VM port forwards
  at once), a fixed MAC (`02:a9:fe:00:00:01` by default, the same on every
  host, so a migrated guest's ARP/ND cache for the gateway stays right, and
  the MAC does not follow the lowest port MAC as ports come and go);
* `169.254.0.1/32` and `fe80::1/64` (nodad, so the gateway answers at once);
  no EUI-64 link-local next to fe80::1 (addr_gen_mode=1), no RA, no autoconf,
  no DAD on the bridge;
* forwarding on for IPv4 and IPv6;
* ARP: the guest asks "who has 169.254.0.1, tell 192.0.2.30" from its /32.
  arp_ignore=1 answers only for addresses on the bridge itself (the host's
  other addresses are not advertised to guests), arp_announce=2, arp_filter
  off, proxy_arp off. rp_filter=1 (strict) on the bridge: an ARP request or a
  packet from a source that is not plugged on this bridge is not answered or
  forwarded, so an unplugged guest reaches nothing;
* NDP: fe80::1 answers neighbour solicitations like any address; proxy_ndp
  off, accept_redirects off;
* no redirects out of the bridge: send_redirects=0 and an nftables rule
  (IPv6 has no sysctl for it). VM ports are isolated from each other, so a
  redirect telling guest A to reach guest B directly would break them.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from frrctl.errors import FrrctlError
from frrctl.host import GATEWAY4, GATEWAY6
from frrctl.host.netlink import Netlink
from frrctl.host.nft import Nft

GATEWAY_MAC = "02:a9:fe:00:00:01"
IFA_F_NODAD = 0x02
IFA_F_PERMANENT = 0x80
PROC_SYS = Path("/proc/sys/net")


def bridge_sysctls(bridge: str) -> dict[str, str]:
    """Sysctl path (below /proc/sys/net) -> wanted value."""
    v4 = f"ipv4/conf/{bridge}"
    v6 = f"ipv6/conf/{bridge}"
    return {
        "ipv4/ip_forward": "1",
        "ipv6/conf/all/forwarding": "1",
        f"{v4}/forwarding": "1",
        f"{v4}/arp_ignore": "1",
        f"{v4}/arp_announce": "2",
        f"{v4}/arp_filter": "0",
        f"{v4}/proxy_arp": "0",
        f"{v4}/rp_filter": "1",
        f"{v4}/send_redirects": "0",
        f"{v4}/accept_redirects": "0",
        f"{v4}/accept_source_route": "0",
        f"{v6}/disable_ipv6": "0",
        f"{v6}/forwarding": "1",
        f"{v6}/addr_gen_mode": "1",
        f"{v6}/accept_ra": "0",
        f"{v6}/autoconf": "0",
        f"{v6}/accept_dad": "0",
        f"{v6}/dad_transmits": "0",
        f"{v6}/proxy_ndp": "0",
        f"{v6}/accept_redirects": "0",
    }


@dataclass
class SetupReport:
    bridge: str
    index: int = 0
    changes: list[str] = field(default_factory=list)
    extra_addresses: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "bridge": self.bridge,
            "index": self.index,
            "changed": bool(self.changes),
            "changes": self.changes,
            "extra_addresses": self.extra_addresses,
        }


def _sysctl(path: str, value: str, report: SetupReport, proc: Path = PROC_SYS) -> None:
    target = proc / path
    try:
        current = target.read_text().strip()
    except FileNotFoundError:
        raise FrrctlError(f"sysctl {target} does not exist") from None
    if current != value:
        try:
            target.write_text(value + "\n")
        except OSError as exc:
            raise FrrctlError(f"cannot set {target} to {value}: {exc.strerror}") from None
        report.changes.append(f"sysctl net/{path}: {current} -> {value}")


def setup_bridge(
    nl: Netlink, bridge: str, mac: str = GATEWAY_MAC, nft: Nft | None = None
) -> SetupReport:
    try:
        return _setup_bridge(nl, bridge, mac, nft)
    except NetlinkError as exc:
        raise FrrctlError(f"host setup of {bridge} failed: {exc.args[-1]}") from None


def _setup_bridge(nl: Netlink, bridge: str, mac: str, nft: Nft | None) -> SetupReport:
    report = SetupReport(bridge)
    ipr = nl.ipr
    link = nl.link(bridge)
    if link is None:
        try:
            ipr.link(
                "add", ifname=bridge, kind="bridge", br_stp_state=0, br_forward_delay=0,
                address=mac,
            )  # fmt: skip
        except NetlinkError as exc:
            raise FrrctlError(f"cannot create bridge {bridge}: {exc.args[-1]}") from None
        report.changes.append(f"created bridge {bridge}")
        link = nl.link(bridge)
        assert link is not None
    elif link.kind != "bridge":
        raise FrrctlError(f"{bridge} exists but is a {link.kind or 'plain'} device, not a bridge")
    report.index = link.index

    # IPv6 settings before the link goes up, so that no EUI-64 address appears.
    for path, value in bridge_sysctls(bridge).items():
        if path.startswith("ipv6/conf/" + bridge):
            _sysctl(path, value, report)

    info = link.raw.get_attr("IFLA_LINKINFO")
    data = info.get_attr("IFLA_INFO_DATA") if info else None
    stp = data.get_attr("IFLA_BR_STP_STATE") if data else None
    fwd = data.get_attr("IFLA_BR_FORWARD_DELAY") if data else None
    # STP first: the kernel refuses forward delay 0 while STP is on.
    if stp != 0:
        ipr.link("set", index=link.index, kind="bridge", br_stp_state=0)
        report.changes.append(f"bridge stp_state {stp} -> 0")
    if fwd != 0:
        ipr.link("set", index=link.index, kind="bridge", br_forward_delay=0)
        report.changes.append(f"bridge forward_delay {fwd} -> 0")
    if (link.mac or "").lower() != mac:
        ipr.link("set", index=link.index, address=mac)
        report.changes.append(f"bridge MAC {link.mac} -> {mac}")

    _ensure_addresses(nl, link.index, report)

    if not link.up:
        ipr.link("set", index=link.index, state="up")
        report.changes.append(f"{bridge} up")

    for path, value in bridge_sysctls(bridge).items():
        if not path.startswith("ipv6/conf/" + bridge):
            _sysctl(path, value, report)

    nft = nft or Nft()
    if not nft.host_ok(bridge):
        from frrctl.host.nft import host_script

        nft.run(host_script(bridge))
        report.changes.append(f"nftables inet frrctl: no redirects out of {bridge}")
    return report


def _ensure_addresses(nl: Netlink, index: int, report: SetupReport) -> None:
    ipr = nl.ipr
    have: dict[tuple[str, int], Any] = {}
    for msg in ipr.get_addr(index=index):
        addr = msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL")
        have[(str(ipaddress.ip_address(addr)), int(msg["prefixlen"]))] = msg
    wanted = {(str(GATEWAY4), 32), (str(GATEWAY6), 64)}
    for (addr, plen), _msg in sorted(have.items()):
        if (addr, plen) in wanted:
            continue
        ip = ipaddress.ip_address(addr)
        if ip in (GATEWAY4, GATEWAY6) or (ip.version == 6 and ip.is_link_local):
            # the gateway with a wrong prefix, or an auto-generated link-local
            ipr.addr("del", index=index, address=addr, prefixlen=plen)
            report.changes.append(f"removed {addr}/{plen}")
        else:
            report.extra_addresses.append(f"{addr}/{plen}")
    if (str(GATEWAY4), 32) not in have:
        ipr.addr("add", index=index, address=str(GATEWAY4), prefixlen=32)
        report.changes.append(f"added {GATEWAY4}/32")
    if (str(GATEWAY6), 64) not in have:
        try:
            ipr.addr(
                "add", index=index, address=str(GATEWAY6), prefixlen=64,
                flags=IFA_F_NODAD | IFA_F_PERMANENT,
            )  # fmt: skip
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise
        report.changes.append(f"added {GATEWAY6}/64 nodad")
