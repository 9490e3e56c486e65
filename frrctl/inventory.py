"""Fleet inventory: one YAML file -> a validated, immutable model.

Keys are kebab-case as an operator writes them (snake_case is refused with the
kebab-case spelling to use). Host settings default to the `defaults:` section
and a host overrides any of them. Every error is one line naming the host and
the key, so that `frrctl render` can say exactly what to fix. Nothing is
reinterpreted: a YAML number that is not what the key means is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from frrctl.errors import InventoryError
from frrctl.host import GATEWAY4, GATEWAY6
from frrctl.pools import PoolEntry, Pools

# Linux refuses '/', ':' and whitespace in interface names, and "." and "..".
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ASN_MAX = 4294967295
ASPLAIN_RE = re.compile(r"^(0|[1-9][0-9]*)$")
ASDOT_RE = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
# ASNs no session may use: FRR takes them, the peer or the protocol does not.
RESERVED_ASNS = {
    23456: "AS_TRANS, the placeholder of 4-byte ASNs (RFC 6793)",
    65535: "reserved (RFC 7300)",
    4294967295: "reserved (RFC 7300)",
}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Ranges where no uplink address, neighbour, router-id or pool entry may lie.
# The link-local ones hold the VM bridge's fixed gateways.
SPECIAL_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), what)
    for net, what in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", f"link-local, where the VM bridge's gateway {GATEWAY4} lives"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved or broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("fe80::/10", f"link-local, where the VM bridge's gateway {GATEWAY6} lives"),
        ("ff00::/8", "multicast"),
    )
)


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Model(BaseModel):
    # kebab-case only: no populate_by_name, so `router_id` is never a second spelling
    model_config = ConfigDict(extra="forbid", alias_generator=_kebab, frozen=True)


def special_range(first: int, last: int, version: int) -> str | None:
    """'169.254.0.0/16 (link-local, ...)' when [first, last] touches a special range."""
    for net, what in SPECIAL_RANGES:
        if (
            net.version == version
            and first <= int(net.broadcast_address)
            and int(net.network_address) <= last
        ):
            return f"{net} ({what})"
    return None


def _ordinary(addr: IPAddress) -> IPAddress:
    """The address itself, or ValueError when it is no unicast address of a real node."""
    if reason := special_range(int(addr), int(addr), addr.version):
        raise ValueError(f"{addr} is inside {reason}")
    return addr


def _ifname(value: str) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"{value!r} is not a valid interface name (1-15 characters)")
    return value


def _asn(value: Any) -> int:
    """ASN as an integer from asplain (an integer) or asdot text ('65000.7').

    YAML reads an unquoted `65000.7` as the decimal number 65000.7: refused,
    never truncated into AS 65000.
    """
    if isinstance(value, float):
        raise ValueError(
            f"{value!r} was read by YAML as a decimal number, not an ASN: "
            f"quote an asdot ASN ('{value!r}') or write it asplain"
        )
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not an ASN")
    if isinstance(value, int):
        asn = value
    elif ASPLAIN_RE.match(value):
        asn = int(value)
    elif match := ASDOT_RE.match(value):
        high, low = int(match[1]), int(match[2])
        if high > 65535 or low > 65535:
            raise ValueError(f"asdot ASN {value!r}: both parts must be 0..65535")
        asn = high * 65536 + low
    else:
        raise ValueError(f"{value!r} is not an ASN (asplain 65001 or asdot '1.10')")
    if not 1 <= asn <= ASN_MAX:
        raise ValueError(f"ASN {asn} is outside 1..{ASN_MAX}")
    if asn in RESERVED_ASNS:
        raise ValueError(f"ASN {asn} is {RESERVED_ASNS[asn]}")
    return asn


def _ipv4(value: Any) -> str:
    return str(_ordinary(ipaddress.IPv4Address(str(value))))


def _ipv6(value: Any) -> str:
    return str(_ordinary(ipaddress.IPv6Address(str(value))))


def _area(value: Any) -> str:
    """OSPF area in dotted form; an integer is accepted and converted."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(ipaddress.IPv4Address(value))
    return str(ipaddress.IPv4Address(str(value)))


def _text_list(value: Any) -> Any:
    """YAML reads an unquoted `2001:db8::` in a flow list as a mapping: say so."""
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                raise ValueError(
                    f"{item!r} is not an address: quote IPv6 addresses that end in '::'"
                )
        return [str(item) for item in value]
    return value


TextList = Annotated[list[str], BeforeValidator(_text_list)]
IfName = Annotated[str, BeforeValidator(_ifname)]
Asn = Annotated[int, BeforeValidator(_asn)]
IPv4 = Annotated[str, BeforeValidator(_ipv4)]
IPv6 = Annotated[str, BeforeValidator(_ipv6)]
Area = Annotated[str, BeforeValidator(_area)]
RemoteAs = Annotated[
    int | Literal["external", "internal"],
    BeforeValidator(lambda v: v if v in ("external", "internal") else _asn(v)),
]


class PoolSpec(Model):
    ipv4: TextList = Field(default_factory=list)
    ipv6: TextList = Field(default_factory=list)

    def build(self) -> Pools:
        return Pools.parse(self.ipv4, self.ipv6)

    @model_validator(mode="after")
    def _valid(self) -> PoolSpec:
        pools = self.build()  # raises ValueError naming the bad or overlapping entry
        for entry in (*pools.ipv4, *pools.ipv6):
            if reason := special_range(entry.first, entry.last, entry.version):
                raise ValueError(f"pool entry {entry.text!r} overlaps {reason}")
        return self


class BgpUplink(Model):
    """BGP on an uplink: numbered `neighbors`, or `unnumbered: true` on the interface."""

    neighbors: TextList = Field(default_factory=list)
    unnumbered: bool = False
    remote_as: RemoteAs | None = None
    bfd: bool | None = None

    @field_validator("neighbors")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for text in value:
            neighbor = str(_ordinary(ipaddress.ip_address(str(text))))
            if neighbor in out:
                raise ValueError(f"neighbor {neighbor} is listed twice")
            out.append(neighbor)
        return out

    @model_validator(mode="after")
    def _numbered_or_not(self) -> BgpUplink:
        if self.unnumbered and self.neighbors:
            raise ValueError("give either neighbors (numbered) or unnumbered: true, not both")
        if not self.unnumbered and not self.neighbors:
            raise ValueError("BGP needs neighbors (numbered) or unnumbered: true")
        return self


class OspfUplink(Model):
    area: Area
    cost: int | None = Field(default=None, ge=1, le=65535)
    bfd: bool | None = None

    @field_validator("area")
    @classmethod
    def _not_backbone(cls, value: str) -> str:
        # A hypervisor sits in its own NSSA area (frr.conf.j2), and the
        # backbone cannot be one: ospfd refuses `area 0.0.0.0 nssa`.
        if value == "0.0.0.0":
            raise ValueError(
                "area 0.0.0.0 is the backbone: a hypervisor's uplink is in its own "
                "non-backbone area, rendered as an NSSA (which area 0 cannot be)"
            )
        return value


class Uplink(Model):
    interface: IfName
    addresses: TextList = Field(default_factory=list)
    bgp: BgpUplink | None = None
    ospf: OspfUplink | None = None
    ospf6: OspfUplink | None = None
    bfd: bool | None = None

    @field_validator("interface")
    @classmethod
    def _not_loopback(cls, value: str) -> str:
        if value == "lo":
            raise ValueError("the loopback cannot be an uplink")
        return value

    @field_validator("addresses")
    @classmethod
    def _interfaces(cls, value: list[str]) -> list[str]:
        out: list[str] = []
        for text in value:
            if "/" not in str(text):
                raise ValueError(f"{text!r} needs a prefix length (e.g. 198.18.0.1/31)")
            iface = ipaddress.ip_interface(str(text))
            net = iface.network
            if reason := special_range(
                int(net.network_address), int(net.broadcast_address), net.version
            ):
                raise ValueError(f"{iface} overlaps {reason}")
            if what := _reserved_in_subnet(iface.ip, net):
                raise ValueError(f"{iface} is the {what}")
            if any(ipaddress.ip_interface(o).network.overlaps(net) for o in out):
                raise ValueError(f"{iface} overlaps another address of this uplink")
            out.append(str(iface))
        return out

    @model_validator(mode="after")
    def _protocols(self) -> Uplink:
        if not (self.bgp or self.ospf or self.ospf6):
            raise ValueError(f"uplink {self.interface} runs no protocol (bgp, ospf or ospf6)")
        ifaces = [ipaddress.ip_interface(a) for a in self.addresses]
        if self.ospf and not any(i.version == 4 for i in ifaces):
            raise ValueError(f"ospf on {self.interface} needs an IPv4 address in addresses")
        if self.bgp and ifaces:
            for neighbor in self.bgp.neighbors:
                self._check_neighbor(ipaddress.ip_address(neighbor), ifaces)
        return self

    def _check_neighbor(
        self, addr: IPAddress, ifaces: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    ) -> None:
        """A numbered neighbour is another node on one of the uplink's subnets."""
        if not any(i.version == addr.version for i in ifaces):
            raise ValueError(
                f"neighbor {addr} is IPv{addr.version} but {self.interface} has no "
                f"IPv{addr.version} address"
            )
        for iface in ifaces:
            if addr == iface.ip:
                raise ValueError(f"neighbor {addr} is {self.interface}'s own address")
            if addr in iface.network:
                if what := _reserved_in_subnet(addr, iface.network):
                    raise ValueError(f"neighbor {addr} is the {what}")
                return
        raise ValueError(f"neighbor {addr} is not on any address of {self.interface}")

    def interface_addresses(
        self, version: int
    ) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        out = [ipaddress.ip_interface(a) for a in self.addresses]
        return [a for a in out if a.version == version]

    def has_bfd(self, host_default: bool) -> bool:
        return bool(self.bfd if self.bfd is not None else host_default)


def _reserved_in_subnet(addr: IPAddress, net: IPNetwork) -> str | None:
    """The network/broadcast address of an IPv4 subnet (/31 and /32 have none), or
    an IPv6 subnet's Subnet-Router anycast address (none on /127 and /128)."""
    if net.version == 4 and net.prefixlen <= 30:
        if addr == net.network_address:
            return f"network address of {net}"
        if addr == net.broadcast_address:
            return f"broadcast address of {net}"
    if net.version == 6 and net.prefixlen <= 126 and addr == net.network_address:
        return f"Subnet-Router anycast address of {net}"
    return None


class ControllerSettings(Model):
    """Settings of the announcement daemon (`mode: controller`)."""

    # grpc: staticd routes over FRR's northbound gRPC (frrctl.frr.staticd)
    driver: Literal["vtysh", "grpc"] = "vtysh"
    max_prefixes: int = Field(default=10000, ge=1)
    require_neighbor: bool = False
    # vtysh driver: bgpd's `bgp network import-check` as a second guard (bgpd
    # itself withdraws a `network` whose kernel route went, even with the
    # daemon down). It costs bgpd and zebra a nexthop registration per prefix:
    # 10,000 prefixes take ~40% longer. Off, the daemon is the only guard.
    import_check: bool = False
    grpc_port: int = Field(default=50051, ge=1, le=65535)
    metrics_port: int = Field(default=9342, ge=1, le=65535)

    @field_validator("driver", mode="before")
    @classmethod
    def _renamed(cls, value: object) -> object:
        if value == "grpc-static":  # the name it had while a second gRPC driver existed
            raise ValueError("driver grpc-static is now called grpc: write `driver: grpc`")
        return value


class HostSettings(Model):
    """Everything a host may set and `defaults:` may preset."""

    asn: Asn | None = None
    remote_as: RemoteAs | None = None
    mode: Literal["redistribute", "controller"] = "redistribute"
    bfd: bool = False
    uplinks: list[Uplink] = Field(default_factory=list)
    pools: PoolSpec | None = None
    controller: ControllerSettings = Field(default_factory=ControllerSettings)


class Host(HostSettings):
    hostname: str
    router_id: IPv4

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not HOSTNAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid hostname")
        return value

    @model_validator(mode="after")
    def _complete(self) -> Host:
        # A host-level check has no pydantic location below the host: each
        # message starts with the key it is about.
        if not self.uplinks:
            raise ValueError("key 'uplinks': no uplinks (set them on the host or in defaults)")
        names = [u.interface for u in self.uplinks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"key 'uplinks': uplink interface {name} is listed twice")
        if any(u.bgp for u in self.uplinks) and self.asn is None:
            raise ValueError("key 'asn': BGP uplinks need asn (on the host or in defaults)")
        for index, uplink in enumerate(self.uplinks):
            if uplink.bgp and uplink.bgp.remote_as is None and self.remote_as is None:
                raise ValueError(
                    f"key 'uplinks[{index}].bgp.remote-as': BGP on {uplink.interface} needs "
                    "remote-as (on the uplink, the host or in defaults)"
                )
        self._check_uplinks_apart()
        return self

    def _check_uplinks_apart(self) -> None:
        """No subnet on two uplinks, no neighbour on two, none that is the host itself:
        FRR would get duplicate `neighbor` statements or refuse them at load."""
        nets: dict[IPNetwork, str] = {}
        own: set[IPAddress] = set()
        for index, uplink in enumerate(self.uplinks):
            for iface in uplink.interface_addresses(4) + uplink.interface_addresses(6):
                for net, other in nets.items():
                    if net.overlaps(iface.network):
                        raise ValueError(
                            f"key 'uplinks[{index}].addresses': {iface} overlaps {other}"
                        )
                nets[iface.network] = f"{iface} on {uplink.interface}"
                own.add(iface.ip)
        where: dict[str, str] = {}
        for index, uplink in enumerate(self.uplinks):
            for neighbor in uplink.bgp.neighbors if uplink.bgp else []:
                key = f"key 'uplinks[{index}].bgp.neighbors'"
                if ipaddress.ip_address(neighbor) in own:
                    raise ValueError(f"{key}: neighbor {neighbor} is an address of this host")
                if neighbor in where:
                    raise ValueError(
                        f"{key}: neighbor {neighbor} is also a neighbor on {where[neighbor]}"
                    )
                where[neighbor] = uplink.interface

    @property
    def runs_bgp(self) -> bool:
        return any(u.bgp for u in self.uplinks)

    @property
    def runs_ospf(self) -> bool:
        return any(u.ospf for u in self.uplinks)

    @property
    def runs_ospf6(self) -> bool:
        return any(u.ospf6 for u in self.uplinks)

    @property
    def runs_bfd(self) -> bool:
        return any(
            u.has_bfd(self.bfd)
            or (u.bgp is not None and bool(u.bgp.bfd))
            or (u.ospf is not None and bool(u.ospf.bfd))
            or (u.ospf6 is not None and bool(u.ospf6.bfd))
            for u in self.uplinks
        )

    def remote_as_of(self, uplink: Uplink) -> int | str:
        assert uplink.bgp is not None
        value = uplink.bgp.remote_as if uplink.bgp.remote_as is not None else self.remote_as
        assert value is not None
        return value


class Fabric(Model):
    """The VM bridge; its gateways are fixed (frrctl.host.GATEWAY4/6), never set here."""

    bridge: IfName = "cloudbr0"
    pools: PoolSpec = Field(default_factory=PoolSpec)


class LabVm(Model):
    name: str
    host: str
    mac: str
    addresses: TextList
    # `lab up`: a network namespace, or a real QEMU guest started by a libvirtd on its host
    kind: Literal["namespace", "qemu"] = "namespace"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,9}$", value):
            raise ValueError(f"{value!r}: VM names are 1-10 of [a-z0-9-]")
        return value

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        mac = str(value).lower()
        if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            raise ValueError(f"{value!r} is not a unicast MAC address")
        return mac

    @field_validator("addresses")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            net = ipaddress.ip_network(str(text), strict=True)
            if net.prefixlen != net.max_prefixlen:
                raise ValueError(f"{text!r} is not a single address (/32 or /128)")
            out.append(str(net.network_address))
        if not out:
            raise ValueError("a VM needs at least one address")
        return out


class LabUpstream(Model):
    asn: Asn = 65000
    router_id: IPv4 = "198.51.100.254"
    loopback4: IPv4 = "198.51.100.254"
    loopback6: IPv6 = "2001:db8:ff::1"
    # Extra prefixes the upstream sends to every host: they must never reach
    # a host's kernel (guards: default-only import, FIB filter).
    extra_prefixes: list[str] = Field(
        default_factory=lambda: ["198.18.200.0/24", "2001:db8:ee::/48"]
    )


class LabPeer(Model):
    asn: Asn = 64999
    address: IPv4 = "198.18.255.1"
    upstream_address: IPv4 = "198.18.255.0"


class Lab(Model):
    upstream: LabUpstream = Field(default_factory=LabUpstream)
    exabgp: LabPeer = Field(default_factory=LabPeer)
    vms: list[LabVm] = Field(default_factory=list)


class Fleet(Model):
    fabric: Fabric = Field(default_factory=Fabric)
    defaults: dict[str, Any] = Field(default_factory=dict)
    hosts: list[Host]
    lab: Lab = Field(default_factory=Lab)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.hostname == name:
                return host
        raise InventoryError(f"no host {name!r} in the inventory")

    def pools_of(self, host: Host) -> Pools:
        """The pools a host may announce: its own override, else the fabric's."""
        return host.pools.build() if host.pools is not None else self.fabric.pools.build()

    def vms_on(self, hostname: str) -> list[LabVm]:
        return [vm for vm in self.lab.vms if vm.host == hostname]


# -- loading -----------------------------------------------------------------

HOST_DEFAULT_KEYS = {_kebab(k) for k in HostSettings.model_fields}


def _merge_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Apply `defaults:` to each host (a host's own key wins, whole value)."""
    data = dict(raw)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise InventoryError("defaults: must be a mapping")
    unknown = sorted(set(defaults) - HOST_DEFAULT_KEYS)
    if unknown:
        allowed = ", ".join(sorted(HOST_DEFAULT_KEYS))
        raise InventoryError(f"defaults: unknown key {unknown[0]!r} (allowed: {allowed})")
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise InventoryError("hosts: must be a non-empty list")
    merged = []
    for index, host in enumerate(hosts):
        if not isinstance(host, Mapping):
            raise InventoryError(f"hosts[{index}]: must be a mapping")
        merged.append({**defaults, **host})
    data["hosts"] = merged
    return data


def _where(loc: Sequence[int | str], raw: Mapping[str, Any]) -> str:
    """Turn a pydantic location into "host 'hv1': key 'uplinks[0].bgp.remote-as'"."""
    parts = list(loc)
    prefix = ""
    if len(parts) >= 2 and parts[0] == "hosts" and isinstance(parts[1], int):
        host = raw["hosts"][parts[1]]
        name = host.get("hostname") if isinstance(host, Mapping) else None
        prefix = f"host {name!r}" if isinstance(name, str) and name else f"hosts[{parts[1]}]"
        parts = parts[2:]
    elif len(parts) >= 3 and parts[:2] == ["lab", "vms"] and isinstance(parts[2], int):
        vm = raw["lab"]["vms"][parts[2]]
        name = vm.get("name") if isinstance(vm, Mapping) else None
        prefix = f"lab VM {name!r}" if isinstance(name, str) and name else f"lab.vms[{parts[2]}]"
        parts = parts[3:]
    key = ""
    for part in parts:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[")):
            key += ("." if key else "") + str(part)
    return ": ".join(p for p in (prefix, f"key {key!r}" if key else "") if p)


def _unknown_key(loc: Sequence[int | str]) -> str:
    if loc[-2:] in (("fabric", "gateway4"), ("fabric", "gateway6")):
        return f"the gateways are fixed at {GATEWAY4} and {GATEWAY6} on every host: remove the key"
    return "unknown key"


def _format(error: ValidationError, raw: Mapping[str, Any]) -> str:
    """One line: the first error, and how many more there are."""
    lines: list[str] = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = _unknown_key(item["loc"])
        elif item["type"] == "missing":
            message = "required key is missing"
        where = _where(item["loc"], raw)
        lines.append(f"{where}: {message}" if where else message)
    unique = list(dict.fromkeys(lines))
    more = f" (and {len(unique) - 1} more)" if len(unique) > 1 else ""
    return _one_line(unique[0] + more)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_kebab(raw: Mapping[str, Any]) -> None:
    """Keys are kebab-case everywhere: `router_id` is refused, never a second spelling."""

    def walk(node: Any, loc: tuple[int | str, ...]) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and "_" in key:
                    where = _where((*loc, key), raw)
                    raise InventoryError(
                        f"{where}: keys are kebab-case: write {_kebab(key)!r}, not {key!r}"
                    )
                walk(value, (*loc, key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, (*loc, index))

    walk(raw, ())


def _cross_checks(fleet: Fleet) -> None:
    """Checks across hosts: uniqueness, pools, lab VMs."""
    seen: dict[str, str] = {}
    for host in fleet.hosts:
        if host.hostname in seen:
            raise InventoryError(f"host {host.hostname!r}: key 'hostname': duplicate hostname")
        seen[host.hostname] = host.hostname
    ids: dict[str, str] = {}
    for host in fleet.hosts:
        if host.router_id in ids:
            raise InventoryError(
                f"host {host.hostname!r}: key 'router-id': {host.router_id} is already "
                f"used by host {ids[host.router_id]!r}"
            )
        ids[host.router_id] = host.hostname
        if fleet.fabric.bridge in {u.interface for u in host.uplinks}:
            raise InventoryError(
                f"host {host.hostname!r}: key 'uplinks': the bridge "
                f"{fleet.fabric.bridge} cannot be an uplink"
            )
        if host.pools is not None:
            fabric = fleet.fabric.pools.build()
            own = host.pools.build()
            for entry in (*own.ipv4, *own.ipv6):
                if not _entry_inside(entry, fabric):
                    raise InventoryError(
                        f"host {host.hostname!r}: key 'pools': {entry.text!r} is not inside "
                        "the fabric pools"
                    )
    if fleet.fabric.pools.build().is_empty():
        raise InventoryError("fabric: key 'pools': no pools: nothing could ever be announced")
    _check_uplinks_apart_from_pools(fleet)
    owners: dict[str, str] = {}
    names: set[str] = set()
    macs: set[str] = set()
    for vm in fleet.lab.vms:
        where = f"lab VM {vm.name!r}"
        if vm.name in names:
            raise InventoryError(f"{where}: key 'name': duplicate VM name")
        names.add(vm.name)
        if vm.mac in macs:
            raise InventoryError(f"{where}: key 'mac': {vm.mac} is used by another VM")
        macs.add(vm.mac)
        if vm.host not in seen:
            raise InventoryError(f"{where}: key 'host': no host {vm.host!r} in hosts")
        pools = fleet.pools_of(fleet.host(vm.host))
        for address in vm.addresses:
            if address in owners:
                raise InventoryError(
                    f"{where}: key 'addresses': {address} is already VM {owners[address]!r}'s"
                )
            owners[address] = vm.name
            if address not in pools:
                raise InventoryError(
                    f"{where}: key 'addresses': {address} is outside the pools of host {vm.host!r}"
                )


def _check_uplinks_apart_from_pools(fleet: Fleet) -> None:
    """An uplink address belongs to one host, and its subnet is no VM's: a pool
    overlapping it would let a VM take the host's or its router's address."""
    pools = fleet.fabric.pools.build()
    owners: dict[IPAddress, str] = {}
    for host in fleet.hosts:
        for index, uplink in enumerate(host.uplinks):
            where = f"host {host.hostname!r}: key 'uplinks[{index}].addresses'"
            for iface in uplink.interface_addresses(4) + uplink.interface_addresses(6):
                if iface.ip in owners:
                    raise InventoryError(
                        f"{where}: {iface.ip} is already an uplink address of {owners[iface.ip]}"
                    )
                owners[iface.ip] = f"host {host.hostname!r}"
                net = iface.network
                for entry in pools.entries(net.version):
                    if (
                        entry.first <= int(net.broadcast_address)
                        and int(net.network_address) <= entry.last
                    ):
                        raise InventoryError(
                            f"{where}: {iface} overlaps the fabric pool entry {entry.text!r}"
                        )


def _entry_inside(entry: PoolEntry, pools: Pools) -> bool:
    """True when a whole pool entry lies inside one entry of `pools`."""
    return any(
        other.version == entry.version and other.first <= entry.first and entry.last <= other.last
        for other in pools.entries(entry.version)
    )


def parse_inventory(raw: Any) -> Fleet:
    """Validate an already-parsed YAML document."""
    if not isinstance(raw, Mapping):
        raise InventoryError("invalid inventory: the top level must be a mapping")
    _check_kebab(raw)
    data = _merge_defaults(raw)
    try:
        fleet = Fleet.model_validate(data)
    except ValidationError as exc:
        raise InventoryError(_format(exc, data)) from None
    _cross_checks(fleet)
    return fleet


def load_inventory(path: str | Path) -> Fleet:
    """Read and validate an inventory file; InventoryError (exit 2) on any problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    try:
        return parse_inventory(raw)
    except InventoryError as exc:
        raise InventoryError(_one_line(f"{path}: {exc}")) from None


class _Loader(yaml.SafeLoader):
    """SafeLoader whose integers are decimal only. YAML 1.1 reads `0101` as octal
    65, `1:05` as sexagesimal 65 and `0x41` as 65: such a scalar stays the text
    it was written as, so that a check refuses it instead of taking another
    number (an unquoted MAC address stays the MAC address)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = str(loader.construct_scalar(node))
    return int(text) if DECIMAL_RE.match(text) else text


DECIMAL_RE = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans several lines; keep where and what."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return _one_line(str(exc))
