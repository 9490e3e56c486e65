"""`frrctl daemon`: watch -> policy -> announcer -> verify, healing itself after any fault.

Two halves:
- reconciler.py: the decisions, timers (injected clock), retries and repair
  windows; no sockets; unit-tested with a fake announcer (checks.py holds the
  repair windows' pure judgements, timing.py the backoff and the loop's sleep);
- loop.py: the event loop (Daemon) owning the netlink watcher, the vty monitor
  (monitor.py), the control socket (control.py), signals and the worker;
  bgpvty.py is its I/O with bgpd and bfdd.
settings.py holds DaemonSettings, report.py builds the typed status, logs.py
the log formats. The announcer comes from frrctl.frr.registry; the daemon
knows no driver and no protocol.
"""

from __future__ import annotations

from frrctl.daemon.checks import BFD_REPAIR_RETRY, bfd_sessions_lost
from frrctl.daemon.logs import JsonFormatter, TextFormatter, setup_logging
from frrctl.daemon.loop import Daemon, tune_gc
from frrctl.daemon.reconciler import Reconciler
from frrctl.daemon.settings import DaemonSettings
from frrctl.daemon.timing import Backoff, loop_timeout

__all__ = [
    "BFD_REPAIR_RETRY",
    "Backoff",
    "Daemon",
    "DaemonSettings",
    "JsonFormatter",
    "Reconciler",
    "TextFormatter",
    "bfd_sessions_lost",
    "loop_timeout",
    "setup_logging",
    "tune_gc",
]
