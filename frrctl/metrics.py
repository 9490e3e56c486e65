"""Prometheus metrics of the announcement daemon, served on 127.0.0.1 only."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from frrctl.policy import Code, Decision, Drain

_BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def resync_kind(cause: str) -> str:
    """A bounded label for a netlink resync cause (the cause text names indexes)."""
    text = cause.lower()
    for needle, kind in (
        ("initial", "initial"),
        ("enobufs", "overrun"),
        ("re-created", "bridge-recreated"),
        ("renamed", "bridge-renamed"),
        ("deleted", "bridge-deleted"),
        ("went down", "bridge-down"),
        ("changed state", "link-state"),
        ("interrupted", "dump-interrupted"),
        ("kernel view check", "kernel-view-check"),
    ):
        if needle in text:
            return kind
    return "other"


class Metrics:
    """All of the daemon's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.prefixes = Gauge(
            "frrctl_prefixes", "Candidate prefixes by policy verdict", ["verdict"], registry=r
        )
        self.announced = Gauge(
            "frrctl_announced_prefixes",
            "Prefixes FRR announces for frrctl, as read back from FRR",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "frrctl_batch_seconds",
            "Time to apply one batch to FRR (excluding the read-back)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.changes = Counter(
            "frrctl_changes_total", "Prefixes announced or withdrawn", ["action"], registry=r
        )
        self.reconciles = Counter(
            "frrctl_reconciles_total", "Reconcile passes, by outcome", ["outcome"], registry=r
        )
        self.resyncs = Counter(
            "frrctl_netlink_resyncs_total", "Full netlink resyncs, by cause", ["cause"], registry=r
        )
        self.kernel_view_mismatches = Counter(
            "frrctl_kernel_view_mismatches_total",
            "Kernel view checks that found the kernel's routes differing from the watcher's view "
            "(netlink events lost; the daemon resyncs)",
            registry=r,
        )
        self.errors = Counter("frrctl_errors_total", "Errors, by kind", ["kind"], registry=r)
        self.frr_up = Gauge("frrctl_frr_up", "1 while FRR answers the driver", registry=r)
        self.frr_reconnects = Counter(
            "frrctl_frr_daemon_restarts_total",
            "FRR daemon sessions lost (daemon killed or restarted)",
            ["daemon"],
            registry=r,
        )
        self.drain = Gauge("frrctl_drain", "Drain mode in effect (1 for the mode)", ["mode"],
                           registry=r)  # fmt: skip
        self.held = Gauge("frrctl_held_prefixes", "Prefixes held back by the operator", registry=r)
        self.over_maximum = Gauge(
            "frrctl_over_maximum_prefixes",
            "Eligible prefixes not announced because of the maximum (alert when > 0)",
            registry=r,
        )
        self.last_success = Gauge(
            "frrctl_last_success_timestamp_seconds",
            "When FRR last matched the desired announcements",
            registry=r,
        )
        for code in Code:
            self.prefixes.labels(code.value).set(0)
        for mode in Drain:
            self.drain.labels(mode.value).set(0)
        self.frr_up.set(0)

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def decision(self, decision: Decision, drain: Drain, held: int) -> None:
        for code in Code:
            self.prefixes.labels(code.value).set(decision.counts.get(code, 0))
        for mode in Drain:
            self.drain.labels(mode.value).set(1 if mode is drain else 0)
        self.held.set(held)
        self.over_maximum.set(decision.over_maximum)
