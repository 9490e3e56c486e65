"""The repairs over bgpd's vty after a zebra restart (thin I/O): read, let the
pure checks (frrctl.daemon.checks, kept by the reconciler) judge, repair.
Every read or write uses the monitor's idle bgpd session, whose fd the loop
must register again afterwards (`reregister`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from frrctl.daemon import bgpvty
from frrctl.daemon.monitor import FrrMonitor
from frrctl.daemon.reconciler import Reconciler
from frrctl.daemon.settings import DaemonSettings
from frrctl.metrics import Metrics

log = logging.getLogger("frrctl.daemon")


@dataclass
class BgpRepairs:
    """The kernel's default routes and bfdd's sessions, given back after zebra restarts."""

    settings: DaemonSettings
    monitor: FrrMonitor
    rec: Reconciler
    metrics: Metrics
    reregister: Callable[[], None]

    def bgpd(self) -> Any:
        s = self.settings
        if not s.runs_bgp or s.asn is None:
            return None
        return self.monitor.connected("bgpd")

    def defaults(self, now: float, kernel: frozenset[int]) -> None:
        """Give the kernel back the default routes bgpd holds as best (see
        bgpvty.resend_best_paths: a restarted zebra swept them)."""
        rec = self.rec
        if not self.settings.runs_bgp or self.settings.asn is None or {4, 6} <= kernel:
            rec.defaults.clear()
            return
        bgpd = self.bgpd()
        try:
            best = self.best_defaults(bgpd)
        finally:
            self.reregister()
        fix = rec.defaults.observe(now, best, kernel)
        if not fix:
            return
        self.metrics.errors.labels("fib-default-missing").inc()
        log.error(
            "ALERT: bgpd holds a best default route the kernel lacks (zebra restarted); "
            "asking bgpd to send its best paths to zebra again",
            extra={"fields": {"families": sorted(fix)}},
        )
        bgpd = self.bgpd()
        if bgpd is None:
            return
        try:
            bgpvty.resend_best_paths(bgpd, self.settings.asn or 0)
        finally:
            self.reregister()

    def best_defaults(self, bgpd: Any) -> set[int]:
        return bgpvty.best_defaults(bgpd) if bgpd is not None else set()

    def bfd(self, now: float) -> None:
        """Give bgpd's BGP neighbours their BFD sessions back.

        FRR 8.4: bfdd, reconnecting to a restarted zebra, frees every session
        its clients registered (bfdd_zebra_connected -> pc_free_all in
        bfdd/ptm_adapter.c): the sessions go down, and so do the BGP sessions
        on top. It then asks zebra to have the clients replay their sessions
        (ZEBRA_BFD_DEST_REPLAY), but zebra relays that only to the clients
        connected at that moment; when bgpd misses the replay its sessions stay
        "installed" in its own view (lib/bfd.c) and are never sent again.
        Re-applying the neighbour's `bfd` lines reinstalls the session.
        """
        bgpd = self.bgpd()
        if bgpd is None:
            return
        try:
            lost = bgpvty.lost_bfd_sessions(bgpd, self.settings.vty_dir)
        finally:
            self.reregister()
        if lost is None:
            return
        due = self.rec.bfd.observe(now, lost)
        if not due:
            return
        self.metrics.errors.labels("bfd-session-lost").inc(len(due))
        log.error(
            "ALERT: bfdd lost the BFD sessions of established BGP neighbours (zebra "
            "restarted); re-applying their bfd configuration in bgpd",
            extra={"fields": {"neighbors": due}},
        )
        try:
            for address in bgpvty.reapply_bfd(bgpd, self.settings.asn or 0, due):
                self.rec.bfd.repaired(now, address)
        finally:
            self.reregister()
