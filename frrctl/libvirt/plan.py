"""What the agent plugs and unplugs, decided from libvirt's view and the record. Pure.

A domain's NIC is plugged only while its guest runs on this host (state
RUNNING). PAUSED by a user, an IO error or a watchdog (it goes on here), what
is already plugged with the same data stays, and anything else is only
prepared (port and guard, nothing routed): a guest that arrived paused
(`migrate --suspend`) is announced once it resumes. PAUSED for an incoming
migration (the destination, before the guest resumes here): prepared, so the
RESUMED event costs one netlink batch; the source still owns the addresses.
PAUSED for an outgoing migration (the source's final phase), starting up,
shutting down, saved, crashed or gone: unplugged (a prepared instance too,
except while its domain is paused for a migration: libvirt does not always
say which way, and a prepared instance announces nothing).

One instance per routed NIC, named `DOMAIN@MAC`: the name is stable across a
migration (the same on both hosts), readable in `frrctl instance list`, and
the `@MAC` suffix marks instances that belong to the agent, so instances
plugged by hand (or by the namespace lab) are never touched.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from frrctl.errors import UsageError
from frrctl.host.state import Instance
from frrctl.host.validate import parse_name
from frrctl.libvirt import metadata
from frrctl.libvirt.metadata import MetadataError, Nic
from frrctl.pools import IPAddress, Pools

# libvirt's virDomainState / virDomainPausedReason numbers (stable ABI)
RUNNING, PAUSED = 1, 3
PAUSED_MIGRATION = 2  # the source's final phase, or the destination's incoming guest
# paused reasons: 0 UNKNOWN, 1 USER, 2 MIGRATION, 3 SAVE, 4 DUMP, 5 IOERROR, 6 WATCHDOG,
# 7 FROM_SNAPSHOT, 8 SHUTTING_DOWN, 9 SNAPSHOT, 10 API_ERROR, 11 STARTING_UP,
# 12 POSTCOPY, 13 POSTCOPY_FAILED
PAUSED_HERE = frozenset({1, 5, 6, 10})  # the guest goes on here: keep it announced

OWNED_RE = re.compile(r"^(?P<domain>.+)@(?P<mac>[0-9a-f]{2}(:[0-9a-f]{2}){5})$")


def instance_name(domain: str, mac: str) -> str:
    return f"{domain}@{mac}"


def owned(name: str) -> bool:
    return OWNED_RE.match(name) is not None


def runs_here(state: int, reason: int) -> bool:
    return state == RUNNING


def paused_here(state: int, reason: int) -> bool:
    return state == PAUSED and reason in PAUSED_HERE


SHUTOFF, SHUTDOWN, CRASHED = 5, 4, 6


def implied_state(event: str, detail: str) -> tuple[int, int] | None:
    """The (state, reason) a lifecycle event leaves the domain in, when it is certain.

    Lets the agent act on the event at once (a migration's source must withdraw
    within the guest's final pause), before it re-reads the domain from libvirtd.
    """
    if event == "RESUMED":
        return RUNNING, 2 if detail == "MIGRATED" else 1
    if event == "SUSPENDED":
        reasons = {"MIGRATED": 2, "POSTCOPY": 12, "PAUSED": 1, "IOERROR": 5, "WATCHDOG": 6,
                   "API_ERROR": 10}  # fmt: skip
        return (PAUSED, reasons[detail]) if detail in reasons else None
    if event == "STOPPED":
        return SHUTOFF, 0
    if event == "CRASHED":
        return CRASHED, 0
    if event == "SHUTDOWN" and detail in ("FINISHED", "GUEST"):
        return SHUTDOWN, 0
    return None  # STARTED (paused when migrating in), DEFINED, ...: read libvirtd


@dataclass(frozen=True)
class Domain:
    """One domain as libvirt shows it: state and what its live XML says."""

    name: str
    state: int
    reason: int
    ports: Mapping[str, str | None]  # MAC -> tap (`target dev`), None if it has none
    nics: tuple[Nic, ...] = ()
    error: str | None = None  # unusable frrctl metadata
    has_metadata: bool = False
    incoming: bool = False  # an incoming migration's guest (libvirt's job: MIGRATION_IN)

    @property
    def running(self) -> bool:
        return runs_here(self.state, self.reason)

    @property
    def paused(self) -> bool:
        return paused_here(self.state, self.reason)

    @property
    def migrating(self) -> bool:
        """Paused for a migration, either way."""
        return self.state == PAUSED and self.reason == PAUSED_MIGRATION

    @property
    def arriving(self) -> bool:
        """Paused while it migrates in: it will run here, but does not yet."""
        return self.state == PAUSED and self.reason == PAUSED_MIGRATION and self.incoming


def domain_from_xml(name: str, state: int, reason: int, xml: str) -> Domain:
    """Parse a live domain XML (virDomainGetXMLDesc) into what planning needs."""
    root = ET.fromstring(xml)
    ports: dict[str, str | None] = {}
    for iface in root.iterfind("devices/interface"):
        mac_el, target = iface.find("mac"), iface.find("target")
        mac = (mac_el.get("address") or "").lower() if mac_el is not None else ""
        if mac:
            ports[mac] = target.get("dev") if target is not None else None
    elem = metadata.find(root)
    if elem is None:
        return Domain(name, state, reason, ports)
    try:
        nics = metadata.parse_element(elem)
    except MetadataError as exc:
        return Domain(name, state, reason, ports, error=str(exc), has_metadata=True)
    return Domain(name, state, reason, ports, nics, has_metadata=True)


@dataclass(frozen=True)
class Want:
    name: str
    domain: str
    mac: str
    addresses: tuple[IPAddress, ...]
    port: str

    def matches(self, inst: Instance) -> bool:
        return (inst.mac, inst.addresses, inst.port) == (self.mac, self.addresses, self.port)


@dataclass
class Plan:
    plug: list[Want] = field(default_factory=list)  # missing, different or only prepared
    keep: list[Want] = field(default_factory=list)  # recorded with the same data and state
    prepare: list[Want] = field(default_factory=list)  # to be ready, not announced
    unplug: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # domain -> why nothing is plugged
    waiting: dict[str, list[str]] = field(default_factory=dict)  # domain -> NICs not attached

    @property
    def changes(self) -> bool:
        return bool(self.plug or self.unplug or self.prepare)


def _wants(dom: Domain, pools: Pools | None) -> list[Want]:
    """The domain's NICs to plug; MetadataError (one line) if any of it is unusable."""
    if dom.error:
        raise MetadataError(dom.error)
    out: list[Want] = []
    for nic in dom.nics:
        for addr in nic.addresses:
            if pools is not None and addr not in pools:
                raise MetadataError(f"{addr} (interface {nic.mac}) is outside this host's pools")
        name = instance_name(dom.name, nic.mac)
        try:
            parse_name(name)
        except UsageError:
            raise MetadataError(
                f"domain name {dom.name!r} cannot name an instance (letters, digits, '_.:@-')"
            ) from None
        port = dom.ports.get(nic.mac)
        if nic.mac in dom.ports and port is None:
            raise MetadataError(f"interface {nic.mac} has no target dev in the live XML")
        if port is not None:
            out.append(Want(name, dom.name, nic.mac, nic.addresses, port))
    return out


def plan(
    domains: Sequence[Domain],
    record: Sequence[Instance],
    pools: Pools | None = None,
) -> Plan:
    """Bring the agent's instances in `record` to what the running domains ask for.

    `record` is the whole host record: instances that are not the agent's
    still hold their addresses (a domain asking for one of them is refused).
    An address two domains ask for goes to the one whose instance already
    holds it; if none does, neither gets it. A domain with any problem gets
    nothing plugged (and loses what it had).
    """
    out = Plan()
    mine = {i.name: i for i in record if owned(i.name)}
    # address -> (domain holding it, None) or (None, foreign instance holding it)
    holder: dict[IPAddress, tuple[str | None, str | None]] = {}
    for inst in record:
        m = OWNED_RE.match(inst.name)
        for addr in inst.addresses:
            holder[addr] = (m.group("domain"), None) if m else (None, inst.name)
    wants: dict[str, list[Want]] = {}
    mode: dict[str, str] = {}  # domain -> "run" (announce) | "hold" (paused here) | "arrive"
    for dom in sorted(domains, key=lambda d: d.name):
        if not (dom.running or dom.paused or dom.migrating) or not dom.has_metadata:
            continue
        try:
            ws = _wants(dom, pools)
        except MetadataError as exc:
            out.problems[dom.name] = str(exc)
            continue
        if dom.migrating and not dom.arriving:
            # the source's final phase (unplugged), or an arrival not known as one (its
            # prepared instance stays: it never announces, and it was prepared here)
            ws = [w for w in ws if w.name in mine and w.matches(mine[w.name])
                  and mine[w.name].prepared]  # fmt: skip
        wants[dom.name] = ws
        mode[dom.name] = "run" if dom.running else "hold" if dom.paused else "arrive"
        missing = sorted(n.mac for n in dom.nics if n.mac not in dom.ports)
        if missing:
            out.waiting[dom.name] = missing
    claims: dict[IPAddress, list[str]] = {}
    for dom_name, ws in wants.items():
        for w in ws:
            for addr in w.addresses:
                claims.setdefault(addr, []).append(dom_name)
    for addr, doms in sorted(claims.items(), key=lambda i: (i[0].version, int(i[0]))):
        held_by, foreign = holder.get(addr, (None, None))
        if foreign is not None:
            for d in doms:
                out.problems.setdefault(d, f"{addr} is already plugged for instance {foreign}")
        elif len(doms) > 1:
            # the domain already holding it keeps it; a new claim by two gets it to neither
            for d in doms:
                if d == held_by:
                    continue
                if held_by in doms:
                    out.problems.setdefault(d, f"{addr} is already held by domain {held_by}")
                else:
                    others = ", ".join(o for o in doms if o != d)
                    out.problems.setdefault(d, f"{addr} is also asked for by domain {others}")
    wanted: dict[str, Want] = {}
    for dom_name, ws in wants.items():
        if dom_name in out.problems:
            continue
        for w in ws:
            wanted[w.name] = w
    for name in sorted(mine):
        if name not in wanted:
            out.unplug.append(name)
    for name in sorted(wanted):
        w = wanted[name]
        rec = mine.get(name)
        same = rec is not None and w.matches(rec)
        how = mode[w.domain]
        if how == "run":
            (out.keep if same and rec is not None and not rec.prepared else out.plug).append(w)
        elif same and rec is not None and (rec.prepared or how == "hold"):
            out.keep.append(w)  # paused here: what is announced stays announced
        else:
            out.prepare.append(w)  # nothing new is announced before the guest resumes
    return out
