"""vtysh driver: BGP `network` statements over bgpd's own vty socket.

Every `network` statement in `router bgp ASN` (IPv4 and IPv6 unicast) is
frrctl's: the controller-mode config renders none. A prefix announced with
GRACEFUL_SHUTDOWN carries `route-map frrctl-gshut`, which this driver defines
itself. With `bgp network import-check` (FRR's default) bgpd announces a
`network` only while the kernel route exists, and withdraws it by itself when
the route goes: a second guard behind the policy.

The parsing and command building are pure functions; `VtyshDriver` only adds
the socket and the retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from frrctl.frr.base import AnnounceDriver, DriverError, RetryPolicy, TableCheck
from frrctl.frr.vty import CMD_SUCCESS, CMD_WARNING_CONFIG_FAILED, VtyClient, VtyReply
from frrctl.policy import Plan, parse_prefix, prefix_key
from frrctl.pools import IPNetwork

log = logging.getLogger(__name__)

GSHUT_ROUTE_MAP = "frrctl-gshut"
_AFI = {4: "ipv4", 6: "ipv6"}


def gshut_route_map_lines(name: str = GSHUT_ROUTE_MAP) -> list[str]:
    """The route-map that marks a `network` with GRACEFUL_SHUTDOWN (RFC 8326)."""
    return [f"route-map {name} permit 10", " set community graceful-shutdown additive", "exit"]


class RunningConfigError(DriverError):
    """bgpd's running config lacks what the driver needs (e.g. the BGP instance)."""


def parse_networks(
    running_config: str, asn: int, gshut_route_map: str = GSHUT_ROUTE_MAP
) -> dict[IPNetwork, bool]:
    """`network` statements of `router bgp ASN` (default VRF): prefix -> graceful_shutdown."""
    found: dict[IPNetwork, bool] = {}
    in_router = seen_router = False
    afi: str | None = None
    for raw in running_config.splitlines():
        line = raw.rstrip()
        words = line.split()
        if not line.startswith(" "):
            in_router = words == ["router", "bgp", str(asn)]
            seen_router = seen_router or in_router
            afi = None
            continue
        if not in_router or not words:
            continue
        if words[0] == "address-family" and len(words) >= 3:
            afi = f"{words[1]} {words[2]}"
        elif words[0] == "exit-address-family":
            afi = None
        elif words[0] == "network" and afi in ("ipv4 unicast", "ipv6 unicast") and len(words) > 1:
            prefix = parse_prefix(words[1])
            route_map = words[words.index("route-map") + 1] if "route-map" in words else None
            found[prefix] = route_map == gshut_route_map
    if not seen_router:
        raise RunningConfigError(f"bgpd has no 'router bgp {asn}' in its running config")
    return found


def plan_commands(asn: int, plan: Plan, gshut_route_map: str = GSHUT_ROUTE_MAP) -> list[str]:
    """The vty commands for one batch: withdrawals first, then announcements."""
    commands = ["configure terminal"]
    if any(gshut for _, gshut in plan.announce):
        commands += gshut_route_map_lines(gshut_route_map)
    commands.append(f"router bgp {asn}")
    for version in (4, 6):
        body = [f"no network {p}" for p in plan.withdraw if p.version == version]
        for prefix, gshut in plan.announce:
            if prefix.version == version:
                suffix = f" route-map {gshut_route_map}" if gshut else ""
                body.append(f"network {prefix}{suffix}")
        if body:
            commands += [f"address-family {_AFI[version]} unicast", *body, "exit-address-family"]
    commands.append("end")
    return commands


def failures(replies: Iterable[VtyReply]) -> list[VtyReply]:
    """Replies that are real failures; withdrawing a missing `network` is a no-op."""
    bad = []
    for reply in replies:
        if reply.status == CMD_SUCCESS:
            continue
        if (
            reply.status == CMD_WARNING_CONFIG_FAILED
            and reply.command.startswith("no network ")
            and "Can't find" in reply.output
        ):
            continue
        bad.append(reply)
    return bad


@dataclass
class VtyshDriver(AnnounceDriver):
    """Announce with `network` statements through bgpd's vty socket in `vty_dir`."""

    vty_dir: Path
    asn: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    gshut_route_map: str = GSHUT_ROUTE_MAP
    timeout: float = 60.0
    name: str = "vtysh"

    def __post_init__(self) -> None:
        self._bgpd = VtyClient(self.vty_dir / "bgpd.vty", timeout=self.timeout)

    def command(self, *commands: str) -> list[VtyReply]:
        """Run commands on bgpd (e.g. `show bgp ipv4 unicast json` for status)."""
        return self.retry.call("bgpd", lambda: self._bgpd.run(commands))

    def read(self) -> dict[IPNetwork, bool]:
        (reply,) = self.command("show running-config")
        if not reply.ok:
            raise DriverError(f"bgpd: show running-config failed: {reply.output.strip()}")
        return parse_networks(reply.output, self.asn, self.gshut_route_map)

    def apply(self, plan: Plan) -> None:
        if not plan:
            return
        commands = plan_commands(self.asn, plan, self.gshut_route_map)
        # The batch is self-contained (configure ... end) and idempotent, so
        # resending it whole after a reconnect is safe.
        bad = failures(self.command(*commands))
        if bad:
            detail = "; ".join(f"{r.command!r}: {r.output.strip() or r.status}" for r in bad[:5])
            raise DriverError(f"bgpd refused {len(bad)} of {len(commands)} commands: {detail}")

    def invalid(self) -> list[IPNetwork]:
        """frrctl's `network` prefixes whose every path bgpd holds as invalid.

        bgpd's import-check resolves a `network` through zebra; one added while
        bgpd had lost zebra (zebra restarting) stays "inaccessible" forever in
        FRR 8.4, even once the kernel route is known again.
        """
        return missing_in_rib(bgp_tables(self._bgpd, self.retry), self.read())

    def check_table(self) -> TableCheck:
        """Missing prefixes are `invalid()`; none can be stale: removing a
        `network` statement always withdraws it."""
        return TableCheck(self.invalid())

    def refresh(self, prefixes: Iterable[IPNetwork]) -> None:
        """Re-enter `network` statements (no + add) so that bgpd resolves them again."""
        current = self.read()
        todo = [p for p in prefixes if p in current]
        if not todo:
            return
        self.apply(Plan(withdraw=tuple(todo)))
        self.apply(Plan(announce=tuple((p, current[p]) for p in todo)))

    def close(self) -> None:
        self._bgpd.close()


def bgp_tables(bgpd: VtyClient, retry: RetryPolicy) -> dict[str, str]:
    """`show bgp AFI unicast json` for ipv4 and ipv6, as text."""
    tables: dict[str, str] = {}
    for afi in ("ipv4", "ipv6"):
        command = f"show bgp {afi} unicast json"
        (reply,) = retry.call("bgpd", partial(bgpd.run, [command]))
        tables[afi] = reply.output
    return tables


def _routes(tables: dict[str, str]) -> dict[int, dict[str, list[dict[str, object]]]]:
    routes: dict[int, dict[str, list[dict[str, object]]]] = {}
    for afi, text in tables.items():
        try:
            routes[4 if afi == "ipv4" else 6] = json.loads(text or "{}").get("routes", {})
        except ValueError as exc:
            raise DriverError(f"bgpd: unreadable 'show bgp {afi} unicast json'") from exc
    return routes


def originated_in_rib(tables: dict[str, str]) -> set[IPNetwork]:
    """Prefixes bgpd originates itself (a path from no peer), from `bgp_tables`."""
    return {
        parse_prefix(text)
        for routes in _routes(tables).values()
        for text, paths in routes.items()
        if any(path.get("peerId") == "(unspec)" for path in paths)
    }


def missing_in_rib(tables: dict[str, str], prefixes: Iterable[IPNetwork]) -> list[IPNetwork]:
    """The `prefixes` with no valid path in `tables` (from `bgp_tables`)."""
    routes = _routes(tables)
    bad = [
        prefix
        for prefix in prefixes
        if not any(
            path.get("valid") for path in routes.get(prefix.version, {}).get(str(prefix), [])
        )
    ]
    return sorted(bad, key=prefix_key)


def sorted_prefixes(prefixes: Iterable[IPNetwork]) -> list[IPNetwork]:
    return sorted(prefixes, key=prefix_key)
