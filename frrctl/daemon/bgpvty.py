"""What the daemon reads from and repairs in bgpd and bfdd over their vty sockets
(thin I/O; the decisions are in frrctl.daemon.checks). Each function takes the
monitor's idle bgpd session: the caller registers its fd again afterwards."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from frrctl.daemon.checks import bfd_sessions_lost
from frrctl.frr.base import DriverError
from frrctl.frr.vty import VtyClient

log = logging.getLogger("frrctl.daemon")


def best_defaults(bgpd: VtyClient) -> set[int]:
    """IP versions whose default route bgpd holds with a best path."""
    out = set()
    try:
        replies = bgpd.run(
            ["show bgp ipv4 unicast 0.0.0.0/0 json", "show bgp ipv6 unicast ::/0 json"]
        )
        for version, reply in zip((4, 6), replies, strict=True):
            data = json.loads(reply.output or "{}")
            if any((p.get("bestpath") or {}).get("overall") for p in data.get("paths", [])):
                out.add(version)
    except (DriverError, ValueError) as exc:
        log.warning("cannot read bgpd's default routes: %s", exc)
    return out


def resend_best_paths(bgpd: VtyClient, asn: int) -> None:
    """Make bgpd send every best path to zebra again, touching no session.

    FRR 8.4: a restarted zebra sweeps the routes its predecessor left in
    the kernel (rib_sweep_route, zebra/main.c), and bgpd, reconnecting,
    sends zebra nothing it had installed before (bgp_zebra_connected in
    bgpd/bgp_zebra.c). `clear bgp * soft in` changes no path, so nothing is
    re-sent either. `no bgp bestpath bandwidth` re-sends every best path to
    zebra (bgp_zebra_announce_table) without touching a session or the config
    (it restores the default the rendered config keeps). Measured: the
    defaults are back in the kernel ~0.1 s later.
    """
    try:
        replies = bgpd.run(
            ["configure terminal", f"router bgp {asn}", "no bgp bestpath bandwidth", "end"]
        )
        bad = [r for r in replies if not r.ok]
        if bad:
            log.warning("re-sending bgpd's best paths: %s", bad[0].output.strip())
    except DriverError as exc:
        log.warning("re-sending bgpd's best paths: %s", exc)


def lost_bfd_sessions(bgpd: VtyClient, vty_dir: Path) -> set[str] | None:
    """Established BGP neighbours with BFD whose session bfdd lacks (None: cannot tell)."""
    bfdd_path = vty_dir / "bfdd.vty"
    if not bfdd_path.exists():
        return None
    bfdd = VtyClient(bfdd_path, timeout=5)
    try:
        (neighbors,) = bgpd.run(["show bgp neighbors json"])
        (peers,) = bfdd.run(["show bfd peers json"])
        return bfd_sessions_lost(
            json.loads(neighbors.output or "{}"), json.loads(peers.output or "[]")
        )
    except (DriverError, ValueError) as exc:
        log.warning("cannot compare bgpd's BFD neighbours with bfdd's sessions: %s", exc)
        return None
    finally:
        bfdd.close()


def reapply_bfd(bgpd: VtyClient, asn: int, addresses: list[str]) -> list[str]:
    """Re-apply the `neighbor X bfd` lines of these neighbours, which makes bgpd
    install their BFD sessions again (the BGP session is not touched); the
    neighbours repaired (one whose bfd comes from a peer-group is not)."""
    done: list[str] = []
    try:
        (config,) = bgpd.run(["show running-config"])
        lines = ["configure terminal", f"router bgp {asn}"]
        for address in addresses:
            mine = [
                line.strip()
                for line in config.output.splitlines()
                if line.strip().startswith(f"neighbor {address} bfd")
            ]
            if not mine:
                log.warning("neighbour %s: its bfd comes from a peer-group; not touched", address)
                continue
            done.append(address)
            lines += [f"no neighbor {address} bfd", *mine]
        replies = bgpd.run([*lines, "end"])
        bad = [r for r in replies if not r.ok]
        if bad:
            log.warning("re-applying bfd: %s: %s", bad[0].command, bad[0].output.strip())
    except DriverError as exc:
        log.warning("re-applying bfd: %s", exc)
    return done


def advertised_to(bgpd: VtyClient) -> dict[str, list[str]]:
    """prefix -> established BGP peers bgpd advertises it to."""
    out: dict[str, set[str]] = {}
    try:
        (summary,) = bgpd.run(["show bgp summary json"])
        data = json.loads(summary.output or "{}")
        queries = []
        for afi_key, afi in (("ipv4Unicast", "ipv4"), ("ipv6Unicast", "ipv6")):
            for peer, info in (data.get(afi_key, {}).get("peers") or {}).items():
                if info.get("state") == "Established":
                    queries.append(
                        (peer, f"show bgp {afi} unicast neighbors {peer} advertised-routes json")
                    )
        replies = bgpd.run([q for _, q in queries]) if queries else []
        for (peer, _), reply in zip(queries, replies, strict=True):
            routes = json.loads(reply.output or "{}").get("advertisedRoutes") or {}
            for prefix in routes:
                out.setdefault(prefix, set()).add(peer)
    except (DriverError, ValueError) as exc:
        log.warning("status: cannot read advertised routes from bgpd: %s", exc)
    return {p: sorted(peers) for p, peers in out.items()}
