"""The daemon's event loop: the thin side-effect half.

One thread, one select loop over:
- the netlink watcher (kernel routes, neighbours, addresses, links on the
  bridge; a burst of events becomes one snapshot, see frrctl.watch);
- idle vty sessions to FRR's daemons (frrctl.daemon.monitor): when FRR closes
  one, the daemon died or restarts; the loop probes every `probe_interval`
  until it is back and then reconciles at once;
- the control socket (status, reload of the operator state) and signals
  (SIGTERM/SIGINT stop, SIGHUP reloads the operator state);
- a wake pipe, written by the worker thread that applies a batch.

Every decision and timer is the reconciler's (frrctl.daemon.reconciler); the
loop owns the sockets, the worker, and the reads and repairs over bgpd's vty
(frrctl.daemon.bgpvty) whose outcome the pure checks judge.

The daemon never withdraws on exit: stopping or restarting it leaves FRR
announcing what it announced. At start it reads FRR's state and changes only
what differs (stale prefixes go, valid ones are never touched).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from frrctl.daemon import bgpvty
from frrctl.daemon.control import ControlServer
from frrctl.daemon.memory import malloc_trim, trim_due
from frrctl.daemon.monitor import FrrMonitor, monitored
from frrctl.daemon.reconciler import Reconciler
from frrctl.daemon.repairs import BgpRepairs
from frrctl.daemon.report import build_status
from frrctl.daemon.settings import DaemonSettings
from frrctl.daemon.timing import Backoff, gather_limit, step_timeout
from frrctl.errors import FrrctlError
from frrctl.frr.base import AnnounceDriver, DriverError
from frrctl.frr.registry import make_announcer, uses_grpc
from frrctl.metrics import Metrics, resync_kind
from frrctl.policy import prefix_key
from frrctl.status import CONTROL_SOCKET, DaemonStatus, OperatorState, load_operator
from frrctl.watch import KernelSnapshot, NetlinkWatcher

log = logging.getLogger("frrctl.daemon")


def tune_gc() -> None:
    """Make Python's cycle collector cheap for route bursts.

    A burst of 10,000 routes allocates ~100,000 objects (events, prefixes,
    verdicts), none of them in cycles, so reference counting frees them all.
    With the default first-generation threshold (700) the collector still
    runs ~150 times per burst, and its older generations walk the long-lived
    heap again and again. Measured on a 10,000-route burst: ~25% of the
    watcher's and the policy's CPU. Freezing the start-up heap takes it out
    of every collection; a higher threshold collects less often. Cycles are
    still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


class Daemon:
    """The announcement loop; `run()` until SIGTERM/SIGINT or `stop()`."""

    def __init__(
        self,
        settings: DaemonSettings,
        driver: AnnounceDriver | None = None,
        watcher: NetlinkWatcher | None = None,
        metrics: Metrics | None = None,
        netns: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.announcer = driver or make_announcer(settings.driver, settings.announcer_spec())
        self.watcher = watcher or NetlinkWatcher(
            settings.bridge,
            netns=netns,
            window=settings.window,
            max_window=settings.max_window,
            neighbors=settings.require_neighbor,
        )
        self.metrics = metrics or Metrics()
        self.monitor = FrrMonitor(settings.vty_dir, monitored(self.announcer))
        self.clock = clock
        self._worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="frrctl-apply")
            if settings.overlap
            else None
        )
        self.rec = Reconciler(
            settings,
            self.announcer,
            self.metrics,
            clock,
            submit=self._submit if self._worker is not None else None,
        )
        self.control = ControlServer(settings.state_dir / CONTROL_SOCKET, self.handle)
        self.repairs = BgpRepairs(
            settings, self.monitor, self.rec, self.metrics, self._register_monitor
        )
        self._stop = False
        self._next_probe = 0.0  # when absent FRR daemons are tried again
        self._changes = 0  # changes applied since malloc_trim last ran
        self._counted: object = None  # the batch in flight already counted
        self._sel = selectors.DefaultSelector()
        self._watched: dict[str, int] = {}  # name -> registered fd
        # The watcher's socket as registered: by identity, as a resync reopens
        # it, usually under the same fd number (issue 10, 4.1).
        self._netlink_sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # -- life cycle ------------------------------------------------------------
    def stop(self) -> None:
        self._stop = True
        self._wake(b"s")

    def _signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            os.write(self._wake_w, b"h")
        else:
            self.stop()

    def run(self) -> None:
        s = self.settings
        s.state_dir.mkdir(parents=True, exist_ok=True)
        self._reload_operator("start")
        if s.metrics_port:
            try:
                self.metrics.serve(s.metrics_port)
            except OSError as exc:
                raise FrrctlError(
                    f"cannot serve metrics on 127.0.0.1:{s.metrics_port}: {exc.strerror}"
                ) from None
        if uses_grpc(s.driver) and s.grpc_guard:
            from frrctl.frr.firewall import guard_grpc_port

            try:
                guard_grpc_port(s.grpc_port)
            except DriverError as exc:
                raise FrrctlError(str(exc)) from None
            log.info("gRPC port %d closed to everything but loopback (nftables)", s.grpc_port)
        self._sel.register(self.control.open(), selectors.EVENT_READ, "control")
        old = {
            sig: signal.signal(sig, self._signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        log.info(
            "daemon starting",
            extra={"fields": {"host": s.hostname, "driver": s.driver, "bridge": s.bridge,
                              "max_prefixes": s.max_prefixes, "state_dir": str(s.state_dir)}},
        )  # fmt: skip
        try:
            self._start_watcher()
            self.monitor.connect_all()
            self._register_monitor()
            tune_gc()
            while not self._stop:
                self._step()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            self.close()
            log.info("daemon stopped; FRR keeps announcing what it announced")

    def close(self) -> None:
        self.control.close()
        self.monitor.close()
        self.watcher.close()
        self.rec.collect(wait=True)
        if self._worker is not None:
            self._worker.shutdown()
        self.announcer.close()
        self._sel.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the loop ----------------------------------------------------------------
    def _submit(self, apply: Callable[[], float]) -> Future[float]:
        assert self._worker is not None
        future = self._worker.submit(apply)
        future.add_done_callback(lambda _: self._wake(b"a"))
        return future

    def _wake(self, what: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, what)

    def _step(self) -> None:
        rec = self.rec
        timeout = rec.timeout(self.clock(), probing=bool(self.monitor.down))
        events = self._sel.select(
            step_timeout(timeout, self._holder_down(), self.settings.probe_interval)
        )
        rec.collect(wait=False)
        for key, _ in events:
            what = key.data
            if what == "netlink":
                self._read_netlink()
            elif what == "wake":
                self._read_wake()
            elif what == "control":
                self.control.accept()
            elif isinstance(what, str) and what.startswith("vty:"):
                self._vty_event(what[4:])
        now = self.clock()
        # (an absent daemon, e.g. ospfd on a BGP-only host, is tried once per probe)
        if not self.monitor.all_connected() and now >= self._next_probe:
            self._next_probe = now + self.settings.probe_interval
            back = self.monitor.connect_all()
            self._register_monitor()
            if back:
                log.info("FRR daemon(s) back: %s; reconciling", ", ".join(back))
                rec.frr_back(back)
        unverified = rec.unverified_since is not None
        rec.timed(now)
        if rec.liveness_due(now):
            self._check_liveness(now)
            # the kernel dump it compares with is as large as the view: give it back
            if trim_due(len(rec.snapshot.routes) if rec.snapshot else 0, burst_over=True):
                malloc_trim()
        rec.collect(wait=False)  # a batch done while the kernel was read: the next starts now
        rec.maybe_pass(now, bgpd_down=self._holder_down())
        self._count_batch()
        if trim_due(self._changes, burst_over=unverified and rec.unverified_since is None):
            self._changes = 0
            malloc_trim()

    def _count_batch(self) -> None:
        """Changes submitted since the last trim (each batch in flight counted once)."""
        job = self.rec.inflight
        if job is not None and job is not self._counted:
            self._counted = job
            self._changes += len(job.plan.announce) + len(job.plan.withdraw)

    def _holder_down(self) -> bool:
        """bgpd or a daemon holding the announcer's routes (staticd) is known gone:
        reading or applying would only wait for it (the monitor sees it back)."""
        return bool(self.monitor.down & {"bgpd", *self.announcer.monitored_daemons})

    def _start_watcher(self) -> None:
        backoff = Backoff(0.1, 5.0)
        while not self._stop:
            try:
                self._new_snapshot(self.watcher.start())
                return
            except Exception as exc:
                self.metrics.errors.labels("netlink").inc()
                delay = backoff.next_delay()
                log.error("netlink dump failed: %s; retrying in %.1f s", exc, delay)
                time.sleep(delay)

    def _register_watcher(self) -> None:
        sock = self.watcher.selectable()
        if self._netlink_sock is not sock:
            self._unregister_watcher()
            self._sel.register(sock, selectors.EVENT_READ, "netlink")
            self._netlink_sock = sock

    def _unregister_watcher(self) -> None:
        # The old socket is closed already (its fd may be the new one's):
        # selectors finds it by identity, and epoll forgot the closed fd.
        if self._netlink_sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._netlink_sock)
            self._netlink_sock = None

    def _unregister(self, name: str) -> None:
        fd = self._watched.pop(name, None)
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(fd)

    def _register_monitor(self) -> None:
        for name, client in self.monitor.clients.items():
            key = f"vty:{name}"
            if client.connected:
                fd = client.fileno()
                if self._watched.get(key) != fd:
                    self._unregister(key)
                    self._sel.register(fd, selectors.EVENT_READ, key)
                    self._watched[key] = fd
            else:
                self._unregister(key)

    def _new_snapshot(self, snap: KernelSnapshot) -> None:
        if self.rec.new_snapshot(snap):
            self.metrics.resyncs.labels(resync_kind(snap.cause)).inc()
            log.info(
                "kernel view resynced",
                extra={"fields": {"cause": snap.cause, "routes": len(snap.routes),
                                  "generation": snap.generation}},
            )  # fmt: skip
        self._register_watcher()

    def _resync(self, cause: str) -> None:
        try:
            snap = self.watcher.resync(cause)
        except Exception as exc:
            log.error("netlink resync failed: %s; retrying", exc)
            self._unregister_watcher()
            self._start_watcher()
            return
        self._new_snapshot(snap)

    def _read_netlink(self) -> None:
        try:
            busy = self.rec.inflight is not None
            snap = self.watcher.poll(
                0,
                max_window=gather_limit(busy, self.settings.window, self.settings.max_window),
                stop=self._wake_r if busy else None,
            )
        except Exception as exc:
            self.metrics.errors.labels("netlink").inc()
            log.error("netlink: %s; resyncing", exc)
            self._resync(f"resync: {exc}")
            return
        if snap is not None:
            self._new_snapshot(snap)

    def _read_wake(self) -> None:
        try:
            data = os.read(self._wake_r, 4096)
        except BlockingIOError:
            return
        if b"h" in data:
            self._reload_operator("SIGHUP")

    def _vty_event(self, name: str) -> None:
        client = self.monitor.clients[name]
        if client.idle_closed():
            self._unregister(f"vty:{name}")
            self.monitor.down.add(name)
            self.metrics.frr_reconnects.labels(name).inc()
            log.warning("FRR %s closed its vty session (killed or restarting)", name)
            self.rec.frr_changed()

    def _reload_operator(self, why: str) -> OperatorState:
        rec = self.rec
        try:
            new = load_operator(self.settings.state_dir)
        except FrrctlError as exc:
            self.metrics.errors.labels("operator-state").inc()
            log.error("%s; keeping drain=%s and %d hold(s)", exc, rec.operator.drain.value,
                      len(rec.operator.held))  # fmt: skip
            return rec.operator
        if new != rec.operator or why == "start":
            log.info(
                "operator state loaded",
                extra={"fields": {"why": why, "drain": new.drain.value,
                                  "held": [str(p) for p in sorted(new.held, key=prefix_key)]}},
            )  # fmt: skip
        rec.set_operator(new)
        return new

    # -- the kernel view check (I/O; decisions in checks) ----------------------------
    def _check_liveness(self, now: float) -> None:
        """Compare the kernel's routes with the watcher's view. A difference
        that persists for `liveness_confirm` (longer than any event takes to
        arrive) means the daemon stopped hearing the kernel: log it, count it,
        resync. Two within 10 minutes, or one not cured, and status says
        unhealthy (`kernel_view_ok`, `healthy`, `frr_state_verified`)."""
        rec = self.rec
        # Every second while zebra may just have come back (default routes, 4.3).
        rec.liveness.start(now, fast=now < rec.repair_until)
        try:
            audit = self.watcher.audit()
        except Exception as exc:
            self.metrics.errors.labels("netlink").inc()
            log.error("kernel view check: %s", exc)
            return
        if audit is None:  # dump interrupted: try again soon
            rec.liveness.inconclusive(now)
            return
        self.repairs.defaults(now, audit.defaults)
        self.repairs.bfd(now)
        if rec.ospf6.confirmed:  # until an ospf6d restart cures it
            rec.check_ospf6()
        if not rec.liveness.observe(now, audit.differs):
            return
        self.metrics.errors.labels("kernel-view").inc()
        self.metrics.kernel_view_mismatches.inc()
        message = (
            f"the kernel's routes differ from the daemon's view ({len(audit.missing)} missing, "
            f"{len(audit.extra)} gone): netlink events were lost; resyncing"
        )
        view = len(rec.snapshot.routes) if rec.snapshot else 0
        log.error("ALERT: %s", message, extra={"fields": {
            "kernel_routes": audit.routes, "view_routes": view,
            "mismatches_10min": len(rec.liveness.times)}})  # fmt: skip
        rec.last_error = message
        self._resync("resync: kernel view check found a difference")

    # -- control socket ------------------------------------------------------------
    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        cmd = message.get("cmd")
        rec = self.rec
        if cmd == "status":
            return self.status(peers=bool(message.get("peers", True))).to_json()
        if cmd == "reload":
            self._reload_operator("control")
            ok = rec.reconcile() and (rec.unverified_since is None or rec.verify())
            return {
                "applied": ok,
                "drain": rec.operator.drain.value,
                "held": len(rec.operator.held),
                "last_batch": rec.last_plan,
                "announced": len(rec.frr_state or {}),
                "last_error": rec.last_error,
            }
        return {"error": f"unknown command {cmd!r}"}

    def status(self, peers: bool = True) -> DaemonStatus:
        """Every candidate prefix: kernel, verdict and reason, FRR, advertised to."""
        rec = self.rec
        frr = rec.frr_state
        if frr is None:
            frr = {}
            if not self._holder_down() and rec.collect(wait=True):
                try:
                    frr = self.announcer.read()
                except DriverError as exc:
                    rec.last_error = str(exc)
        advertised: dict[str, list[str]] = {}
        bgpd = self.monitor.connected("bgpd") if peers else None
        if bgpd is not None:
            try:
                advertised = bgpvty.advertised_to(bgpd)
            finally:
                # The session must be idle again for the monitor; re-register its fd.
                self._register_monitor()
        return build_status(rec, frr, self.monitor.down, advertised)
