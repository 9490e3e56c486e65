"""frrctl's element in a libvirt domain's `<metadata>`: which addresses each NIC carries.

    <metadata>
      <frrctl:instance xmlns:frrctl="urn:frrctl:libvirt:1">
        <frrctl:interface mac="52:54:00:12:34:56">
          <frrctl:ip address="192.0.2.10"/>
          <frrctl:ip address="2001:db8:100::10"/>
        </frrctl:interface>
      </frrctl:instance>
    </metadata>

One `interface` per routed NIC, matched to the domain's `<interface>` by MAC;
each `ip` is one host address (/32 or /128, the prefix length may be given).
The root element is found by its namespace URI; below it, names are matched
without namespace (virDomainSetMetadata puts only the root and its children in
the namespace, `virsh edit` may put all of them). A domain without the
element is not frrctl's. Pure: parse and render only, errors one line.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from frrctl.errors import UsageError
from frrctl.host.validate import parse_host_address, parse_mac
from frrctl.pools import IPAddress

NS = "urn:frrctl:libvirt:1"
PREFIX = "frrctl"  # the key libvirt stores the element under
_Q = f"{{{NS}}}"


class MetadataError(UsageError):
    """The frrctl metadata of a domain is unusable; the message says why, in one line."""


@dataclass(frozen=True)
class Nic:
    mac: str
    addresses: tuple[IPAddress, ...]


def _sorted(addrs: Sequence[IPAddress]) -> tuple[IPAddress, ...]:
    return tuple(sorted(set(addrs), key=lambda a: (a.version, int(a))))


def parse_element(elem: ET.Element) -> tuple[Nic, ...]:
    """`<frrctl:instance>` -> its NICs; MetadataError on anything malformed.

    virDomainGetMetadata returns the element without its namespace: a plain
    `<instance>` root is accepted too.
    """
    if elem.tag not in (f"{_Q}instance", "instance"):
        raise MetadataError(f"frrctl metadata: root element is {elem.tag!r}, expected instance")
    nics: dict[str, Nic] = {}
    seen: dict[IPAddress, str] = {}
    for child in elem:
        if _local(child.tag) != "interface":
            raise MetadataError(f"frrctl metadata: unknown element {_local(child.tag)!r}")
        raw_mac = child.get("mac")
        if raw_mac is None:
            raise MetadataError("frrctl metadata: an interface has no mac attribute")
        try:
            mac = parse_mac(raw_mac)
        except UsageError as exc:
            raise MetadataError(f"frrctl metadata: {exc}") from None
        if mac in nics:
            raise MetadataError(f"frrctl metadata: interface {mac} is given twice")
        addrs: list[IPAddress] = []
        for ip in child:
            if _local(ip.tag) != "ip" or ip.get("address") is None:
                raise MetadataError(
                    f"frrctl metadata: interface {mac}: expected <ip address=.../>, "
                    f"got {_local(ip.tag)!r}"
                )
            try:
                addr = parse_host_address(ip.get("address") or "")
            except UsageError as exc:
                raise MetadataError(f"frrctl metadata: interface {mac}: {exc}") from None
            if addr in seen:
                raise MetadataError(
                    f"frrctl metadata: {addr} is given for interface {seen[addr]} and {mac}"
                )
            seen[addr] = mac
            addrs.append(addr)
        if not addrs:
            raise MetadataError(f"frrctl metadata: interface {mac} has no address")
        nics[mac] = Nic(mac, _sorted(addrs))
    return tuple(nics[m] for m in sorted(nics))


def parse(text: str) -> tuple[Nic, ...]:
    """The element as libvirt returns it from virDomainGetMetadata."""
    try:
        elem = ET.fromstring(text)
    except ET.ParseError as exc:
        raise MetadataError(f"frrctl metadata is not XML: {exc}") from None
    return parse_element(elem)


def find(domain_xml: ET.Element) -> ET.Element | None:
    """frrctl's element in a parsed domain XML, or None (not frrctl's domain)."""
    meta = domain_xml.find("metadata")
    return None if meta is None else meta.find(f"{_Q}instance")


def render(nics: Sequence[Nic], namespaced: bool = True) -> str:
    """The element, deterministic (MACs and addresses sorted).

    `namespaced=False`: the form virDomainSetMetadata takes (it adds the
    namespace itself, under PREFIX, and fails if the element declares it).
    """
    p = f"{PREFIX}:" if namespaced else ""
    decl = f' xmlns:{PREFIX}="{NS}"' if namespaced else ""
    lines = [f"<{p}instance{decl}>"]
    for nic in sorted(nics, key=lambda n: n.mac):
        lines.append(f'  <{p}interface mac="{nic.mac}">')
        for addr in _sorted(nic.addresses):
            lines.append(f'    <{p}ip address="{addr}"/>')
        lines.append(f"  </{p}interface>")
    lines.append(f"</{p}instance>")
    return "\n".join(lines) + "\n"


def with_nic(
    current: Sequence[Nic], mac: str, addresses: Sequence[IPAddress] | None
) -> tuple[Nic, ...]:
    """`current` with MAC's addresses replaced (None: the interface removed)."""
    out: Mapping[str, Nic] = {n.mac: n for n in current if n.mac != mac}
    nics = dict(out)
    if addresses:
        nics[mac] = Nic(mac, _sorted(addresses))
    return tuple(nics[m] for m in sorted(nics))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
