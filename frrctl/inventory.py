"""Fleet inventory: one YAML file -> a validated, immutable model.

Keys are kebab-case as an operator writes them. Host settings default to the
`defaults:` section and a host overrides any of them. Every error names the
host and the key, so that `frrctl render` can say exactly what to fix.
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
from frrctl.pools import PoolEntry, Pools

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
ASN_MAX = 4294967295


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=_kebab, populate_by_name=True, frozen=True
    )


def _ifname(value: str) -> str:
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid interface name (1-15 characters)")
    return value


def _asn(value: Any) -> int:
    """ASN as an integer; accepts asplain and asdot (`65000.1`) notation."""
    if isinstance(value, bool):
        raise ValueError("ASN must be a number")
    if isinstance(value, str) and "." in value:
        high, _, low = value.partition(".")
        value = int(high) * 65536 + int(low)
    asn = int(value)
    if not 1 <= asn <= ASN_MAX:
        raise ValueError(f"ASN {asn} is outside 1..{ASN_MAX}")
    return asn


def _ipv4(value: Any) -> str:
    return str(ipaddress.IPv4Address(str(value)))


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
        self.build()  # raises ValueError naming the bad or overlapping entry
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
        out = [str(ipaddress.ip_address(str(v))) for v in value]
        if len(set(out)) != len(out):
            raise ValueError("a neighbor is listed twice")
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


class Uplink(Model):
    interface: IfName
    addresses: TextList = Field(default_factory=list)
    bgp: BgpUplink | None = None
    ospf: OspfUplink | None = None
    ospf6: OspfUplink | None = None
    bfd: bool | None = None

    @field_validator("addresses")
    @classmethod
    def _interfaces(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            if "/" not in str(text):
                raise ValueError(f"{text!r} needs a prefix length (e.g. 198.18.0.1/31)")
            out.append(str(ipaddress.ip_interface(str(text))))
        return out

    @model_validator(mode="after")
    def _protocols(self) -> Uplink:
        if not (self.bgp or self.ospf or self.ospf6):
            raise ValueError(f"uplink {self.interface} runs no protocol (bgp, ospf or ospf6)")
        nets = [ipaddress.ip_interface(a).network for a in self.addresses]
        if self.ospf and not any(n.version == 4 for n in nets):
            raise ValueError(f"ospf on {self.interface} needs an IPv4 address in addresses")
        if self.bgp:
            for neighbor in self.bgp.neighbors:
                addr = ipaddress.ip_address(neighbor)
                if nets and not any(addr in n for n in nets):
                    raise ValueError(
                        f"neighbor {neighbor} is not on any address of {self.interface}"
                    )
        return self

    def interface_addresses(
        self, version: int
    ) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        out = [ipaddress.ip_interface(a) for a in self.addresses]
        return [a for a in out if a.version == version]

    def has_bfd(self, host_default: bool) -> bool:
        return bool(self.bfd if self.bfd is not None else host_default)


class ControllerSettings(Model):
    """Settings of the announcement daemon (`mode: controller`)."""

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
        if not self.uplinks:
            raise ValueError("no uplinks (set them on the host or in defaults)")
        names = [u.interface for u in self.uplinks]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"uplink interface {name} is listed twice")
        if any(u.bgp for u in self.uplinks) and self.asn is None:
            raise ValueError("BGP uplinks need asn (on the host or in defaults)")
        for uplink in self.uplinks:
            if uplink.bgp and uplink.bgp.remote_as is None and self.remote_as is None:
                raise ValueError(
                    f"BGP on {uplink.interface} needs remote-as "
                    "(on the uplink, the host or in defaults)"
                )
        return self

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
    bridge: IfName = "cloudbr0"
    gateway4: str = "169.254.0.1"
    gateway6: str = "fe80::1"
    pools: PoolSpec = Field(default_factory=PoolSpec)

    @field_validator("gateway4")
    @classmethod
    def _gw4(cls, value: str) -> str:
        return str(ipaddress.IPv4Address(value))

    @field_validator("gateway6")
    @classmethod
    def _gw6(cls, value: str) -> str:
        return str(ipaddress.IPv6Address(value))


class LabVm(Model):
    name: str
    host: str
    mac: str
    addresses: TextList

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
    loopback6: str = "2001:db8:ff::1"
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
    """Turn a pydantic location into 'host "hv1": uplinks[0].bgp.remote-as'."""
    parts = list(loc)
    prefix = ""
    if len(parts) >= 2 and parts[0] == "hosts" and isinstance(parts[1], int):
        host = raw["hosts"][parts[1]]
        name = host.get("hostname") if isinstance(host, Mapping) else None
        prefix = f"host {name!r}: " if name else f"hosts[{parts[1]}]: "
        parts = parts[2:]
    elif len(parts) >= 3 and parts[:2] == ["lab", "vms"] and isinstance(parts[2], int):
        vm = raw["lab"]["vms"][parts[2]]
        name = vm.get("name") if isinstance(vm, Mapping) else None
        prefix = f"lab VM {name!r}: " if name else f"lab.vms[{parts[2]}]: "
        parts = parts[3:]
    key = ""
    for part in parts:
        if isinstance(part, int):
            key += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[")):
            key += ("." if key else "") + str(part)
    return prefix + (f"key {key!r}" if key else "entry")


def _format(error: ValidationError, raw: Mapping[str, Any]) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{_where(item['loc'], raw)}: {message}")
    return "invalid inventory:\n  " + "\n  ".join(dict.fromkeys(lines))


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
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_inventory(raw)
    except InventoryError as exc:
        raise InventoryError(f"{path}: {exc}") from None
