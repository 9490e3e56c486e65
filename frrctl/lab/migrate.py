"""Live migration in the lab, while the upstream pings every address of the VM every 10 ms.

A namespace VM: unplug on the source, move the port, plug on the destination
(two `frrctl instance` runs). A QEMU VM: libvirt's own live migration between
the two hosts' libvirtds (virDomainMigrate3, VIR_MIGRATE_LIVE, as `virsh migrate
--live`; the QEMU stream over a unix socket both namespaces can open); the
hosts' agents hand the addresses over (the source unplugs when its guest
pauses, the destination plugs when it resumes). The result: pings lost per
address, the time until the upstream routes the addresses to the new host,
how many routes the upstream holds per address afterwards (1: no double
announcement), and for QEMU the downtime QEMU reports and the agents' moments.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from frrctl.errors import UsageError
from frrctl.lab import netns
from frrctl.lab.runner import plug, unplug
from frrctl.lab.state import Lab, record_move
from frrctl.lab.topology import VmPlan

PING_INTERVAL = 0.01


@dataclass
class PingResult:
    address: str
    sent: int
    received: int
    gap_ms: float | None = None  # the longest time between two replies: the outage itself
    gap_span: tuple[float, float] | None = None  # its last reply before, first after (epoch)

    @property
    def lost(self) -> int:
        return self.sent - self.received


@dataclass
class Migration:
    vm: str
    source: str
    destination: str
    move_seconds: float  # unplug + move port + plug
    converge_seconds: float  # from unplug until the upstream routes every address to the new host
    pings: list[PingResult]
    kind: str = "namespace"
    routes_at_upstream: dict[str, int] = field(default_factory=dict)  # after it settled
    qemu: dict[str, Any] | None = None  # downtime, agents' moments (ms from the source's pause)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["lost"] = sum(p.lost for p in self.pings)
        for ping in data["pings"]:
            ping["lost"] = ping["sent"] - ping["received"]
            ping["lost_ms"] = round(ping["lost"] * PING_INTERVAL * 1000)
        return data


def parse_ping_summary(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if not match:
        raise ValueError(f"no ping summary in: {output[-200:]!r}")
    return int(match.group(1)), int(match.group(2))


_REPLY = re.compile(r"^\[(?P<ts>\d+\.\d+)\] \d+ bytes from ")


def longest_gap(output: str) -> tuple[float, float] | None:
    """`ping -D` output -> the two consecutive replies furthest apart (epoch seconds)."""
    times = [float(m["ts"]) for m in map(_REPLY.match, output.splitlines()) if m]
    if len(times) < 2:
        return None
    return max(itertools.pairwise(times), key=lambda ab: ab[1] - ab[0])


def longest_gap_ms(output: str) -> float | None:
    """`ping -D` output -> the longest time between two consecutive replies (ms).

    Counting lost pings undercounts an outage when the upstream has no route at
    all (a send that fails is not always counted as sent); reply times do not."""
    span = longest_gap(output)
    return None if span is None else round((span[1] - span[0]) * 1000, 1)


def _upstream_iface_for(lab: Lab, address: str) -> set[str]:
    """Interfaces the upstream's selected route to `address` leaves through."""
    family = "ipv6" if ":" in address else "ip"
    text = netns.vtysh(
        lab.plan.upstream_ns,
        lab.vty("upstream"),
        f"show {family} route {address} json",
        check=False,
    )
    try:
        routes = json.loads(text or "{}")
    except ValueError:
        return set()
    out = set()
    for entries in routes.values():
        for entry in entries:
            if entry.get("selected"):
                out |= {
                    nh.get("interfaceName", "")
                    for nh in entry.get("nexthops", [])
                    if nh.get("active")
                }
    return out


def upstream_routes(lab: Lab, address: str) -> int:
    """How many routes to `address` the upstream holds: BGP paths from its peers (every
    one, not only the best) plus OSPF routes. 1 once a move has settled; 2: two hosts
    announce it."""
    family = "ipv6" if ":" in address else "ipv4"
    prefix = str(ipaddress.ip_network(address))
    ns, vty = lab.plan.upstream_ns, lab.vty("upstream")
    try:
        bgp = json.loads(netns.vtysh(ns, vty, f"show bgp {family} unicast {prefix} json",
                                     check=False) or "{}")  # fmt: skip
    except ValueError:
        bgp = {}
    # a path the upstream sources itself is its OSPF route redistributed (towards ExaBGP)
    count = sum(1 for path in bgp.get("paths") or [] if not path.get("sourced"))
    show = "ipv6" if family == "ipv6" else "ip"
    try:
        rib = json.loads(netns.vtysh(ns, vty, f"show {show} route {prefix} json",
                                     check=False) or "{}")  # fmt: skip
    except ValueError:
        rib = {}
    for entries in rib.values():
        count += sum(1 for e in entries if str(e.get("protocol", "")).startswith("ospf"))
    return count


def _pingers(lab: Lab, addresses: tuple[str, ...]) -> dict[str, subprocess.Popen[str]]:
    upstream = lab.plan.fleet.lab.upstream
    pings = {}
    for address in addresses:
        src = upstream.loopback6 if ":" in address else upstream.loopback4
        pings[address] = subprocess.Popen(
            ["ip", "netns", "exec", lab.plan.upstream_ns, "ping", "-n", "-D",
             "-i", str(PING_INTERVAL), "-W", "1", "-I", src, address],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    return pings


def _ping_results(pings: dict[str, subprocess.Popen[str]]) -> list[PingResult]:
    for proc in pings.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    results = []
    for address, proc in pings.items():
        out, _ = proc.communicate(timeout=10)
        sent, received = parse_ping_summary(out)
        results.append(PingResult(address, sent, received, longest_gap_ms(out), longest_gap(out)))
    results.sort(key=lambda r: (ipaddress.ip_address(r.address).version, r.address))
    return results


def _wait_routed(lab: Lab, vm: VmPlan, destination: str, deadline: float) -> None:
    new_links = {link.upstream_iface for link in lab.plan.links_of(destination)}
    while not all(_upstream_iface_for(lab, a) & new_links for a in vm.addresses):
        if time.monotonic() > deadline:
            raise UsageError(f"the upstream did not route {vm.name} to {destination} in time")
        time.sleep(0.02)


def _settled(lab: Lab, vm: VmPlan, timeout: float = 10) -> dict[str, int]:
    """Routes per address at the upstream, once every address has exactly one (or timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = {a: upstream_routes(lab, a) for a in vm.addresses}
        if all(c == 1 for c in counts.values()) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def migrate(lab: Lab, vm_name: str, destination: str, timeout: float = 30) -> Migration:
    plan = lab.plan
    try:
        vm = plan.vm(vm_name)
    except KeyError:
        raise UsageError(f"no VM {vm_name!r} in the lab") from None
    fleet = plan.fleet
    if destination not in plan.host_namespaces:
        raise UsageError(f"no host {destination!r} in the lab")
    if destination == vm.host:
        raise UsageError(f"VM {vm_name!r} already runs on {destination}")
    pools = fleet.pools_of(fleet.host(destination))
    outside = [a for a in vm.addresses if a not in pools]
    if outside:
        raise UsageError(
            f"{', '.join(outside)} outside the pools of {destination}: "
            "it would never be announced there"
        )
    if vm.qemu:
        return _migrate_qemu(lab, vm, destination, timeout)
    source = vm.host
    pings = _pingers(lab, vm.addresses)
    try:
        time.sleep(1.0)  # a steady stream before the move
        started = time.monotonic()
        unplug(lab, vm, source)
        netns.ip(
            plan.host_ns(source), "link", "set", vm.host_port, "netns", plan.host_ns(destination)
        )
        plug(lab, vm, destination)
        moved = time.monotonic()
        record_move(lab.state_dir, vm.name, destination)
        _wait_routed(lab, vm, destination, started + timeout)
        converged = time.monotonic()
        time.sleep(1.0)  # and a steady stream after it
    finally:
        results = _ping_results(pings)
    return Migration(vm.name, source, destination, moved - started, converged - started,
                     results, "namespace", _settled(lab, vm))  # fmt: skip


_MON = re.compile(
    r"^\[(?P<ts>[^\]]+)\]\s+(?P<deleted>Deleted\s+)?(?P<dst>\S+)\s.*\bdev (?P<dev>\S+)"
)


def routed_at(monitor_log: str, addresses: set[str], links: set[str]) -> float | None:
    """From `ip -tshort monitor route`: when the last of `addresses` got a route via `links`."""
    seen: dict[str, float] = {}
    for line in monitor_log.splitlines():
        m = _MON.match(line)
        if not m or m["deleted"]:
            continue
        dst = m["dst"].removesuffix("/32").removesuffix("/128")
        if dst in addresses and m["dev"] in links and dst not in seen:
            seen[dst] = datetime.fromisoformat(m["ts"]).timestamp()
    return max(seen.values()) if set(seen) == addresses else None


def both_routed_ms(source_gone: float | None, destination_added: float | None) -> float | None:
    """How long both hosts routed the addresses (ms; None when a moment is unknown).

    The two agents do not wait for each other: when QEMU's final pause is shorter
    than the source's reaction, the destination routes before the source withdrew.
    """
    if source_gone is None or destination_added is None:
        return None
    return round(max(0.0, source_gone - destination_added) * 1000, 1)


def _moment(
    events: list[dict[str, Any]], since: float, key: str = "t", **match: str
) -> float | None:
    """The first matching log entry's `key` time (`t`: when it was logged)."""
    for e in events:
        if float(e.get("t") or 0) >= since and all(e.get(k) == v for k, v in match.items()):
            return None if e.get(key) is None else float(e[key])
    return None


def _migrate_qemu(lab: Lab, vm: VmPlan, destination: str, timeout: float) -> Migration:
    from frrctl.lab import qemu

    libvirt = qemu.libvirt_module()

    plan = lab.plan
    source = vm.host
    if not qemu.host_running(lab, destination):
        qemu.start_host(lab, destination)  # a libvirtd and an agent to receive it
    name, inst = qemu.domain_name(lab, vm), qemu.instance_name(lab, vm)
    addrs = {str(ipaddress.ip_interface(a).ip) for a in vm.addresses}
    new_links = {link.upstream_iface for link in plan.links_of(destination)}
    src = libvirt.open(qemu.uri(lab, source))
    dst = libvirt.open(qemu.uri(lab, destination))
    mon_path = lab.nsdir("qemu") / f"monitor-{vm.name}.log"
    sock = Path(lab.nsdir("qemu")) / f"migrate-{vm.name}.sock"
    sock.unlink(missing_ok=True)
    with open(mon_path, "wb") as out:
        mon = subprocess.Popen(
            ["ip", "netns", "exec", plan.upstream_ns, "ip", "-tshort", "monitor", "route"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    pings = _pingers(lab, vm.addresses)
    try:
        dom = src.lookupByName(name)
        time.sleep(1.0)  # a steady stream before the move
        t0, started = time.time(), time.monotonic()
        params = {libvirt.VIR_MIGRATE_PARAM_URI: f"unix://{sock}"}
        flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                 | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)  # fmt: skip
        try:
            new = dom.migrate3(dst, params, flags)
        except libvirt.libvirtError as exc:
            raise UsageError(f"virsh migrate --live {name} to {destination}: {exc}") from None
        moved = time.monotonic()
        record_move(lab.state_dir, vm.name, destination)
        stats: dict[str, Any] = {}
        for d in (dom, new):
            try:
                stats = d.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                break
            except libvirt.libvirtError:
                continue
        _wait_routed(lab, vm, destination, started + timeout)
        converged = time.monotonic()
        deadline = time.monotonic() + 10
        while not (_moment(qemu.agent_events(lab, source), t0, msg="unplugged", instance=inst)
                   and _moment(qemu.agent_events(lab, destination), t0, msg="plugged",
                               instance=inst)):  # fmt: skip
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.0)  # and a steady stream after it
    finally:
        results = _ping_results(pings)
        mon.terminate()
        mon.wait(5)
        src.close()
        dst.close()
    sev, dev = qemu.agent_events(lab, source), qemu.agent_events(lab, destination)
    paused = _moment(sev, t0, msg="event", domain=name, event="SUSPENDED", detail="MIGRATED")
    moments = {
        "source paused (SUSPENDED/MIGRATED)": paused,
        "source unplugged": _moment(sev, t0, msg="unplugged", instance=inst),
        # when the netlink batch ended: the kernel routes FRR announces, gone or there
        "source routes gone": _moment(sev, t0, "routes_t", msg="unplugged", instance=inst),
        "destination resumed (RESUMED/MIGRATED)": _moment(
            dev, t0, msg="event", domain=name, event="RESUMED", detail="MIGRATED"
        ),
        "destination plugged": _moment(dev, t0, msg="plugged", instance=inst),
        "destination routes added": _moment(dev, t0, "routes_t", msg="plugged", instance=inst),
        "upstream routes via destination": routed_at(
            mon_path.read_text(errors="replace"), addrs, new_links
        ),
        # the outage as the pings saw it: the guest's own pause plus the handover
        "last reply before the outage": min(
            (r.gap_span[0] for r in results if r.gap_span), default=None
        ),
        "first reply after the outage": max(
            (r.gap_span[1] for r in results if r.gap_span), default=None
        ),
    }
    base = paused if paused is not None else t0
    figures: dict[str, Any] = {
        "migration_seconds": round(moved - started, 3),
        "downtime_ms": stats.get("downtime"),
        "moments_ms": {
            k: None if v is None else round((v - base) * 1000, 1) for k, v in moments.items()
        },
        "agent_logs": [str(qemu.agent_log(lab, h)) for h in (source, destination)],
    }
    # what made the destination plug: its RESUMED event, or reading the domain RUNNING
    plugged = [e for e in dev if e.get("msg") == "plugged" and e.get("instance") == inst
               and float(e.get("t") or 0) >= t0]  # fmt: skip
    if plugged:
        cause = plugged[0]
        figures["destination plugged on"] = (
            f"{cause.get('event', cause.get('cause', '?'))}/{cause.get('detail', '')}"
        )
        figures["destination plug_ms"] = cause.get("plug_ms")
    figures["both_routed_ms"] = both_routed_ms(
        moments["source routes gone"], moments["destination routes added"]
    )
    gaps = [r.gap_ms for r in results if r.gap_ms is not None]
    if gaps and isinstance(figures["downtime_ms"], int):
        # what the routing handover added to the guest's own pause
        figures["outage_beyond_downtime_ms"] = round(max(gaps) - figures["downtime_ms"], 1)
    return Migration(vm.name, source, destination, moved - started, converged - started,
                     results, "qemu", _settled(lab, vm), figures)  # fmt: skip
