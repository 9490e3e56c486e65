"""`frrctl daemon`: watch -> policy -> driver -> verify, healing itself after any fault.

One thread, one select loop over:
- the netlink watcher (kernel routes, neighbours, addresses, links on the
  bridge; a burst of events becomes one snapshot, see frrctl.watch);
- idle vty sessions to zebra and bgpd: when FRR closes one, the daemon died
  or restarts; the loop probes every `probe_interval` until it is back and
  then reconciles at once (re-announce within a fraction of a second);
- the control socket (status, reload of the operator state) and signals
  (SIGTERM/SIGINT stop, SIGHUP reloads the operator state).

A pass (`reconcile`) decides with the pure policy and makes FRR announce
exactly that: it diffs against the state last read back from FRR (re-read
whenever it may be stale: at start, after any error, after FRR came back,
every `verify_interval`), applies the difference as one batch and reads it
back to verify. Errors never end the loop: FRR unreachable is probed every
`probe_interval`; FRR answering errors is retried with tenacity's exponential
backoff; every failure is logged and counted, and the state is re-read
before the next batch, so a half-applied batch never goes unnoticed.

The daemon never withdraws on exit: stopping or restarting it leaves FRR
announcing what it announced. At start it reads FRR's state and changes only
what differs (stale prefixes go, valid ones are never touched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable, Mapping
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity

from frrctl.errors import FrrctlError, UsageError
from frrctl.frr.base import AnnounceDriver, DriverError, FrrUnavailable, RetryPolicy
from frrctl.frr.ospf import OspfGate, admission_closed
from frrctl.frr.vty import VtyClient
from frrctl.metrics import Metrics, resync_kind
from frrctl.policy import (
    STATIC_MIN_METRIC,
    Code,
    Decision,
    Drain,
    KernelRoute,
    Plan,
    PolicyConfig,
    Verdict,
    decide,
    diff,
    diff_touched,
    prefix_key,
    redecide,
)
from frrctl.pools import IPNetwork, Pools
from frrctl.status import (
    CONTROL_SOCKET,
    OperatorState,
    load_operator,
)
from frrctl.watch import KernelSnapshot, NetlinkWatcher

# Seconds between two repairs of the same neighbour's lost BFD session.
BFD_REPAIR_RETRY = 10.0

log = logging.getLogger("frrctl.daemon")

MONITORED = ("zebra", "bgpd", "ospfd", "ospf6d")


@dataclass(frozen=True)
class DaemonSettings:
    """Everything the daemon needs, from the host's inventory entry and the command line."""

    hostname: str
    asn: int | None
    bridge: str
    pools: Pools
    driver: str  # vtysh | grpc | grpc-static
    max_prefixes: int
    require_neighbor: bool
    vty_dir: Path
    state_dir: Path
    grpc_target: str = "127.0.0.1:50051"
    grpc_port: int = 50051
    grpc_guard: bool = True  # nftables: the gRPC port only from the host itself
    runs_bgp: bool = True
    ospf_versions: tuple[int, ...] = ()  # 4: ospfd, 6: ospf6d (only-cloud gate)
    grpc_shards: int = 64
    metrics_port: int | None = 9342
    verify_interval: float = 30.0
    verify_delay: float = 0.5  # read back this long after the last batch of a burst
    verify_max_delay: float = 2.0  # ... but never later than this after the first
    probe_interval: float = 0.1
    # Every this many seconds the kernel's routes are dumped and compared with
    # the watcher's view (a daemon that stopped hearing netlink must notice).
    liveness_interval: float = 10.0
    liveness_confirm: float = 1.0  # a difference must persist this long (events in flight)
    # After bgpd restarts, wait this long at most for its config load to end
    # before announcing (see GrpcDriver.config_loaded).
    config_wait: float = 5.0
    # Apply each batch in a worker thread: while FRR takes it, the loop reads
    # and judges the next part of a burst (only one batch is ever in flight).
    overlap: bool = True
    window: float = 0.01  # netlink burst window (quiet time that ends a burst)
    max_window: float = 0.1

    @classmethod
    def from_inventory(
        cls,
        inventory: Path,
        hostname: str,
        vty_dir: Path,
        state_dir: Path,
        **overrides: Any,
    ) -> DaemonSettings:
        from frrctl.inventory import load_inventory

        fleet = load_inventory(inventory)
        host = fleet.host(hostname)
        ctl = host.controller
        if host.mode != "controller":
            log.warning(
                "host %s is in %s mode: FRR redistributes by itself; the daemon's policy "
                "only adds to it",
                hostname,
                host.mode,
            )
        ospf = tuple(v for v, on in ((4, host.runs_ospf), (6, host.runs_ospf6)) if on)
        if not host.runs_bgp and not ospf:
            raise UsageError(f"host {hostname!r} runs neither BGP nor OSPF: nothing to announce")
        settings = cls(
            hostname=hostname,
            asn=host.asn,
            bridge=fleet.fabric.bridge,
            pools=fleet.pools_of(host),
            driver=ctl.driver,
            max_prefixes=ctl.max_prefixes,
            require_neighbor=ctl.require_neighbor,
            vty_dir=vty_dir,
            state_dir=state_dir,
            grpc_target=f"127.0.0.1:{ctl.grpc_port}",
            grpc_port=ctl.grpc_port,
            metrics_port=ctl.metrics_port,
            runs_bgp=host.runs_bgp,
            ospf_versions=ospf,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if clean.get("metrics_port") == 0:
            clean["metrics_port"] = None  # 0 turns the metrics endpoint off
        return dataclasses.replace(settings, **clean)


def tune_gc() -> None:
    """Make Python's cycle collector cheap for route bursts.

    A burst of 10,000 routes allocates ~100,000 objects (events, prefixes,
    verdicts), none of them in cycles, so reference counting frees them all.
    With the default first-generation threshold (700) the collector still
    runs ~150 times per burst, and its older generations walk the long-lived
    heap again and again (~40,000 objects at start-up, several times that
    with 10,000 routes held). Measured on a 10,000-route burst: ~25% of the
    watcher's and the policy's CPU. Freezing the start-up heap takes it out
    of every collection; a higher threshold collects less often. Cycles are
    still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def make_driver(settings: DaemonSettings) -> AnnounceDriver:
    # Short per-call retries: the loop does the long-term retrying, and stays
    # responsive (kernel events, status) while FRR is away.
    retry = RetryPolicy(deadline=0.3, first_wait=0.02, max_wait=0.1)
    if not settings.runs_bgp:
        return NoBgp()
    if settings.driver == "vtysh":
        from frrctl.frr.vtysh import VtyshDriver

        if settings.asn is None:
            raise UsageError("the vtysh driver needs the host's asn")
        return VtyshDriver(settings.vty_dir, settings.asn, retry=retry)
    if settings.driver == "grpc":
        from frrctl.frr.gate import Gate
        from frrctl.frr.grpc import GrpcDriver

        gate = Gate(bridge=settings.bridge, shards=settings.grpc_shards)
        return GrpcDriver(
            settings.grpc_target,
            gate=gate,
            retry=retry,
            rpc_timeout=10.0,
            vty_dir=settings.vty_dir,
        )
    if settings.driver == "grpc-static":
        from frrctl.frr.staticd import StaticdDriver, StaticLayout

        return StaticdDriver(
            settings.grpc_target,
            layout=StaticLayout(bridge=settings.bridge),
            retry=retry,
            rpc_timeout=10.0,
            vty_dir=settings.vty_dir,
        )
    raise UsageError(f"unknown driver {settings.driver!r} (vtysh, grpc or grpc-static)")


def loop_timeout(now: float, verify: float, **timers: float | None) -> float:
    """How long the loop may sleep: until the earliest pending timer (verify,
    and each of `timers` that is pending, i.e. not None: next attempt, read-back,
    probe interval (a duration), repair, kernel view check). A timer left out
    here is one that never fires while the daemon is idle (issue 10, 4.2)."""
    waits = [verify - now]
    for name, at in timers.items():
        if at is not None:
            waits.append(at if name == "probe" else at - now)
    return max(0.0, min(waits))


def bfd_sessions_lost(neighbors: Mapping[str, Any], bfd_peers: list[Any]) -> set[str]:
    """Established BGP neighbours with BFD configured that bfdd has no session
    for (from `show bgp neighbors json` and `show bfd peers json`)."""
    have = {str(p.get("peer")) for p in bfd_peers if isinstance(p, dict)}
    return {
        address
        for address, info in neighbors.items()
        if isinstance(info, dict)
        and info.get("peerBfdInfo")
        and info.get("bgpState") == "Established"
        and address not in have
    }


class NoBgp(AnnounceDriver):
    """An OSPF-only host: no BGP announcements (the OSPF gates do the work)."""

    name = "none"

    def read(self) -> dict[IPNetwork, bool]:
        return {}

    def apply(self, plan: Plan) -> None:
        if plan:
            raise DriverError("this host runs no BGP: nothing can be announced through bgpd")


class Backoff:
    """Exponential backoff with jitter between failed passes (tenacity's wait strategy)."""

    def __init__(self, initial: float = 0.1, maximum: float = 10.0) -> None:
        self._wait = tenacity.wait_exponential_jitter(
            multiplier=initial, max=maximum, jitter=initial
        )
        self.attempt = 0

    def next_delay(self) -> float:
        self.attempt += 1
        state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
        state.attempt_number = self.attempt
        return float(self._wait(state))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class FrrMonitor:
    """Idle vty sessions to FRR's daemons: a closed one means the daemon died."""

    vty_dir: Path
    daemons: tuple[str, ...] = MONITORED
    clients: dict[str, VtyClient] = field(init=False)
    down: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.clients = {d: VtyClient(self.vty_dir / f"{d}.vty", timeout=10) for d in self.daemons}

    def present(self) -> list[str]:
        """Daemons whose vty socket exists (a host may run only some)."""
        return [d for d, c in self.clients.items() if c.connected or c.path.exists()]

    def connect_all(self) -> list[str]:
        """Try to (re)connect every absent session; return the daemons now back."""
        back = []
        for name, client in self.clients.items():
            if client.connected:
                continue
            try:
                client.connect()
            except (FrrUnavailable, DriverError):
                if client.path.exists() or name in self.down:
                    self.down.add(name)
                continue
            if name in self.down:
                back.append(name)
                self.down.discard(name)
        return back

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _json_safe(verdict: Verdict) -> dict[str, Any]:
    return {
        "prefix": str(verdict.prefix),
        "verdict": verdict.code.value,
        "reason": verdict.reason,
        "announce": verdict.announce,
        "graceful": verdict.graceful_shutdown,
    }


@dataclass
class Inflight:
    """The batch a worker thread is applying."""

    future: Future[float]  # -> seconds the driver took
    plan: Plan
    started: float  # monotonic start of the pass that made it


class Daemon:
    """The announcement loop; `run()` until SIGTERM/SIGINT or `stop()`."""

    def __init__(
        self,
        settings: DaemonSettings,
        driver: AnnounceDriver | None = None,
        watcher: NetlinkWatcher | None = None,
        metrics: Metrics | None = None,
        netns: str | None = None,
    ) -> None:
        self.settings = settings
        self.driver = driver or make_driver(settings)
        self.watcher = watcher or NetlinkWatcher(
            settings.bridge,
            netns=netns,
            window=settings.window,
            max_window=settings.max_window,
            neighbors=settings.require_neighbor,
        )
        self.metrics = metrics or Metrics()
        self.monitor = FrrMonitor(settings.vty_dir)
        gate_retry = RetryPolicy(deadline=0.3, first_wait=0.02, max_wait=0.1)
        self.ospf_gates = [
            OspfGate(settings.vty_dir, v, retry=gate_retry) for v in settings.ospf_versions
        ]
        self.ospf_blocked: set[IPNetwork] = set()
        self.ospf_admission_closed = False
        self.operator = OperatorState()
        self.snapshot: KernelSnapshot | None = None
        # Kernel changes not judged yet (prefix -> routes now); None: judge all.
        self.changed: dict[IPNetwork, tuple[KernelRoute, ...]] | None = None
        # The FRR state that equals the last decision's desired set exactly
        # (identity, not equality): then a pass diffs only what it touched.
        self.synced_state: dict[IPNetwork, bool] | None = None
        self.decision: Decision | None = None
        self.frr_state: dict[IPNetwork, bool] | None = None  # last read back; None = re-read
        self.frr_up = False
        self.last_error: str | None = None
        self.last_batch_seconds: float | None = None
        self.last_plan: str | None = None
        self.pending = True  # a pass is due
        self.next_attempt = 0.0  # monotonic time before which no pass runs (backoff)
        self.next_verify = 0.0
        self.unverified_since: float | None = None  # batches applied, not read back yet
        self.verify_at = 0.0
        self.backoff = Backoff()  # FRR answers errors
        # Announced prefixes missing from bgpd's table after a zebra restart
        # (`network` statements stuck unresolved, see VtyshDriver.invalid; or
        # kernel redistribution not registered again, see gate.nudge_edit):
        # checked every second for a while after zebra came back (the check
        # reads bgpd's whole table: too heavy to run all the time); refreshed
        # when found missing twice in a row.
        self.repair_until = 0.0
        self.next_repair = 0.0
        self.config_wait_until = 0.0  # bgpd restarted: its config may still be loading
        self.suspect: set[IPNetwork] = set()
        self.stale_seen: dict[IPNetwork, float] = {}  # prefix -> first seen stale
        self.stale_alerted: set[IPNetwork] = set()
        self.unavailable = Backoff(settings.probe_interval, 0.5)  # FRR not answering
        self._stop = False
        self._sel = selectors.DefaultSelector()
        self._watched: dict[str, int] = {}  # name -> registered fd
        # The watcher's socket as registered: by identity, as a resync reopens
        # it, usually under the same fd number (issue 10, 4.1).
        self._netlink_sock: socket.socket | None = None
        # Liveness of the kernel view (see _check_liveness).
        self.next_liveness = 0.0
        self.liveness_suspect: frozenset[Any] = frozenset()
        self.kernel_view_ok = True
        self.kernel_view_mismatches = 0
        self.mismatch_times: list[float] = []  # monotonic times of confirmed mismatches
        # Default routes bgpd holds as best but the kernel lacks (see _check_defaults).
        self.defaults_suspect: frozenset[int] = frozenset()
        self.defaults_missing: frozenset[int] = frozenset()  # confirmed
        self.next_defaults_fix = 0.0
        self.defaults_reinstalls = 0
        # BGP neighbours whose BFD session bfdd lost (see _check_bfd).
        self.bfd_suspect: set[str] = set()
        self.bfd_lost: set[str] = set()  # confirmed
        self.bfd_fixed_at: dict[str, float] = {}
        self.bfd_repairs = 0
        self.ospf6_suspect: set[IPNetwork] = set()  # see _check_ospf6
        self.ospf6_lost: set[IPNetwork] = set()  # confirmed
        self._control: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._handlers: dict[str, Callable[[], None]] = {}
        self.on_pass: Callable[[], None] | None = None  # test hook
        self.inflight: Inflight | None = None
        self._worker = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="frrctl-apply")
            if settings.overlap
            else None
        )

    # -- life cycle ------------------------------------------------------------
    def stop(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"s")

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
        if s.driver in ("grpc", "grpc-static") and s.grpc_guard:
            from frrctl.frr.firewall import guard_grpc_port

            try:
                guard_grpc_port(s.grpc_port)
            except DriverError as exc:
                raise FrrctlError(str(exc)) from None
            log.info("gRPC port %d closed to everything but loopback (nftables)", s.grpc_port)
        self._open_control()
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
        if self._control is not None:
            self._control.close()
            self._control = None
            (self.settings.state_dir / CONTROL_SOCKET).unlink(missing_ok=True)
        self.monitor.close()
        for gate in self.ospf_gates:
            gate.close()
        self.watcher.close()
        self._collect(wait=True)
        if self._worker is not None:
            self._worker.shutdown()
        self.driver.close()
        self._sel.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the loop ----------------------------------------------------------------
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
        if self.snapshot is None or snap.generation != self.snapshot.generation:
            self.metrics.resyncs.labels(resync_kind(snap.cause)).inc()
            log.info(
                "kernel view resynced",
                extra={"fields": {"cause": snap.cause, "routes": len(snap.routes),
                                  "generation": snap.generation}},
            )  # fmt: skip
        self.snapshot = snap
        if snap.changed is None or self.changed is None:
            self.changed = None
        else:
            self.changed.update(snap.changed)
        self.pending = True
        self._register_watcher()

    def _timeout(self, now: float) -> float:
        return loop_timeout(
            now,
            verify=self.next_verify,
            attempt=self.next_attempt if self.pending and self.inflight is None else None,
            read_back=self._verify_due() if self.unverified_since is not None else None,
            probe=self.settings.probe_interval if self.monitor.down or not self.frr_up else None,
            repair=self.next_repair if now < self.repair_until and self.frr_up else None,
            liveness=self.next_liveness if self.snapshot is not None else None,
        )

    def _step(self) -> None:
        now = time.monotonic()
        events = self._sel.select(self._timeout(now))
        self._collect(wait=False)
        for key, _ in events:
            what = key.data
            if what == "netlink":
                self._read_netlink()
            elif what == "wake":
                self._read_wake()
            elif what == "control":
                self._accept_control()
            elif isinstance(what, str) and what.startswith("vty:"):
                self._vty_event(what[4:])
        now = time.monotonic()
        if self.monitor.down or not all(c.connected for c in self.monitor.clients.values()):
            back = self.monitor.connect_all()
            self._register_monitor()
            if back:
                log.info("FRR daemon(s) back: %s; reconciling", ", ".join(back))
                self._frr_changed()
                if "bgpd" in back:
                    self.config_wait_until = now + self.settings.config_wait
                if "zebra" in back:
                    self.repair_until = now + 40  # bgpd reconnects to zebra within ~10 s
                    self.next_repair = now + 1
                    self.next_liveness = min(self.next_liveness, now + 1)
        if now >= self.next_verify:
            self.frr_state = None  # periodic check against FRR's real state
            self.pending = True
        if (
            self.unverified_since is not None
            and not self.pending
            and time.monotonic() >= self._verify_due()
        ):
            self.verify()
        if now < self.repair_until and now >= self.next_repair and self.frr_up:
            self.next_repair = now + 1
            self._repair()
            self._check_ospf6()
        if now >= self.next_liveness and self.snapshot is not None:
            self._check_liveness(now)
        # While the monitor knows bgpd is gone, only the monitor's probe runs:
        # it reconciles the moment bgpd is back.
        # While a batch is in flight the loop keeps reading the kernel; the
        # next pass starts when the worker is done, with all that came meanwhile.
        busy = self.inflight is not None
        if (
            self.pending
            and not busy
            and now >= self.next_attempt
            and "bgpd" not in self.monitor.down
        ):
            self.reconcile()

    def _check_liveness(self, now: float) -> None:
        """Compare the kernel's routes with the watcher's view. A difference
        that persists for `liveness_confirm` (longer than any event takes to
        arrive) means the daemon stopped hearing the kernel: log it, count it,
        resync. Two within 10 minutes, or one not cured, and status says
        unhealthy (`kernel_view_ok`, `healthy`, `frr_state_verified`)."""
        s = self.settings
        # Every second while zebra may just have come back (default routes, 4.3).
        interval = s.liveness_confirm if now < self.repair_until else s.liveness_interval
        self.next_liveness = now + interval
        try:
            audit = self.watcher.audit()
        except Exception as exc:
            self.metrics.errors.labels("netlink").inc()
            log.error("kernel view check: %s", exc)
            return
        if audit is None:  # dump interrupted: try again soon
            self.next_liveness = now + s.liveness_confirm
            return
        self._check_defaults(now, audit.defaults)
        self._check_bfd(now)
        if self.ospf6_lost:  # until an ospf6d restart cures it
            self._check_ospf6()
        differs = audit.differs
        confirmed = differs & self.liveness_suspect
        self.liveness_suspect = differs - confirmed
        if not differs:
            self.mismatch_times = [t for t in self.mismatch_times if now - t < 600]
            self.kernel_view_ok = len(self.mismatch_times) < 2
            return
        if not confirmed:
            self.next_liveness = now + s.liveness_confirm
            return
        self.kernel_view_mismatches += 1
        self.mismatch_times = [t for t in self.mismatch_times if now - t < 600] + [now]
        self.kernel_view_ok = False
        self.metrics.errors.labels("kernel-view").inc()
        self.metrics.kernel_view_mismatches.inc()
        message = (
            f"the kernel's routes differ from the daemon's view ({len(audit.missing)} missing, "
            f"{len(audit.extra)} gone): netlink events were lost; resyncing"
        )
        log.error("ALERT: %s", message, extra={"fields": {
            "kernel_routes": audit.routes, "view_routes": len(self.snapshot.routes)
            if self.snapshot else 0, "mismatches_10min": len(self.mismatch_times)}})  # fmt: skip
        self.last_error = message
        self.liveness_suspect = frozenset()
        self.next_liveness = now + s.liveness_confirm  # the resync must cure it
        try:
            snap = self.watcher.resync("resync: kernel view check found a difference")
        except Exception as exc:
            log.error("netlink resync failed: %s; retrying", exc)
            self._unregister_watcher()
            self._start_watcher()
            return
        self._new_snapshot(snap)

    def _check_defaults(self, now: float, kernel: frozenset[int]) -> None:
        """Give the kernel back the default routes bgpd holds as best.

        FRR 8.4: a restarted zebra sweeps the routes its predecessor left in
        the kernel (rib_sweep_route, zebra/main.c), and bgpd, reconnecting,
        sends zebra nothing it had installed before (bgp_zebra_connected in
        bgpd/bgp_zebra.c: "TODO - What if we have peers and networks
        configured, do we have to kick-start them?"). `clear bgp * soft in`
        changes no path, so nothing is re-sent either: the host has no default
        route until a session resets. `no bgp bestpath bandwidth` re-sends
        every best path to zebra (bgp_zebra_announce_table) without touching a
        session or the config (it restores the default the rendered config
        keeps). Measured: the defaults are back in the kernel ~0.1 s later.
        """
        if not self.settings.runs_bgp or self.settings.asn is None or {4, 6} <= kernel:
            self.defaults_suspect = self.defaults_missing = frozenset()
            return
        missing = frozenset(self._bgp_best_defaults() - kernel)
        confirmed = missing & self.defaults_suspect  # seen in two checks in a row
        self.defaults_suspect = missing
        self.defaults_missing = confirmed
        if not confirmed or now < self.next_defaults_fix:
            return
        self.next_defaults_fix = now + 2 * self.settings.liveness_confirm
        self.defaults_reinstalls += 1
        self.metrics.errors.labels("fib-default-missing").inc()
        log.error(
            "ALERT: bgpd holds a best default route the kernel lacks (zebra restarted); "
            "asking bgpd to send its best paths to zebra again",
            extra={"fields": {"families": sorted(confirmed)}},
        )
        client = self.monitor.clients.get("bgpd")
        if client is None or not client.connected:
            return
        try:
            replies = client.run(
                ["configure terminal", f"router bgp {self.settings.asn}",
                 "no bgp bestpath bandwidth", "end"]
            )  # fmt: skip
            bad = [r for r in replies if not r.ok]
            if bad:
                log.warning("re-sending bgpd's best paths: %s", bad[0].output.strip())
        except DriverError as exc:
            log.warning("re-sending bgpd's best paths: %s", exc)
        finally:
            self._register_monitor()

    def _check_bfd(self, now: float) -> None:
        """Give bgpd's BGP neighbours their BFD sessions back.

        FRR 8.4: bfdd, reconnecting to a restarted zebra, frees every session
        its clients registered (bfdd_zebra_connected -> pc_free_all in
        bfdd/ptm_adapter.c): the sessions go down, and so do the BGP sessions
        on top (~8 s after the restart: the zclient reconnect timer). It then
        asks zebra to have the clients replay their sessions
        (ZEBRA_BFD_DEST_REPLAY), but zebra relays that only to the clients
        connected at that moment; bgpd reconnects about when bfdd does, and
        when it misses the replay its sessions stay "installed" in its own
        view (lib/bfd.c) and are never sent again. The IPv6 session comes back
        when bgpd re-learns its source address on reconnect (which reinstalls
        it); the IPv4 one never does. Re-applying the neighbour's `bfd` lines
        reinstalls the session; the BGP session is not touched.
        """
        s = self.settings
        client = self.monitor.clients.get("bgpd")
        bfdd_path = s.vty_dir / "bfdd.vty"
        if not s.runs_bgp or s.asn is None or client is None or not client.connected:
            return
        if not bfdd_path.exists():
            return
        bfdd = VtyClient(bfdd_path, timeout=5)
        try:
            (neighbors,) = client.run(["show bgp neighbors json"])
            (peers,) = bfdd.run(["show bfd peers json"])
            lost = bfd_sessions_lost(
                json.loads(neighbors.output or "{}"), json.loads(peers.output or "[]")
            )
        except (DriverError, ValueError) as exc:
            log.warning("cannot compare bgpd's BFD neighbours with bfdd's sessions: %s", exc)
            return
        finally:
            bfdd.close()
            self._register_monitor()
        confirmed = lost & self.bfd_suspect
        self.bfd_suspect = lost
        self.bfd_lost = confirmed
        # A repair made while bgpd is still reconnecting to zebra is lost too:
        # try again soon, not only once.
        due = sorted(
            a for a in confirmed if now - self.bfd_fixed_at.get(a, -1e9) >= BFD_REPAIR_RETRY
        )
        if not due:
            return
        self.metrics.errors.labels("bfd-session-lost").inc(len(due))
        log.error(
            "ALERT: bfdd lost the BFD sessions of established BGP neighbours (zebra "
            "restarted); re-applying their bfd configuration in bgpd",
            extra={"fields": {"neighbors": due}},
        )
        try:
            (config,) = client.run(["show running-config"])
            lines = ["configure terminal", f"router bgp {s.asn}"]
            for address in due:
                mine = [
                    line.strip()
                    for line in config.output.splitlines()
                    if line.strip().startswith(f"neighbor {address} bfd")
                ]
                if not mine:
                    log.warning(
                        "neighbour %s: its bfd comes from a peer-group; not touched", address
                    )
                    continue
                self.bfd_fixed_at[address] = now
                self.bfd_repairs += 1
                lines += [f"no neighbor {address} bfd", *mine]
            replies = client.run([*lines, "end"])
            bad = [r for r in replies if not r.ok]
            if bad:
                log.warning("re-applying bfd: %s: %s", bad[0].command, bad[0].output.strip())
        except DriverError as exc:
            log.warning("re-applying bfd: %s", exc)
        finally:
            self._register_monitor()

    def _bgp_best_defaults(self) -> set[int]:
        """IP versions whose default route bgpd holds with a best path."""
        client = self.monitor.clients.get("bgpd")
        if client is None or not client.connected:
            return set()
        out = set()
        try:
            replies = client.run(
                ["show bgp ipv4 unicast 0.0.0.0/0 json", "show bgp ipv6 unicast ::/0 json"]
            )
            for version, reply in zip((4, 6), replies, strict=True):
                data = json.loads(reply.output or "{}")
                if any((p.get("bestpath") or {}).get("overall") for p in data.get("paths", [])):
                    out.add(version)
        except (DriverError, ValueError) as exc:
            log.warning("cannot read bgpd's default routes: %s", exc)
        finally:
            self._register_monitor()
        return out

    def _verify_due(self) -> float:
        assert self.unverified_since is not None
        return min(self.verify_at, self.unverified_since + self.settings.verify_max_delay)

    def _read_netlink(self) -> None:
        try:
            snap = self.watcher.poll(0)
        except Exception as exc:
            self.metrics.errors.labels("netlink").inc()
            log.error("netlink: %s; resyncing", exc)
            try:
                snap = self.watcher.resync(f"resync: {exc}")
            except Exception as again:
                log.error("netlink resync failed: %s; retrying", again)
                self._unregister_watcher()
                self._start_watcher()
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
            self._frr_changed()

    def _repair(self) -> None:
        check = getattr(self.driver, "check_table", None)
        if check is None or self.decision is None or not self._collect(wait=True):
            return
        try:
            table = check()
        except DriverError as exc:
            log.warning("repair after a zebra restart: %s", exc)
            return
        self._stale_alert(set(table.stale) - set(self.decision.desired))
        try:
            bad = set(table.missing) & set(self.decision.desired)
            fix = bad & self.suspect
            self.suspect = bad - fix
            if fix:
                self.metrics.errors.labels("bgp-table-missing").inc(len(fix))
                log.warning(
                    "bgpd lacks announced prefixes although the kernel has them "
                    "(zebra restarted); asking bgpd to resolve them again (%s driver)",
                    self.driver.name,
                    extra={"fields": {"prefixes": [str(p) for p in sorted(fix, key=prefix_key)]}},
                )
                self.driver.refresh(sorted(fix, key=prefix_key))  # type: ignore[attr-defined]
                self.frr_state = None
                self.pending = True
        except DriverError as exc:
            log.warning("repair after a zebra restart: %s", exc)

    def _check_ospf6(self) -> None:
        """After a zebra restart: alert on announced IPv6 prefixes ospf6d does not
        redistribute (seen twice in a row).

        FRR 8.4: a zclient that loses zebra frees its redistribution bitmaps
        (zclient_failed -> zclient_stop, lib/zclient.c) and only
        zclient_init makes them again; ospf6d keeps the bitmaps freed, so on
        reconnect zclient_send_reg_requests resends nothing, and no kernel
        route added since is redistributed. Re-entering `redistribute kernel`
        (measured) does not help either: the host needs ospf6d restarted."""
        if self.decision is None:
            return
        for gate in self.ospf_gates:
            if gate.version != 6:
                continue
            want: set[IPNetwork] = {p for p in self.decision.desired if p.version == 6}
            try:
                missing = want - gate.redistributed()
            except DriverError as exc:
                log.warning("check after a zebra restart: %s", exc)
                continue
            confirmed = missing & self.ospf6_suspect
            self.ospf6_suspect = missing
            if confirmed and confirmed != self.ospf6_lost:
                self.metrics.errors.labels("ospf6-redistribution-lost").inc(len(confirmed))
                log.error(
                    "ALERT: ospf6d does not redistribute announced prefixes since zebra "
                    "restarted (FRR 8.4 loses its registration); restart ospf6d",
                    extra={
                        "fields": {"prefixes": [str(p) for p in sorted(confirmed, key=prefix_key)]}
                    },
                )
            self.ospf6_lost = confirmed

    def _stale_alert(self, stale: set[IPNetwork]) -> None:
        """Alert on prefixes bgpd announces that nobody can withdraw (GrpcDriver.check_table)."""
        # A prefix leaves bgpd's table ~1 s after the gate closes on it (the
        # route-map delay): only one still there 3 s later is stale.
        now = time.monotonic()
        self.stale_seen = {p: self.stale_seen.get(p, now) for p in stale}
        confirmed = {p for p, since in self.stale_seen.items() if now - since >= 3}
        if confirmed and confirmed != self.stale_alerted:
            self.stale_alerted = confirmed
            self.metrics.errors.labels("bgp-table-stale").inc(len(confirmed))
            message = (
                "bgpd still announces prefixes whose kernel routes went while zebra was "
                "restarting; FRR 8.4 gives no way to withdraw them but restarting bgpd"
            )
            log.error(
                "ALERT: %s",
                message,
                extra={"fields": {"prefixes": [str(p) for p in sorted(confirmed, key=prefix_key)]}},
            )

    def _frr_changed(self) -> None:
        """FRR may have lost everything: re-read and reconcile now."""
        self._collect(wait=True)
        self.frr_state = None
        self.pending = True
        self.next_attempt = 0.0
        self.backoff.reset()
        self.unavailable.reset()
        self.driver.close()  # fresh connections to the new daemon
        for gate in self.ospf_gates:
            gate.close()

    def _reload_operator(self, why: str) -> OperatorState:
        try:
            new = load_operator(self.settings.state_dir)
        except FrrctlError as exc:
            self.metrics.errors.labels("operator-state").inc()
            log.error("%s; keeping drain=%s and %d hold(s)", exc, self.operator.drain.value,
                      len(self.operator.held))  # fmt: skip
            return self.operator
        if new != self.operator or why == "start":
            log.info(
                "operator state loaded",
                extra={"fields": {"why": why, "drain": new.drain.value,
                                  "held": [str(p) for p in sorted(new.held, key=prefix_key)]}},
            )  # fmt: skip
        self.operator = new
        self.pending = True
        self.next_attempt = 0.0
        return new

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
            # grpc-static: a kernel route must not outrank the driver's static route
            min_metric=STATIC_MIN_METRIC if s.driver == "grpc-static" and s.runs_bgp else 0,
        )

    def reconcile(self) -> bool:
        """One pass: decide, diff against FRR, apply, verify. True when FRR matches."""
        if self.snapshot is None:
            return False
        started = time.monotonic()
        if started < self.config_wait_until and not self._config_loaded():
            self.next_attempt = started + self.settings.probe_interval
            return False
        try:
            if self.frr_state is None:
                if not self._collect(wait=True):
                    return False
                self.frr_state = self.driver.read()
            snap = self.snapshot
            config = self.policy_config()
            # What keeps its place under the maximum: what bgpd announces, or on
            # an OSPF-only host what the last pass let through the OSPF gates.
            announced: Mapping[IPNetwork, bool] = self.frr_state
            if not self.settings.runs_bgp and self.decision is not None:
                announced = self.decision.desired
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
            desired = decision.desired if self.settings.runs_bgp else {}
            synced = self.frr_state is not None and self.frr_state is self.synced_state
            if synced and decision.touched is not None and self.settings.runs_bgp:
                plan = diff_touched(desired, self.frr_state, decision.touched)
            else:
                plan = diff(desired, self.frr_state)
            if plan:
                if not self._collect(wait=True):  # the batch before failed: re-read first
                    return False
                before, self.frr_state = self.frr_state, None  # unknown if apply fails
                if self._worker is not None:
                    future = self._worker.submit(self._timed_apply, plan)
                    future.add_done_callback(lambda _: self._wake(b"a"))
                    self.inflight = Inflight(future, plan, started)
                else:
                    self._batch_done(plan, self._timed_apply(plan), started)
                # FRR takes the whole batch (or the failure is collected and
                # FRR re-read): what it should hold now. It is read back and
                # compared (verify) once the burst is over, not inside it: a
                # read of 10,000 statements costs ~0.3 s.
                expected = dict(before)
                for prefix in plan.withdraw:
                    expected.pop(prefix, None)
                expected.update(plan.announce)
                self.frr_state = expected
                now = time.monotonic()
                self.unverified_since = self.unverified_since or now
                self.verify_at = now + self.settings.verify_delay
            # FRR now holds (or, unverified, took) exactly `desired`.
            self.synced_state = self.frr_state
            if self.ospf_gates:
                self._ospf_pass(decision)
        except Exception as exc:
            self._failure(exc)
            return False
        if not self.frr_up or self.last_error:
            log.info("FRR matches the desired announcements again")
        self.frr_up = True
        self.metrics.frr_up.set(1)
        self.last_error = None
        self.backoff.reset()
        self.unavailable.reset()
        self.pending = False
        self.next_verify = time.monotonic() + self.settings.verify_interval
        self.metrics.announced.set(len(self.frr_state or {}))
        self.metrics.reconciles.labels("ok").inc()
        self.metrics.last_success.set(time.time())
        if self.on_pass is not None:
            self.on_pass()
        return True

    def _config_loaded(self) -> bool:
        """Whether a restarted bgpd has its config (drivers that can tell)."""
        check = getattr(self.driver, "config_loaded", None)
        if check is None or not self._collect(wait=True) or check():
            self.config_wait_until = 0.0
            return True
        return False

    def _timed_apply(self, plan: Plan) -> float:
        t0 = time.perf_counter()
        self.driver.apply(plan)
        return time.perf_counter() - t0

    def _batch_done(self, plan: Plan, elapsed: float, started: float) -> None:
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
                "pass_ms": round((time.monotonic() - started) * 1000, 2),
            }},
        )  # fmt: skip

    def _collect(self, wait: bool) -> bool:
        """Finish the batch in flight (if it is done, or `wait`): False when it
        failed, which is handled as a failed pass (FRR is read again)."""
        job = self.inflight
        if job is None or not (wait or job.future.done()):
            return True
        self.inflight = None
        try:
            elapsed = job.future.result()
        except Exception as exc:
            self._failure(exc)
            return False
        self._batch_done(job.plan, elapsed, job.started)
        return True

    def _wake(self, what: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, what)

    def _ospf_pass(self, decision: Decision) -> None:
        """Block in the OSPF daemons what the policy refuses but only-cloud would
        pass; near the maximum (or with require-neighbor) admit only what the
        policy announces (see frrctl.frr.ospf)."""
        refused = {Code.HELD, Code.NO_NEIGHBOR, Code.OVER_MAXIMUM}
        blocked = set(self.operator.held)
        blocked |= {v.prefix for v in decision.by_prefix.values() if v.code in refused}
        drain = self.operator.drain is Drain.WITHDRAW
        s = self.settings
        admitted = None
        if admission_closed(len(decision.desired), s.max_prefixes, s.require_neighbor):
            admitted = set(decision.desired)
        for gate in self.ospf_gates:
            if gate.reconcile(blocked, drain, admitted):
                mine = sorted((b for b in blocked if b.version == gate.version), key=prefix_key)
                log.info(
                    "OSPF gate applied",
                    extra={"fields": {
                        "daemon": gate.daemon, "drain": drain,
                        "blocked": [str(p) for p in mine[:50]],
                        "admission": "open" if admitted is None else "closed",
                        "admitted": None if admitted is None else sum(
                            1 for p in admitted if p.version == gate.version),
                    }},
                )  # fmt: skip
        self.ospf_blocked = blocked
        self.ospf_admission_closed = admitted is not None

    def verify(self) -> bool:
        """Read FRR back and compare with the decision; a difference is an error
        (a change FRR accepted but did not keep, or someone else's edit) and the
        next pass reconciles from what was read."""
        if self.decision is None or not self._collect(wait=True):
            return False
        try:
            after = self.driver.read()
        except DriverError as exc:
            self._failure(exc)
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
            self.next_attempt = time.monotonic() + self.backoff.next_delay()
            return False
        return True

    def _failure(self, exc: Exception) -> None:
        """A failed pass, batch or read: FRR unreachable is probed again soon,
        FRR answering errors is retried with backoff, anything else is a bug
        (logged with its traceback) that must not end the loop."""
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
            self.driver.close()
        if message != self.last_error:
            log.error(
                "pass failed, retrying",
                extra={"fields": {"kind": kind, "error": message, "retry_in_s": round(delay, 3)}},
            )
        self.last_error = message
        self.pending = True
        self.next_attempt = time.monotonic() + delay

    # -- control socket ------------------------------------------------------------
    def _open_control(self) -> None:
        path = self.settings.state_dir / CONTROL_SOCKET
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink(missing_ok=True)  # stale socket of a dead daemon
        else:
            raise FrrctlError(f"another frrctl daemon answers on {path}")
        finally:
            probe.close()
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self._control = sock
        self._sel.register(sock, selectors.EVENT_READ, "control")

    def _accept_control(self) -> None:
        assert self._control is not None
        try:
            conn, _ = self._control.accept()
        except BlockingIOError:
            return
        conn.settimeout(5)
        try:
            data = b""
            while not data.endswith(b"\n") and len(data) < 65536:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                message = json.loads(data)
                reply = self.handle(message)
            except Exception as exc:
                reply = {"error": str(exc) or type(exc).__name__}
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError as exc:
            log.warning("control connection: %s", exc)
        finally:
            conn.close()

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        cmd = message.get("cmd")
        if cmd == "status":
            return self.status(peers=bool(message.get("peers", True)))
        if cmd == "reload":
            self._reload_operator("control")
            ok = self.reconcile() and (self.unverified_since is None or self.verify())
            return {
                "applied": ok,
                "drain": self.operator.drain.value,
                "held": len(self.operator.held),
                "last_batch": self.last_plan,
                "announced": len(self.frr_state or {}),
                "last_error": self.last_error,
            }
        return {"error": f"unknown command {cmd!r}"}

    def status(self, peers: bool = True) -> dict[str, Any]:
        """Every candidate prefix: kernel, verdict and reason, FRR, advertised to."""
        s = self.settings
        snap = self.snapshot
        kernel: dict[IPNetwork, list[str]] = {}
        for route in snap.routes if snap else ():
            kernel.setdefault(route.prefix, []).append(route.ifname or "multipath")
        frr = self.frr_state
        if frr is None:
            frr = {}
            if self._collect(wait=True):
                try:
                    frr = self.driver.read()
                except DriverError as exc:
                    self.last_error = str(exc)
        advertised = self.advertised_to() if peers else {}
        verdicts = {v.prefix: v for v in (self.decision.verdicts if self.decision else ())}
        prefixes = sorted(set(kernel) | set(verdicts) | set(frr), key=prefix_key)
        items = []
        for prefix in prefixes:
            verdict = verdicts.get(prefix)
            item = (
                _json_safe(verdict)
                if verdict
                else {"prefix": str(prefix), "verdict": "unknown", "reason": "not judged yet",
                      "announce": False, "graceful": False}
            )  # fmt: skip
            item.update(
                {
                    "in_kernel": prefix in kernel,
                    "kernel_interfaces": sorted(kernel.get(prefix, [])),
                    "in_frr": prefix in frr,
                    "frr_graceful": frr.get(prefix),
                    "advertised_to": advertised.get(str(prefix), []),
                }
            )
            items.append(item)
        return {
            "host": s.hostname,
            "driver": s.driver,
            "bridge": s.bridge,
            "frr_up": self.frr_up,
            "frr_daemons_down": sorted(self.monitor.down),
            "drain": self.operator.drain.value,
            "held": [str(p) for p in sorted(self.operator.held, key=prefix_key)],
            "max_prefixes": s.max_prefixes,
            "require_neighbor": s.require_neighbor,
            "announced_count": len(frr),
            # Verified against FRR, and the kernel view it was decided from is sound.
            "frr_state_verified": self.unverified_since is None and self.kernel_view_ok,
            "kernel_view_ok": self.kernel_view_ok,
            "kernel_view_mismatches": self.kernel_view_mismatches,
            # bgpd's best default routes the kernel lacks (IP versions), and repairs so far
            "kernel_defaults_missing": sorted(self.defaults_missing),
            "defaults_reinstalls": self.defaults_reinstalls,
            # established BGP neighbours with BFD configured that bfdd has no session for
            "bfd_sessions_lost": sorted(self.bfd_lost),
            "bfd_repairs": self.bfd_repairs,
            # announced IPv6 prefixes ospf6d lost after a zebra restart (restart ospf6d)
            "ospf6_not_redistributed": [str(p) for p in sorted(self.ospf6_lost, key=prefix_key)],
            "healthy": (
                self.frr_up
                and not self.monitor.down
                and self.unverified_since is None
                and self.kernel_view_ok
                and not self.defaults_missing
                and not self.bfd_lost
                and not self.ospf6_lost
                and self.last_error is None
            ),
            "ospf_daemons": [g.daemon for g in self.ospf_gates],
            "ospf_blocked": [str(p) for p in sorted(self.ospf_blocked, key=prefix_key)],
            "ospf_admission": "closed" if self.ospf_admission_closed else "open",
            "alerts": list(self.decision.alerts) if self.decision else [],
            "last_error": self.last_error,
            "last_batch": self.last_plan,
            "last_batch_seconds": self.last_batch_seconds,
            "netlink_generation": snap.generation if snap else 0,
            "bridge_up": snap.bridge_up if snap else False,
            "prefixes": items,
        }

    def advertised_to(self) -> dict[str, list[str]]:
        """prefix -> established BGP peers bgpd advertises it to (from bgpd's vty)."""
        client = self.monitor.clients.get("bgpd")
        if client is None or not client.connected:
            return {}
        out: dict[str, set[str]] = {}
        try:
            (summary,) = client.run(["show bgp summary json"])
            data = json.loads(summary.output or "{}")
            queries = []
            for afi_key, afi in (("ipv4Unicast", "ipv4"), ("ipv6Unicast", "ipv6")):
                for peer, info in (data.get(afi_key, {}).get("peers") or {}).items():
                    if info.get("state") == "Established":
                        queries.append(
                            (
                                peer,
                                f"show bgp {afi} unicast neighbors {peer} advertised-routes json",
                            )
                        )
            replies = client.run([q for _, q in queries]) if queries else []
            for (peer, _), reply in zip(queries, replies, strict=True):
                routes = json.loads(reply.output or "{}").get("advertisedRoutes") or {}
                for prefix in routes:
                    out.setdefault(prefix, set()).add(peer)
        except (DriverError, ValueError) as exc:
            log.warning("status: cannot read advertised routes from bgpd: %s", exc)
        finally:
            # The session must be idle again for the monitor; re-register its fd.
            self._register_monitor()
        return {p: sorted(peers) for p, peers in out.items()}


# -- logging -------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        return text


def setup_logging(fmt: str = "json", level: str = "info") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
