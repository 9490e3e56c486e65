"""Live migration in the lab: unplug on the source, move the port, plug on the destination.

The upstream pings every address of the VM the whole time (every 10 ms); the
result says how many pings were lost and how long the upstream took to route
the addresses to the new host.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass

from frrctl.errors import UsageError
from frrctl.lab import netns
from frrctl.lab.runner import plug, unplug
from frrctl.lab.state import Lab, record_move

PING_INTERVAL = 0.01


@dataclass
class PingResult:
    address: str
    sent: int
    received: int

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

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["lost"] = sum(p.lost for p in self.pings)
        return data


def parse_ping_summary(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if not match:
        raise ValueError(f"no ping summary in: {output[-200:]!r}")
    return int(match.group(1)), int(match.group(2))


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
    source = vm.host
    new_links = {link.upstream_iface for link in plan.links_of(destination)}
    upstream = fleet.lab.upstream
    pings = {}
    for address in vm.addresses:
        src = upstream.loopback6 if ":" in address else upstream.loopback4
        pings[address] = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                plan.upstream_ns,
                "ping",
                "-n",
                "-q",
                "-i",
                str(PING_INTERVAL),
                "-W",
                "1",
                "-I",
                src,
                address,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
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
        deadline = started + timeout
        while not all(_upstream_iface_for(lab, a) & new_links for a in vm.addresses):
            if time.monotonic() > deadline:
                raise UsageError(
                    f"the upstream did not route {vm_name} to {destination} within {timeout:.0f} s"
                )
            time.sleep(0.02)
        converged = time.monotonic()
        time.sleep(1.0)  # and a steady stream after it
    finally:
        for proc in pings.values():
            proc.send_signal(signal.SIGINT)
    results = []
    for address, proc in pings.items():
        out, _ = proc.communicate(timeout=10)
        sent, received = parse_ping_summary(out)
        results.append(PingResult(address, sent, received))
    results.sort(key=lambda r: (ipaddress.ip_address(r.address).version, r.address))
    return Migration(vm.name, source, destination, moved - started, converged - started, results)
