"""The daemon's decisions: a pass, its verification, failures and retries, the
repair windows after FRR restarts. No sockets, no signals, no sleeping: the
clock is injected, the announcer is the only way out to FRR, and a batch goes
to the worker through an injected `submit` (None: applied inline). The event
loop (frrctl.daemon.loop) calls it; tests drive it with a fake announcer.

A pass (`reconcile`) decides with the pure policy and makes FRR announce
exactly that: it diffs against the state last read back from FRR (re-read
whenever it may be stale: at start, after any error, after FRR came back,
every `verify_interval`), applies the difference as one batch and reads it
back to verify once the burst is over (unless the announcer `confirms_apply`:
its commit answering OK says FRR holds the batch). FRR unreachable is probed
every `probe_interval`; FRR answering errors is retried with exponential backoff;
the state is re-read before the next batch, so a half-applied batch never goes
unnoticed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass

from frrctl.daemon.aftermath import check_redistribution, repair_table
from frrctl.daemon.checks import BfdRepair, DefaultsRepair, Liveness, RedistRepair, TableRepair
from frrctl.daemon.settings import DaemonSettings
from frrctl.daemon.timing import Backoff, loop_timeout
from frrctl.frr.base import AnnounceDriver, DriverError, FrrUnavailable
from frrctl.metrics import Metrics
from frrctl.policy import (
    Decision,
    KernelRoute,
    Plan,
    PolicyConfig,
    decide,
    diff,
    diff_touched,
    redecide,
)
from frrctl.pools import IPNetwork
from frrctl.status import OperatorState
from frrctl.watch import KernelSnapshot

log = logging.getLogger("frrctl.daemon")

Submit = Callable[[Callable[[], float]], "Future[float]"]
ZEBRA_REPAIR_WINDOW = 40.0  # bgpd reconnects to zebra within ~10 s


@dataclass
class Inflight:
    """The batch a worker thread is applying."""

    future: Future[float]  # -> seconds the driver took
    plan: Plan
    started: float  # clock time of the start of the pass that made it


class Reconciler:
    """Desired vs. announced, and every timer of the daemon; see the module docstring."""

    def __init__(
        self,
        settings: DaemonSettings,
        announcer: AnnounceDriver,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        submit: Submit | None = None,
    ) -> None:
        self.settings = settings
        self.announcer = announcer
        self.metrics = metrics
        self.clock = clock
        self.submit = submit
        self.operator = OperatorState()
        self.snapshot: KernelSnapshot | None = None
        # Kernel changes not judged yet (prefix -> routes now); None: judge all.
        self.changed: dict[IPNetwork, tuple[KernelRoute, ...]] | None = None
        # The FRR state that equals the last decision's target exactly
        # (identity, not equality): then a pass diffs only what it touched.
        self.synced_state: dict[IPNetwork, bool] | None = None
        self.decision: Decision | None = None
        self.frr_state: dict[IPNetwork, bool] | None = None  # last read back; None = re-read
        self.frr_up = False
        self.last_error: str | None = None
        self.last_batch_seconds: float | None = None
        self.last_plan: str | None = None
        self.pending = True  # a pass is due
        self.next_attempt = 0.0  # clock time before which no pass runs (backoff)
        self.next_verify = 0.0
        self.unverified_since: float | None = None  # batches applied, not read back yet
        self.verify_at = 0.0
        self.backoff = Backoff()  # FRR answers errors
        self.unavailable = Backoff(settings.probe_interval, 0.5)  # FRR not answering
        # After a zebra restart bgpd's table is checked every second for a while
        # (too heavy to run all the time): see `repair`.
        self.repair_until = 0.0
        self.next_repair = 0.0
        self.config_wait_until = 0.0  # bgpd restarted: its config may still be loading
        self.table = TableRepair()
        self.liveness = Liveness(settings.liveness_interval, settings.liveness_confirm)
        self.defaults = DefaultsRepair(cooldown=2 * settings.liveness_confirm)
        self.bfd = BfdRepair()
        self.ospf6 = RedistRepair()  # OSPF redistribution after zebra restarts (both daemons)
        self.inflight: Inflight | None = None
        self.on_pass: Callable[[], None] | None = None  # test hook

    # -- inputs ------------------------------------------------------------------
    def new_snapshot(self, snap: KernelSnapshot) -> bool:
        """Take the watcher's view; True when it is a new generation (a resync)."""
        resynced = self.snapshot is None or snap.generation != self.snapshot.generation
        if self.announcer.needs_carrier and snap.bridge_carrier != (
            self.snapshot.bridge_carrier if self.snapshot else True
        ):
            log.warning("%s %s carrier", snap.bridge, "has" if snap.bridge_carrier else "lost")
        self.snapshot = snap
        if snap.changed is None or self.changed is None:
            self.changed = None
        else:
            self.changed.update(snap.changed)
        self.pending = True
        return resynced

    def set_operator(self, new: OperatorState) -> None:
        self.operator = new
        self.pending = True
        self.next_attempt = 0.0

    def frr_changed(self) -> None:
        """FRR may have lost everything: re-read and reconcile now."""
        self.collect(wait=True)
        self.frr_state = None
        self.pending = True
        self.next_attempt = 0.0
        self.backoff.reset()
        self.unavailable.reset()
        self.announcer.close()  # fresh connections to the new daemon

    def frr_back(self, daemons: list[str]) -> None:
        """FRR daemons came back after a restart: reconcile, open the repair windows."""
        now = self.clock()
        self.frr_changed()
        if "bgpd" in daemons:
            self.config_wait_until = now + self.settings.config_wait
        if "zebra" in daemons:
            self.repair_until = now + ZEBRA_REPAIR_WINDOW
            self.next_repair = now + 1
            self.ospf6.watching = True  # FRR 8.4: OSPF stays unregistered until it restarts
            self.liveness.next_at = min(self.liveness.next_at, now + 1)

    # -- timers ------------------------------------------------------------------
    def timeout(self, now: float, probing: bool) -> float:
        return loop_timeout(
            now,
            verify=self.next_verify,
            attempt=self.next_attempt if self.pending and self.inflight is None else None,
            read_back=self.verify_due() if self.unverified_since is not None else None,
            probe=self.settings.probe_interval if probing or not self.frr_up else None,
            repair=self.next_repair if self.in_repair_window(now) else None,
            liveness=self.liveness.next_at if self.snapshot is not None else None,
        )

    def verify_due(self) -> float:
        assert self.unverified_since is not None
        return min(self.verify_at, self.unverified_since + self.settings.verify_max_delay)

    def in_repair_window(self, now: float) -> bool:
        return now < self.repair_until and self.frr_up

    def repair_due(self, now: float) -> bool:
        if not self.in_repair_window(now) or now < self.next_repair:
            return False
        self.next_repair = now + 1
        return True

    def liveness_due(self, now: float) -> bool:
        return now >= self.liveness.next_at and self.snapshot is not None

    def timed(self, now: float) -> None:
        """The timed checks of one loop step, after its events were handled."""
        if now >= self.next_verify:
            self.frr_state = None  # periodic check against FRR's real state
            self.pending = True
        if self.unverified_since is not None and not self.pending and now >= self.verify_due():
            self.verify()
        if self.repair_due(now):
            self.repair()
            self.check_ospf6()
        elif self.ospf6.watch_due(now):
            self.check_ospf6()

    def maybe_pass(self, now: float, bgpd_down: bool) -> None:
        """Run the pass that is due. While bgpd (or a daemon holding the
        announcer's routes: staticd) is known gone only the monitor's probe
        runs: it reconciles the moment the daemon is back. While a batch is in
        flight the kernel is still read; the next pass starts when the worker is
        done, with all that came meanwhile."""
        if self.pending and self.inflight is None and now >= self.next_attempt and not bgpd_down:
            self.reconcile()

    # -- one pass ------------------------------------------------------------------
    def policy_config(self) -> PolicyConfig:
        s = self.settings
        return PolicyConfig(
            pools=s.pools,
            bridge=s.bridge,
            require_neighbor=s.require_neighbor,
            max_prefixes=s.max_prefixes,
            held=self.operator.held,
            drain=self.operator.drain,
            min_metric=self.announcer.min_metric,
            carrier=self.snapshot.bridge_carrier if self.snapshot else True,
            needs_carrier=self.announcer.needs_carrier,
        )

    def reconcile(self) -> bool:
        """One pass: decide, diff against FRR, apply, verify. True when FRR matches."""
        if self.snapshot is None:
            return False
        started = self.clock()
        if started < self.config_wait_until and not self._config_loaded():
            self.next_attempt = started + self.settings.probe_interval
            return False
        try:
            if self.frr_state is None:
                if not self.collect(wait=True):
                    return False
                self.frr_state = self.announcer.read()
            self._pass(started, self.frr_state)
        except Exception as exc:
            self.failure(exc)
            return False
        self._succeeded()
        return True

    def _pass(self, started: float, state: dict[IPNetwork, bool]) -> None:
        snap = self.snapshot
        assert snap is not None
        config = self.policy_config()
        # What FRR announces keeps its place under the maximum.
        announced: Mapping[IPNetwork, bool] = state
        decision = None
        if self.decision is not None and self.changed is not None:
            decision = redecide(
                self.decision, self.changed, config, announced, snap.permanent_neighbors
            )
        if decision is None:
            decision = decide(snap.routes, config, announced, snap.permanent_neighbors)
        self.decision = decision
        self.changed = {}
        self.metrics.decision(decision, self.operator.drain, len(self.operator.held))
        for alert in decision.alerts:
            if self.last_error != alert:
                log.error("ALERT: %s", alert)
        target = decision.desired
        if state is self.synced_state and decision.touched is not None:
            plan = diff_touched(target, state, decision.touched)
        else:
            plan = diff(target, state)
        if plan:
            if not self.collect(wait=True):  # the batch before failed: re-read first
                raise _Abandoned
            self.frr_state = None  # unknown if apply fails
            if self.submit is not None:
                self.inflight = Inflight(
                    self.submit(lambda: self._timed_apply(plan)), plan, started
                )
            else:
                self.batch_done(plan, self._timed_apply(plan), started)
            # FRR takes the whole batch (or the failure is collected and FRR
            # re-read): what it should hold now. It is read back and compared
            # (verify) once the burst is over, not inside it: a read of 10,000
            # statements costs ~0.3 s, and staticd as much CPU as a commit.
            expected = dict(state)
            for prefix in plan.withdraw:
                expected.pop(prefix, None)
            expected.update(plan.announce)
            self.frr_state = expected
            now = self.clock()
            self.unverified_since = self.unverified_since or now
            self.verify_at = now + self.settings.verify_delay
        # FRR now holds (or, unverified, took) exactly the target.
        self.synced_state = self.frr_state

    def _succeeded(self) -> None:
        if not self.frr_up or self.last_error:
            log.info("FRR matches the desired announcements again")
        self.frr_up = True
        self.metrics.frr_up.set(1)
        self.last_error = None
        self.backoff.reset()
        self.unavailable.reset()
        self.pending = False
        self.next_verify = self.clock() + self.settings.verify_interval
        self.metrics.announced.set(len(self.frr_state or {}))
        self.metrics.reconciles.labels("ok").inc()
        self.metrics.last_success.set(time.time())
        if self.on_pass is not None:
            self.on_pass()

    def _config_loaded(self) -> bool:
        """Whether a restarted bgpd has its config (announcers that can tell)."""
        if not self.collect(wait=True) or self.announcer.config_loaded():
            self.config_wait_until = 0.0
            return True
        return False

    def _timed_apply(self, plan: Plan) -> float:
        t0 = time.perf_counter()
        self.announcer.apply(plan)
        return time.perf_counter() - t0

    def batch_done(self, plan: Plan, elapsed: float, started: float) -> None:
        self.metrics.batch_seconds.observe(elapsed)
        self.metrics.changes.labels("announce").inc(len(plan.announce))
        self.metrics.changes.labels("withdraw").inc(len(plan.withdraw))
        self.last_batch_seconds = elapsed
        self.last_plan = plan.summary()
        log.info(
            "batch applied",
            extra={"fields": {
                "announce": [str(p) for p, _ in plan.announce[:20]],
                "withdraw": [str(p) for p in plan.withdraw[:20]],
                "summary": plan.summary(), "apply_ms": round(elapsed * 1000, 2),
                "pass_ms": round((self.clock() - started) * 1000, 2),
            }},
        )  # fmt: skip

    def collect(self, wait: bool) -> bool:
        """Finish the batch in flight (if it is done, or `wait`): False when it
        failed, which is handled as a failed pass (FRR is read again)."""
        job = self.inflight
        if job is None or not (wait or job.future.done()):
            return True
        self.inflight = None
        try:
            elapsed = job.future.result()
        except Exception as exc:
            self.failure(exc)
            return False
        self.batch_done(job.plan, elapsed, job.started)
        return True

    def verify(self) -> bool:
        """Read FRR back and compare with the decision; a difference is an error
        (a change FRR accepted but did not keep, or someone else's edit) and the
        next pass reconciles from what was read."""
        if self.decision is None or not self.collect(wait=True):
            return False
        try:
            if self.announcer.confirms_apply and self.frr_state is not None:
                after = self.frr_state  # every batch was committed whole
            else:
                after = self.announcer.read()
        except DriverError as exc:
            self.failure(exc)
            return False
        self.unverified_since = None
        self.frr_state = after
        self.metrics.announced.set(len(after))
        left = diff(self.decision.desired, after)
        if left:
            self.metrics.errors.labels("verify").inc()
            message = f"FRR differs from the applied batches: still {left.summary()}"
            log.error("verify failed, reconciling from FRR's state", extra={"fields": {
                "error": message,
                "announce": [str(p) for p, _ in left.announce[:20]],
                "withdraw": [str(p) for p in left.withdraw[:20]],
            }})  # fmt: skip
            self.last_error = message
            self.pending = True
            self.next_attempt = self.clock() + self.backoff.next_delay()
            return False
        return True

    def failure(self, exc: Exception) -> None:
        """A failed pass, batch or read: FRR unreachable is probed again soon,
        FRR answering errors is retried with backoff, anything else is a bug
        (logged with its traceback) that must not end the loop."""
        if isinstance(exc, _Abandoned):
            return  # the failure that abandoned the pass is handled already
        if isinstance(exc, FrrUnavailable):
            self._failed("frr-unavailable", exc, self.unavailable.next_delay())
        elif isinstance(exc, DriverError):
            self._failed("driver", exc, self.backoff.next_delay())
        else:
            log.error("unexpected error", exc_info=exc)
            self._failed("internal", exc, self.backoff.next_delay())

    def _failed(self, kind: str, exc: Exception, delay: float) -> None:
        message = str(exc)
        self.unverified_since = None  # the re-read before the next batch verifies
        self.frr_state = None  # a batch may be half-applied: read FRR before the next one
        self.metrics.errors.labels(kind).inc()
        self.metrics.reconciles.labels("failed").inc()
        if kind == "frr-unavailable":
            self.frr_up = False
            self.metrics.frr_up.set(0)
            if self.inflight is not None:  # (an OSPF daemon failed) let bgpd's batch end first
                futures.wait([self.inflight.future])
            self.announcer.close()
        if message != self.last_error:
            log.error(
                "pass failed, retrying",
                extra={"fields": {"kind": kind, "error": message, "retry_in_s": round(delay, 3)}},
            )
        self.last_error = message
        self.pending = True
        self.next_attempt = self.clock() + delay

    # -- repairs after a zebra restart (see frrctl.daemon.aftermath) ---------------
    def repair(self) -> None:
        if self.decision is None or not self.collect(wait=True):
            return
        desired = set(self.decision.desired)
        if repair_table(self.announcer, desired, self.table, self.metrics, self.clock()):
            self.frr_state = None
            self.pending = True

    def check_ospf6(self) -> None:
        if self.decision is None or not self.collect(wait=True):
            return
        desired, now = self.decision.desired, self.clock()
        if check_redistribution(self.announcer, desired, self.ospf6, self.metrics, now):
            self.frr_state = None
            self.pending = True


class _Abandoned(Exception):
    """A pass gave up because the batch before it failed (already handled)."""
