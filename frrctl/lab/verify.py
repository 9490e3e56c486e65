"""`lab verify`: compare what the fabric really holds with what the fleet should announce.

Collection (thin: ExaBGP's record, `show ... json`, `ip -j route`, ping) is
kept apart from the comparisons (pure), so the rules are unit-testable.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from frrctl.lab import netns
from frrctl.lab.state import Lab
from frrctl.lab.topology import bfd_session_names, bfd_sessions, host_versions

# Kernel route protocols that are not learned from a neighbour: connected
# (kernel), the per-VM host routes (boot, as `ip route add` makes them).
LOCAL_PROTOCOLS = {"kernel", "boot"}


@dataclass
class Check:
    name: str  # e.g. "exabgp", "upstream ospf", "hv1 kernel", "ping 192.0.2.10"
    expected: list[str]
    got: list[str]
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.extra

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare(name: str, expected: Iterable[str], got: Iterable[str]) -> Check:
    exp, have = set(expected), set(got)
    return Check(name, _sorted(exp), _sorted(have), _sorted(exp - have), _sorted(have - exp))


def _sorted(items: Iterable[str]) -> list[str]:
    def key(text: str) -> tuple[int, int, int]:
        try:
            net = ipaddress.ip_network(text, strict=False)
            return (net.version, int(net.network_address), net.prefixlen)
        except ValueError:
            return (9, 0, 0)

    return sorted(items, key=lambda t: (key(t), t))


# -- pure parsers ----------------------------------------------------------------


def exabgp_prefixes(lines: Iterable[str]) -> set[str]:
    """Prefixes the ExaBGP peer holds now: announces minus withdrawals, reset on session loss."""
    held: set[str] = set()
    for line in lines:
        apply_exabgp_line(held, line)
    return held


def apply_exabgp_line(held: set[str], line: str) -> None:
    """Update `held` with one line of ExaBGP's JSON API output."""
    try:
        msg = json.loads(line)
    except ValueError:
        return
    if msg.get("type") == "state" and msg.get("neighbor", {}).get("state") in (
        "down",
        "connected",
    ):
        held.clear()
        return
    if msg.get("type") != "update":
        return
    update = msg.get("neighbor", {}).get("message", {}).get("update", {})
    for family in update.get("announce", {}).values():
        for routes in family.values():
            held.update(_nlri(r) for r in routes)
    for routes in update.get("withdraw", {}).values():
        held.difference_update(_nlri(r) for r in routes)


def _nlri(route: Any) -> str:
    text = route.get("nlri") if isinstance(route, dict) else route
    return str(ipaddress.ip_network(str(text)))


def learned_routes(routes: list[dict[str, Any]], bridge: str = "cloudbr0") -> set[str]:
    """Destinations in a kernel table that came from a routing protocol."""
    out = set()
    for route in routes:
        # `ip -j` leaves out "protocol" for boot, the default of `ip route add`.
        protocol = route.get("protocol", "boot")
        if protocol in LOCAL_PROTOCOLS or route.get("type", "unicast") != "unicast":
            continue
        if protocol == "static" and route.get("dev") == bridge:
            continue  # zebra's copy of the host's own staticd route (grpc driver)
        dst = route.get("dst", "")
        out.add("default" if dst == "default" else str(ipaddress.ip_network(dst)))
    return out


def ospf_external_routes(show: dict[str, Any]) -> set[str]:
    """External routes (`E1`/`E2`, NSSA `N E1`/`N E2`) of `show ip ospf route json`."""
    out = set()
    for prefix, info in show.items():
        kind = str(info.get("routeType", "")).split() if isinstance(info, dict) else []
        if kind and kind[-1] in ("E1", "E2"):
            out.add(str(ipaddress.ip_network(prefix)))
    return out


def ospf6_external_routes(show: dict[str, Any]) -> set[str]:
    """External routes (pathType `E1`/`E2`) of `show ipv6 ospf6 route json`."""
    return {
        str(ipaddress.ip_network(prefix))
        for prefix, info in (show.get("routes") or {}).items()
        if isinstance(info, dict) and info.get("pathType") in ("E1", "E2")
    }


CONTEXT_LINES = ("router bgp", "address-family", "exit-address-family", "exit")


def static_config_changes(changes: list[str], controller: bool) -> list[str]:
    """frr-reload changes to the rendered (static) config.

    In controller mode the frrctl daemon owns the `network` statements (vtysh
    driver on a BGP-only host) and the static routes (`ip route P cloudbr0`:
    grpc, and either driver on an OSPF host): they are the live state, not
    drift. What remains must be empty.
    """
    if not controller:
        return changes
    kept = []
    for change in changes:
        text = change[1:].strip().removeprefix("no ").strip()
        if text.startswith(("network ", "ip route ", "ipv6 route ")):
            continue
        kept.append(change)
    if all(c[1:].strip().startswith(CONTEXT_LINES) for c in kept):
        return []  # only the context lines of the daemon's own statements were left
    return kept


# -- collection ---------------------------------------------------------------------


@dataclass
class Report:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def _json(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def collect(lab: Lab, pings: bool = True, reload_test: bool = True) -> Report:
    plan = lab.plan
    fleet = plan.fleet
    checks = []
    record = lab.record.read_text().splitlines() if lab.record.exists() else []
    checks.append(
        compare("exabgp peer: prefixes held", plan.vm_addresses(), exabgp_prefixes(record))
    )
    ospf_hosts = {h.hostname for h in fleet.hosts if h.runs_ospf}
    ospf6_hosts = {h.hostname for h in fleet.hosts if h.runs_ospf6}
    vty = lab.vty("upstream")
    if ospf_hosts:
        show = _json(netns.vtysh(plan.upstream_ns, vty, "show ip ospf route json", check=False))
        expected = {a for a in plan.vm_addresses(ospf_hosts) if ":" not in a}
        checks.append(
            compare("upstream: OSPFv2 external routes", expected, ospf_external_routes(show))
        )
    if ospf6_hosts:
        show = _json(netns.vtysh(plan.upstream_ns, vty, "show ipv6 ospf6 route json", check=False))
        expected = {a for a in plan.vm_addresses(ospf6_hosts) if ":" in a}
        checks.append(
            compare("upstream: OSPFv3 external routes", expected, ospf6_external_routes(show))
        )
    for host in fleet.hosts:
        ns = plan.host_ns(host.hostname)
        got = set()
        for family in ("-4", "-6"):
            result = netns.ip(ns, "-j", family, "route", "show", "table", "main", check=False)
            got |= {f"{family[1]}:{d}" for d in learned_routes(_json(result.stdout) or [])}
        expected = {f"{v}:default" for v in host_versions(host)}
        checks.append(compare(f"{host.hostname}: learned kernel routes", expected, got))
        if sessions := bfd_sessions(host):
            peers = _json(
                netns.vtysh(ns, lab.vty(host.hostname), "show bfd peers json", check=False)
            )
            got_bfd = bfd_session_names(peers if isinstance(peers, list) else [], sessions)
            checks.append(compare(f"{host.hostname}: BFD sessions up", sessions, got_bfd))
        if reload_test:
            workdir = lab.nsdir(host.hostname)
            changes = netns.frr_reload_test(
                ns, host.hostname, workdir / "vty", workdir / "etc" / "frr.conf"
            )
            changes = static_config_changes(changes, host.mode == "controller")
            checks.append(compare(f"{host.hostname}: frr-reload --test changes", [], changes))
    if pings:
        checks.extend(ping_checks(lab))
    return Report(checks)


def ping_checks(lab: Lab) -> list[Check]:
    """Ping every VM address from the upstream's loopback, all in parallel."""
    upstream = lab.plan.fleet.lab.upstream
    procs = {}
    for vm in lab.plan.vms:
        for address in vm.addresses:
            source = upstream.loopback6 if ":" in address else upstream.loopback4
            cmd = [
                "ip",
                "netns",
                "exec",
                lab.plan.upstream_ns,
                "ping",
                "-n",
                "-q",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                source,
                address,
            ]
            procs[(vm.name, address)] = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
    checks = []
    for (name, address), proc in procs.items():
        answered = proc.wait(timeout=30) == 0
        checks.append(
            compare(f"ping {name} {address}", ["answers"], ["answers"] if answered else [])
        )
    return checks


def control_plane_ok(report: Report) -> bool:
    return all(c.ok for c in report.checks if not c.name.startswith("ping"))


def format_table(report: Report) -> str:
    rows = [("CHECK", "RESULT", "EXPECTED", "GOT", "DIFFERENCE")]
    for c in report.checks:
        diff = " ".join([*(f"-{m}" for m in c.missing), *(f"+{e}" for e in c.extra)])
        rows.append(
            (c.name, "ok" if c.ok else "FAIL", str(len(c.expected)), str(len(c.got)), diff or "-")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(4)) + "  " + r[4] for r in rows]
    summary = (
        "lab verify: "
        + ("OK" if report.ok else "DIFFERENCES FOUND")
        + f" ({sum(c.ok for c in report.checks)}/{len(report.checks)} checks pass)"
    )
    return "\n".join([*lines, summary])


def write_json(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.as_dict(), indent=2))
