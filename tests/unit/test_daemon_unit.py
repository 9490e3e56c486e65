"""The daemon's decisions without FRR or a kernel: the reconciler with a fake
announcer and built snapshots; the loop (Daemon) with a fake watcher."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from frrctl.daemon import Backoff, Daemon, DaemonSettings, JsonFormatter, Reconciler, tune_gc
from frrctl.daemon.report import build_status
from frrctl.errors import FrrctlError, UsageError
from frrctl.frr.base import AnnounceDriver, DriverError, FrrUnavailable, Redistributed
from frrctl.metrics import Metrics, resync_kind
from frrctl.policy import Drain, KernelRoute, Plan, parse_prefix
from frrctl.pools import IPNetwork, Pools
from frrctl.status import (
    DaemonNotRunning,
    DaemonStatus,
    OperatorState,
    format_status,
    host_prefix,
    load_operator,
    request,
    update_operator,
)
from frrctl.watch import KernelSnapshot

P = parse_prefix

# The status reply's keys, in order, as `frrctl status --json` prints them (the
# OSPF admission keys went with the admission gate: OSPF refusals are verdicts).
STATUS_KEYS = [
    "host", "driver", "bridge", "frr_up", "frr_daemons_down", "drain", "held", "max_prefixes",
    "require_neighbor", "announced_count", "frr_state_verified", "kernel_view_ok",
    "kernel_view_mismatches", "kernel_defaults_missing", "defaults_reinstalls",
    "bfd_sessions_lost", "bfd_repairs", "ospf_not_redistributed", "healthy", "alerts",
    "last_error", "last_batch", "last_batch_seconds", "netlink_generation", "bridge_up",
    "prefixes",
]  # fmt: skip
PREFIX_KEYS = [
    "prefix", "verdict", "reason", "announce", "graceful", "in_kernel", "kernel_interfaces",
    "in_frr", "frr_graceful", "advertised_to",
]  # fmt: skip


class FakeDriver(AnnounceDriver):
    """FRR's state in a dict; can fail, or apply only part of a batch."""

    name = "fake"

    def __init__(self) -> None:
        self.state: dict[IPNetwork, bool] = {}
        self.fail: list[Exception] = []
        self.partial = False
        self.applied: list[Plan] = []
        self.reads = 0

    def read(self) -> dict[IPNetwork, bool]:
        self.reads += 1
        if self.fail:
            raise self.fail.pop(0)
        return dict(self.state)

    def apply(self, plan: Plan) -> None:
        self.applied.append(plan)
        for prefix in plan.withdraw:
            self.state.pop(prefix, None)
        for i, (prefix, gshut) in enumerate(plan.announce):
            if self.partial and i == 1:
                raise DriverError("bgpd refused 1 of 2 commands")
            self.state[prefix] = gshut


def settings(tmp_path: Path, **kw: object) -> DaemonSettings:
    base = {
        "hostname": "hv1",
        "asn": 64512,
        "bridge": "cloudbr0",
        "pools": Pools.parse(["192.0.2.0/25"], ["2001:db8:100::/64"]),
        "driver": "vtysh",
        "max_prefixes": 3,
        "require_neighbor": False,
        "vty_dir": tmp_path / "vty",
        "state_dir": tmp_path / "state",
        "metrics_port": None,
        "overlap": False,  # batches applied inline: each pass's outcome is final
    }
    base.update(kw)
    return DaemonSettings(**base)  # type: ignore[arg-type]


def snap(*routes: tuple[str, str], generation: int = 1) -> KernelSnapshot:
    return KernelSnapshot(
        bridge="cloudbr0",
        bridge_index=2,
        bridge_up=True,
        routes=tuple(KernelRoute(P(p), dev) for p, dev in routes),
        permanent_neighbors=frozenset(),
        bridge_addresses=frozenset(),
        generation=generation,
        cause="test",
    )


class Clock:
    """The reconciler's injected clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rec(tmp_path: Path) -> Reconciler:
    r = Reconciler(settings(tmp_path), FakeDriver(), Metrics(), clock=Clock())
    r.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("203.0.113.5/32", "cloudbr0"))
    return r


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    d = Daemon(settings(tmp_path), driver=FakeDriver(), metrics=Metrics())
    d.rec.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("203.0.113.5/32", "cloudbr0"))
    return d


def fake(r: Reconciler | Daemon) -> FakeDriver:
    assert isinstance(r.announcer, FakeDriver)
    return r.announcer


def status_of(r: Reconciler) -> DaemonStatus:
    return build_status(r, r.frr_state or {}, set(), {})


def test_pass_announces_only_policy_approved(rec: Reconciler) -> None:
    assert rec.reconcile()
    assert fake(rec).state == {P("192.0.2.30/32"): False}
    assert rec.frr_up and not rec.pending
    # nothing changed: no batch, no write to FRR
    rec.frr_state = None
    assert rec.reconcile() and len(fake(rec).applied) == 1


def test_stale_prefix_in_frr_is_withdrawn_valid_one_kept(rec: Reconciler) -> None:
    fake(rec).state = {P("192.0.2.30/32"): False, P("192.0.2.40/32"): False}
    assert rec.reconcile()
    (plan,) = fake(rec).applied
    assert plan.withdraw == (P("192.0.2.40/32"),) and plan.announce == ()


def test_frr_unavailable_is_retried_fast_never_raised(rec: Reconciler) -> None:
    fake(rec).fail = [FrrUnavailable("bgpd: cannot connect")]
    assert not rec.reconcile()
    assert not rec.frr_up and rec.pending and rec.frr_state is None
    assert rec.last_error and "cannot connect" in rec.last_error
    assert rec.reconcile() and rec.frr_up and rec.last_error is None


def test_half_applied_batch_is_noticed_and_completed(rec: Reconciler) -> None:
    rec.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    fake(rec).partial = True
    assert not rec.reconcile()
    assert rec.frr_state is None  # FRR is re-read before the next batch
    assert fake(rec).state == {P("192.0.2.30/32"): False}
    fake(rec).partial = False
    assert rec.reconcile()
    assert fake(rec).state == {P("192.0.2.30/32"): False, P("192.0.2.31/32"): False}
    assert fake(rec).applied[-1].announce == ((P("192.0.2.31/32"), False),)


def test_verify_mismatch_is_an_error(rec: Reconciler) -> None:
    drv = fake(rec)
    real_apply = drv.apply

    def lossy(plan: Plan) -> None:  # FRR accepts the change but does not keep it
        drv.applied.append(plan)

    drv.apply = lossy  # type: ignore[method-assign]
    assert rec.reconcile()  # applied; read back later, once the burst is over
    assert rec.unverified_since is not None
    assert status_of(rec).frr_state_verified is False
    assert not rec.verify()
    assert rec.last_error and "differs" in rec.last_error and rec.pending
    assert rec.frr_state == {}  # what FRR really holds
    drv.apply = real_apply  # type: ignore[method-assign]
    assert rec.reconcile() and rec.verify()
    assert drv.state == {P("192.0.2.30/32"): False}


def test_batches_are_verified_once_per_burst(rec: Reconciler) -> None:
    drv = fake(rec)
    assert rec.reconcile()
    reads = drv.reads
    rec.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    assert rec.reconcile()
    assert drv.reads == reads  # diffed against the expected state, no read in the burst
    assert rec.verify() and drv.reads == reads + 1 and rec.unverified_since is None


def test_a_driver_that_confirms_its_commits_is_not_read_back(rec: Reconciler) -> None:
    drv = fake(rec)
    drv.confirms_apply = True
    assert rec.reconcile()
    reads = drv.reads
    lost = drv.apply

    def lossy(plan: Plan) -> None:  # someone else's edit undoes the batch later
        lost(plan)
        drv.state.clear()

    drv.apply = lossy  # type: ignore[method-assign]
    rec.new_snapshot(snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0")))
    assert rec.reconcile() and rec.unverified_since is not None
    assert rec.verify() and drv.reads == reads  # the commit answered OK: no read
    assert rec.unverified_since is None and status_of(rec).frr_state_verified
    # the periodic check still reads FRR and repairs what the read-back would have
    drv.apply = lost  # type: ignore[method-assign]
    rec.timed(rec.next_verify)
    assert rec.pending and rec.reconcile() and drv.reads == reads + 1
    assert drv.state == {P("192.0.2.30/32"): False, P("192.0.2.31/32"): False}


def test_unexpected_exception_does_not_end_the_loop(rec: Reconciler) -> None:
    fake(rec).fail = [RuntimeError("bug")]
    assert not rec.reconcile()
    assert rec.pending and rec.next_attempt > 0


def test_maximum_keeps_announced_and_alerts(rec: Reconciler) -> None:
    routes = [(f"192.0.2.{i}/32", "cloudbr0") for i in range(40, 46)]
    fake(rec).state = {P("192.0.2.45/32"): False}
    rec.snapshot = snap(*routes)
    assert rec.reconcile()
    assert P("192.0.2.45/32") in fake(rec).state and len(fake(rec).state) == 3
    assert rec.decision is not None and rec.decision.alerts


def test_operator_state_drain_and_hold(daemon: Daemon, tmp_path: Path) -> None:
    state_dir = daemon.settings.state_dir
    update_operator(state_dir, lambda s: OperatorState(Drain.GRACEFUL, s.held))
    daemon._reload_operator("test")
    assert daemon.rec.reconcile()
    assert fake(daemon).state == {P("192.0.2.30/32"): True}
    update_operator(state_dir, lambda s: OperatorState(Drain.NONE, frozenset({P("192.0.2.30/32")})))
    daemon._reload_operator("test")
    assert daemon.rec.reconcile() and fake(daemon).state == {}
    status = daemon.status(peers=False)
    item = {i.prefix: i for i in status.prefixes}["192.0.2.30/32"]
    assert item.verdict == "held" and item.in_kernel and not item.in_frr
    assert status.held == ["192.0.2.30/32"]


def test_corrupt_operator_state_keeps_the_previous(daemon: Daemon) -> None:
    state_dir = daemon.settings.state_dir
    update_operator(state_dir, lambda s: OperatorState(Drain.WITHDRAW, s.held))
    daemon._reload_operator("test")
    (state_dir / "operator.json").write_text("{not json")
    daemon._reload_operator("test")
    assert daemon.rec.operator.drain is Drain.WITHDRAW
    with pytest.raises(FrrctlError, match="invalid operator state"):
        load_operator(state_dir)


def test_status_lists_every_candidate_with_reason(daemon: Daemon) -> None:
    daemon.rec.reconcile()
    status = daemon.status(peers=False)
    items = {i.prefix: i for i in status.prefixes}
    assert items["203.0.113.5/32"].verdict == "outside-pools"
    assert items["203.0.113.5/32"].reason == "address is outside the host's pools"
    assert items["192.0.2.30/32"].in_frr and items["192.0.2.30/32"].kernel_interfaces == [
        "cloudbr0"
    ]
    text = format_status(status)
    assert "outside-pools" in text and "192.0.2.30/32" in text
    assert "OSPF" not in text and "admission" not in text
    # the JSON the control socket sends: the keys tests and the lab read, stable
    wire = json.loads(json.dumps(daemon.handle({"cmd": "status", "peers": False})))
    assert list(wire) == STATUS_KEYS and list(wire["prefixes"][0]) == PREFIX_KEYS
    assert DaemonStatus.from_json(wire) == status


def test_control_handle_reload_and_unknown(daemon: Daemon) -> None:
    reply = daemon.handle({"cmd": "reload"})
    assert reply["applied"] and reply["announced"] == 1
    assert "error" in daemon.handle({"cmd": "nope"})


def test_host_prefix_validation() -> None:
    assert host_prefix("192.0.2.30") == P("192.0.2.30/32")
    assert host_prefix("2001:db8::1") == ipaddress.ip_network("2001:db8::1/128")
    for bad in ("192.0.2.0/24", "nonsense", "192.0.2.1/31"):
        with pytest.raises(UsageError):
            host_prefix(bad)


def test_operator_state_roundtrip(tmp_path: Path) -> None:
    state = OperatorState(Drain.GRACEFUL, frozenset({P("192.0.2.30/32")}))
    assert OperatorState.from_json(json.loads(json.dumps(state.to_json()))) == state
    assert load_operator(tmp_path / "none") == OperatorState()


def test_request_without_daemon(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="not running"):
        request(tmp_path, {"cmd": "status"})


def test_backoff_grows_to_its_maximum() -> None:
    backoff = Backoff(0.1, 2.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[0] < 0.5 and max(delays) <= 2.0 + 0.1 and delays[-1] >= 1.0
    backoff.reset()
    assert backoff.next_delay() < 0.5


def test_resync_kind_is_bounded() -> None:
    assert resync_kind("initial dump") == "initial"
    assert resync_kind("resync: netlink socket overrun (ENOBUFS)") == "overrun"
    assert resync_kind("resync: cloudbr0 re-created (index 5 -> 9)") == "bridge-recreated"
    assert resync_kind("resync: whatever") == "other"


def test_json_log_lines_carry_fields() -> None:
    import logging

    record = logging.LogRecord("frrctl.daemon", logging.INFO, __file__, 1, "batch %s", ("x",), None)
    record.fields = {"summary": "+1 -0 =0"}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "batch x" and line["summary"] == "+1 -0 =0" and line["level"] == "info"


def test_settings_from_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "fleet.yaml"
    inv.write_text(
        """
fabric: {pools: {ipv4: ["192.0.2.0/25"], ipv6: ["2001:db8:100::/64"]}}
hosts:
  - hostname: hv1
    router-id: 198.18.0.2
    asn: 64512
    mode: controller
    controller: {driver: grpc, max-prefixes: 7, require-neighbor: true, grpc-port: 50052}
    uplinks:
      - {interface: eth0, addresses: ["198.18.0.2/31"],
         bgp: {neighbors: ["198.18.0.3"], remote-as: 64513}}
"""
    )
    s = DaemonSettings.from_inventory(inv, "hv1", tmp_path, tmp_path, metrics_port=0)
    assert (s.driver, s.max_prefixes, s.require_neighbor) == ("grpc", 7, True)
    assert s.grpc_target == "127.0.0.1:50052" and s.metrics_port is None and s.asn == 64512
    assert s.pools.contains_host_route(P("192.0.2.30/32"))
    s = DaemonSettings.from_inventory(inv, "hv1", tmp_path, tmp_path, driver="vtysh")
    assert s.driver == "vtysh" and s.metrics_port == 9342
    with pytest.raises(FrrctlError, match="no host 'hv9'"):
        DaemonSettings.from_inventory(inv, "hv9", tmp_path, tmp_path)


def test_grpc_guard_ruleset_is_one_idempotent_transaction() -> None:
    from frrctl.frr.firewall import ruleset

    text = ruleset(50051)
    assert text.index("delete table inet frrctl_grpc_guard") < text.index("chain input")
    assert 'iifname != "lo" tcp dport 50051 counter drop' in text
    with pytest.raises(ValueError):
        ruleset(0)


def test_overlapped_batch_failure_is_collected_and_frr_read_again(tmp_path: Path) -> None:
    """With `overlap` a worker applies the batch while the loop goes on; its
    failure surfaces when collected, exactly like a failed inline pass."""
    d = Daemon(settings(tmp_path, overlap=True), driver=FakeDriver(), metrics=Metrics())
    r = d.rec
    r.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    fake(d).partial = True
    assert r.reconcile()  # handed to the worker
    assert r.inflight is not None
    assert not r.collect(wait=True)
    assert r.inflight is None and r.frr_state is None and r.pending
    assert r.last_error and "refused" in r.last_error
    fake(d).partial = False
    r.next_attempt = 0.0
    assert r.reconcile() and r.collect(wait=True)
    assert fake(d).state == {P("192.0.2.30/32"): False, P("192.0.2.31/32"): False}
    assert r.last_batch_seconds is not None and r.last_plan == "+1 -0 =1"
    # a second batch waits for the first: never two in flight
    r.snapshot = snap(("192.0.2.30/32", "cloudbr0"))
    r.changed = None
    assert r.reconcile() and r.collect(wait=True)
    assert fake(d).state == {P("192.0.2.30/32"): False}


def test_restarted_bgpd_gets_no_batch_until_its_config_is_loaded(rec: Reconciler) -> None:
    """A commit landing while `vtysh -b` still loads bgpd's config would be undone
    by the load's final commit: drivers that can tell make the pass wait."""
    loaded = [False]
    fake(rec).config_loaded = lambda: loaded[0]  # type: ignore[method-assign]
    rec.config_wait_until = rec.clock() + 30
    assert not rec.reconcile()
    assert fake(rec).reads == 0 and not fake(rec).applied and rec.pending
    assert rec.last_error is None  # waiting is not a failure
    loaded[0] = True
    assert rec.reconcile() and fake(rec).state == {P("192.0.2.30/32"): False}
    assert rec.config_wait_until == 0.0
    # past the wait, a driver that never reports its config loaded is not waited for
    loaded[0] = False
    rec.config_wait_until = rec.clock() - 1
    rec.frr_state = None
    assert rec.reconcile()


def test_tune_gc_freezes_the_startup_heap_and_keeps_cycles_collected() -> None:
    import gc

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == 10_000 and gc.isenabled()

        class Node:
            other: object = None

        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2  # a cycle made after start-up is still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


# -- issue 10, 4.1: the watcher's socket, and a daemon that stopped hearing the kernel --


class FakeWatcher:
    """The watcher as the daemon sees it: a socket to select on, a kernel audit, resync."""

    def __init__(self) -> None:
        import socket as socketlib

        self.socketlib = socketlib
        self.sock = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_DGRAM)
        self.audits: list[object] = []  # AuditResult | None | Exception, popped in order
        self.resyncs = 0

    def selectable(self) -> object:
        return self.sock

    def audit(self) -> object:
        item = self.audits.pop(0) if self.audits else clean_audit()
        if isinstance(item, Exception):
            raise item
        return item

    def resync(self, cause: str) -> KernelSnapshot:
        # the real watcher closes its socket and opens another: same fd number, new object
        self.sock.close()
        self.sock = self.socketlib.socket(self.socketlib.AF_UNIX, self.socketlib.SOCK_DGRAM)
        self.resyncs += 1
        return snap(("192.0.2.30/32", "cloudbr0"), generation=1 + self.resyncs)

    def close(self) -> None:
        self.sock.close()


def clean_audit() -> object:
    from frrctl.watch import AuditResult

    return AuditResult(missing=frozenset(), extra=frozenset(), routes=1)


def lost(*keys: int) -> object:
    from frrctl.watch import AuditResult

    return AuditResult(
        missing=frozenset((2, k, 32, 254, 0, 0, 3) for k in keys), extra=frozenset(), routes=2
    )


@pytest.fixture
def deaf(tmp_path: Path) -> tuple[Daemon, FakeWatcher]:
    watcher = FakeWatcher()
    d = Daemon(settings(tmp_path), driver=FakeDriver(), watcher=watcher, metrics=Metrics())  # type: ignore[arg-type]
    d._new_snapshot(snap(("192.0.2.30/32", "cloudbr0")))
    assert d.rec.reconcile() and d.rec.verify()
    return d, watcher


def test_resynced_watcher_socket_is_registered_again_under_the_same_fd(
    deaf: tuple[Daemon, FakeWatcher],
) -> None:
    d, watcher = deaf
    old = watcher.sock
    fd = old.fileno()
    d._new_snapshot(watcher.resync("resync: cloudbr0 went down"))
    assert watcher.sock is not old
    key = d._sel.get_key(watcher.sock)  # the new socket object, whatever its fd
    assert key.fileobj is watcher.sock and key.data == "netlink"
    assert len([k for k in d._sel.get_map().values() if k.data == "netlink"]) == 1
    print(f"fd {fd} -> {watcher.sock.fileno()}")


def test_a_lost_event_is_confirmed_before_acting(deaf: tuple[Daemon, FakeWatcher]) -> None:
    d, watcher = deaf
    watcher.audits = [lost(1), clean_audit()]  # in flight at the first check, then heard
    d._check_liveness(100.0)
    assert d.rec.liveness.next_at == 100.0 + d.settings.liveness_confirm  # checked again soon
    d._check_liveness(101.0)
    assert watcher.resyncs == 0 and d.rec.liveness.ok and d.rec.liveness.mismatches == 0
    assert d.rec.liveness.next_at == 101.0 + d.settings.liveness_interval


def test_deaf_watcher_is_caught_resynced_and_shown_unhealthy(
    deaf: tuple[Daemon, FakeWatcher],
) -> None:
    d, watcher = deaf
    status = d.status(peers=False)
    assert status.healthy and status.frr_state_verified and status.kernel_view_ok
    watcher.audits = [lost(1), lost(1)]  # the same difference twice: confirmed
    d._check_liveness(100.0)
    d._check_liveness(101.0)
    assert watcher.resyncs == 1 and d.rec.liveness.mismatches == 1
    assert d.metrics.kernel_view_mismatches._value.get() == 1
    status = d.status(peers=False)
    assert status.kernel_view_ok is False and status.healthy is False
    assert status.frr_state_verified is False
    assert "UNHEALTHY" in format_status(status)
    assert d._sel.get_key(watcher.sock).data == "netlink"  # the resynced socket is heard
    d._check_liveness(102.0)  # the resync cured it: healthy again
    assert d.rec.liveness.ok and d.status(peers=False).frr_state_verified
    # it keeps happening (twice within 10 minutes): unhealthy although each resync cured it
    watcher.audits = [lost(2), lost(2), clean_audit(), clean_audit()]
    for now in (200.0, 201.0, 202.0, 212.0):
        d._check_liveness(now)
    assert d.rec.liveness.mismatches == 2 and not d.rec.liveness.ok
    assert not d.status(peers=False).healthy
    d._check_liveness(800.0)  # a quiet 10 minutes later
    assert d.rec.liveness.ok


def test_kernel_view_check_failure_is_logged_not_raised(deaf: tuple[Daemon, FakeWatcher]) -> None:
    d, watcher = deaf
    watcher.audits = [OSError("netlink: no buffer"), None]
    d._check_liveness(100.0)
    d._check_liveness(110.0)  # None: dump interrupted, inconclusive
    assert watcher.resyncs == 0 and d.rec.liveness.ok
    assert d.rec.liveness.next_at == 110.0 + d.settings.liveness_confirm


# -- issue 10, 4.2: every pending timer bounds the loop's sleep --


def test_loop_timeout_takes_the_earliest_pending_timer() -> None:
    from frrctl.daemon import loop_timeout

    assert loop_timeout(100.0, verify=130.0) == 30.0
    assert loop_timeout(100.0, verify=130.0, repair=101.0, liveness=None) == 1.0
    assert loop_timeout(100.0, verify=130.0, liveness=105.0, attempt=None) == 5.0
    assert loop_timeout(100.0, verify=130.0, probe=0.1, repair=101.0) == 0.1
    assert loop_timeout(100.0, verify=90.0, repair=101.0) == 0.0  # overdue: no sleep


def test_idle_daemon_wakes_for_the_repair_after_a_zebra_restart(rec: Reconciler) -> None:
    clock = rec.clock
    assert rec.reconcile() and rec.verify()  # idle: nothing pending, verify 30 s away
    now = clock()
    rec.liveness.next_at = now + 60
    assert rec.timeout(now, probing=False) == pytest.approx(30.0)
    rec.frr_back(["zebra"])  # zebra came back: the repair window opens
    rec.collect(wait=True)
    assert rec.pending and rec.repair_until == now + 40
    rec.pending = False
    assert rec.timeout(now, probing=False) == pytest.approx(1.0)
    assert not rec.repair_due(now) and rec.repair_due(now + 1) and rec.next_repair == now + 2
    rec.frr_up = False  # FRR away: the probe interval rules
    assert rec.timeout(now, probing=False) == rec.settings.probe_interval


# -- issue 10, 4.3: bgpd's best default route missing from the kernel --


def test_missing_default_is_confirmed_then_reinstalled_once_per_cooldown(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    best = {4, 6}
    sent: list[int] = []
    monkeypatch.setattr(daemon.repairs, "best_defaults", lambda _bgpd: set(best))
    monkeypatch.setattr(daemon.monitor.clients["bgpd"], "run", lambda cmds: sent.append(1) or [])
    monkeypatch.setattr(type(daemon.monitor.clients["bgpd"]), "connected", property(lambda _: True))
    monkeypatch.setattr(daemon.repairs, "reregister", lambda: None)
    daemon.repairs.defaults(100.0, frozenset({6}))  # IPv4 missing once: may be in flight
    assert not sent and daemon.rec.defaults.missing == frozenset()
    daemon.repairs.defaults(101.0, frozenset({6}))  # twice: act
    assert (
        sent == [1] and daemon.rec.defaults.missing == {4} and daemon.rec.defaults.reinstalls == 1
    )
    assert daemon.status(peers=False).healthy is False
    daemon.repairs.defaults(101.5, frozenset({6}))  # within the cooldown: no second command
    assert sent == [1]
    daemon.repairs.defaults(103.5, frozenset({6}))
    assert sent == [1, 1]
    daemon.repairs.defaults(104.5, frozenset({4, 6}))  # back
    assert daemon.rec.defaults.missing == frozenset()
    best.clear()  # bgpd has no default (session down): nothing to repair
    daemon.repairs.defaults(110.0, frozenset())
    daemon.repairs.defaults(111.0, frozenset())
    assert sent == [1, 1] and daemon.rec.defaults.missing == frozenset()


def test_bfd_sessions_lost_are_established_bfd_neighbours_bfdd_lacks() -> None:
    from frrctl.daemon import bfd_sessions_lost

    neighbors = {
        "198.18.0.3": {"bgpState": "Established", "peerBfdInfo": {"status": "Up"}},
        "2001:db8:fffe::3": {"bgpState": "Established", "peerBfdInfo": {"status": "Up"}},
        "198.18.0.5": {"bgpState": "Active", "peerBfdInfo": {"status": "Down"}},  # not up: skip
        "198.18.0.7": {"bgpState": "Established"},  # no BFD configured
    }
    peers = [{"peer": "2001:db8:fffe::3", "status": "up"}]
    assert bfd_sessions_lost(neighbors, peers) == {"198.18.0.3"}
    assert bfd_sessions_lost(neighbors, [*peers, {"peer": "198.18.0.3"}]) == set()


# -- the announcer interface, the registry and the reconciler's clock ---------------


class LosingDriver(FakeDriver):
    """An announcer whose ospf6d redistributes only `redistributing` (FRR 8.4's
    ospf6d after a zebra restart)."""

    def __init__(self) -> None:
        super().__init__()
        self.redistributing: set[IPNetwork] = set()

    def redistribution(self, desired: Mapping[IPNetwork, bool]) -> list[Redistributed] | None:
        want = {p for p in desired if p.version == 6}
        return [Redistributed("ospf6d", frozenset(want - self.redistributing), frozenset())]


def test_ospf_only_host_refuses_by_announcing_nothing_and_alerts_lost_redistribution(
    tmp_path: Path,
) -> None:
    announcer = LosingDriver()
    clock = Clock()
    r = Reconciler(
        settings(tmp_path, runs_bgp=False, max_prefixes=3), announcer, Metrics(), clock=clock
    )
    r.snapshot = snap(*[(f"192.0.2.{i}/32", "cloudbr0") for i in (30, 31, 32, 33)])
    assert r.reconcile() and len(announcer.state) == 3  # one over the maximum: never a route
    status = status_of(r)
    verdicts = {i.prefix: i.verdict for i in status.prefixes}
    assert sorted(verdicts.values()).count("over-maximum") == 1
    # after a zebra restart ospf6d's lost redistribution is confirmed, then alerted
    r.snapshot = snap(("2001:db8:100::80/128", "cloudbr0"))
    r.changed = None
    assert r.reconcile()
    r.check_ospf6()
    assert not r.ospf6.confirmed  # once: may be in flight
    clock.now += 1
    r.check_ospf6()
    assert not r.ospf6.confirmed  # an LSA may wait for OSPF's MinLSInterval (5 s)
    clock.now += 6
    r.check_ospf6()
    assert r.ospf6.confirmed == {P("2001:db8:100::80/128")}
    assert status_of(r).ospf_not_redistributed == ["2001:db8:100::80/128"]
    assert not status_of(r).healthy
    announcer.redistributing = {P("2001:db8:100::80/128")}  # ospf6d restarted: cured
    r.check_ospf6()
    assert not r.ospf6.confirmed


def test_registry_knows_every_back_end_by_name(tmp_path: Path) -> None:
    from frrctl.frr import registry
    from frrctl.frr.staticd import StaticdDriver, StaticdVtyDriver
    from frrctl.frr.vtysh import VtyshDriver
    from frrctl.policy import STATIC_MIN_METRIC

    spec = registry.AnnouncerSpec(bridge="cloudbr0", vty_dir=tmp_path, asn=64512)
    assert isinstance(registry.make_announcer("vtysh", spec), VtyshDriver)
    static = registry.make_announcer("grpc", spec)
    assert isinstance(static, StaticdDriver) and static.min_metric == STATIC_MIN_METRIC
    # a host that runs OSPF: staticd routes serve BGP and both OSPFs, with either driver
    both = registry.make_announcer("vtysh", dataclasses.replace(spec, ospf_versions=(4, 6)))
    assert isinstance(both, StaticdVtyDriver) and both.bgp and both.ospf6
    assert both.min_metric == STATIC_MIN_METRIC
    ospf_only = dataclasses.replace(spec, runs_bgp=False, ospf_versions=(4,), asn=None)
    vty_ospf = registry.make_announcer("vtysh", ospf_only)
    assert isinstance(vty_ospf, StaticdVtyDriver) and not vty_ospf.bgp and not vty_ospf.ospf6
    assert isinstance(registry.make_announcer("grpc", ospf_only), StaticdDriver)
    assert registry.uses_staticd("vtysh", runs_ospf=True)
    assert not registry.uses_staticd("vtysh", runs_ospf=False)
    assert registry.uses_staticd("grpc", runs_ospf=False)
    # `frrctl instance plug` writes host routes a staticd route outranks
    from frrctl.host.netlink import HOST_ROUTE_METRIC

    assert HOST_ROUTE_METRIC == STATIC_MIN_METRIC
    both = registry.make_announcer("grpc", dataclasses.replace(spec, ospf_versions=(4,)))
    assert isinstance(both, StaticdDriver)
    assert registry.uses_grpc("grpc") and not registry.uses_grpc("vtysh")
    with pytest.raises(UsageError, match="unknown driver 'nope' \\(vtysh, grpc\\)"):
        registry.make_announcer("nope", spec)
    with pytest.raises(UsageError, match="needs the host's asn"):
        registry.make_announcer("vtysh", dataclasses.replace(spec, asn=None))
    # the daemon's policy takes the announcer's minimum metric
    r = Reconciler(settings(tmp_path), static, Metrics())
    assert r.policy_config().min_metric == STATIC_MIN_METRIC


def test_backoff_and_verify_timers_follow_the_injected_clock(rec: Reconciler) -> None:
    clock = rec.clock
    assert isinstance(clock, Clock)
    fake(rec).fail = [DriverError("bgpd: % Unknown command")]
    assert not rec.reconcile()
    retry_at = rec.next_attempt
    assert clock.now < retry_at <= clock.now + 0.3
    rec.maybe_pass(retry_at - 0.01, bgpd_down=False)
    assert rec.pending  # not yet: the backoff holds it
    clock.now = retry_at
    rec.maybe_pass(clock.now, bgpd_down=False)
    assert not rec.pending and rec.unverified_since == clock.now
    rec.liveness.next_at = clock.now + 100
    assert rec.timeout(clock.now, probing=False) == pytest.approx(0.5)  # read back after a burst
    clock.now += 0.5
    reads = fake(rec).reads
    rec.timed(clock.now)
    assert rec.unverified_since is None and fake(rec).reads == reads + 1
    clock.now += 30  # idle: the periodic verify re-reads FRR
    rec.timed(clock.now)
    assert rec.pending and rec.frr_state is None


def test_table_repair_refreshes_what_bgpd_lacks_twice_in_a_row(rec: Reconciler) -> None:
    from frrctl.frr.base import TableCheck

    refreshed: list[list[IPNetwork]] = []
    missing = [P("192.0.2.30/32")]
    fake(rec).check_table = lambda: TableCheck(missing=list(missing))  # type: ignore[method-assign]
    fake(rec).refresh = refreshed.append  # type: ignore[method-assign]
    assert rec.reconcile()
    rec.repair()
    assert not refreshed  # once: bgpd may still be resolving it
    rec.repair()
    assert refreshed == [[P("192.0.2.30/32")]] and rec.pending and rec.frr_state is None


def test_bfd_repair_is_confirmed_and_retried_every_bfd_repair_retry() -> None:
    from frrctl.daemon import BFD_REPAIR_RETRY
    from frrctl.daemon.checks import BfdRepair

    bfd = BfdRepair()
    assert bfd.observe(100.0, {"198.18.0.3"}) == []  # once: may be in flight
    assert bfd.observe(101.0, {"198.18.0.3"}) == ["198.18.0.3"]
    bfd.repaired(101.0, "198.18.0.3")
    assert bfd.observe(102.0, {"198.18.0.3"}) == []  # repaired just now
    assert bfd.observe(101.0 + BFD_REPAIR_RETRY, {"198.18.0.3"}) == ["198.18.0.3"]
    assert bfd.observe(200.0, set()) == [] and bfd.lost == set() and bfd.repairs == 1


def test_daemon_package_shape() -> None:
    """No import cycle among frrctl's modules, no class over 400 lines, and no
    driver name or capability probe in the daemon."""
    import ast
    import importlib.util

    root = Path(importlib.util.find_spec("frrctl").origin).parent  # type: ignore[arg-type, union-attr]
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if "_proto" in path.parts:
            continue
        rel = path.relative_to(root.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:  # module-level imports only: lazy ones cannot cycle at import
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("frrctl"):
                # `from frrctl.daemon import bgpvty` imports the module frrctl.daemon.bgpvty
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    is_module = (root.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                    deps.add(sub if is_module else str(node.module))
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("frrctl")}
        graph[name] = deps
        if name.startswith("frrctl.daemon"):
            for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
                assert (cls.end_lineno or 0) - cls.lineno < 400, f"{name}.{cls.name}"
            text = path.read_text()
            for banned in ("settings.driver ==", "getattr(self.driver", "NoBgp", "_ospf_pass"):
                assert banned not in text, f"{name}: {banned}"

    def cycle(node: str, stack: list[str]) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        for dep in sorted(graph.get(node, ())):
            found = cycle(dep, [*stack, node])
            if found:
                return found
        return None

    daemon = [n for n in graph if n.startswith(("frrctl.daemon", "frrctl.frr", "frrctl.status"))]
    for name in daemon:
        assert cycle(name, []) is None, " -> ".join(cycle(name, []) or [])


def test_frrctl_status_json_prints_the_daemons_reply_unchanged(
    daemon: Daemon, capsys: pytest.CaptureFixture[str]
) -> None:
    """`frrctl status` over the real control socket: --json prints the reply's keys
    as the daemon sent them; the text view reads the typed status."""
    import select
    import threading

    from frrctl import cli

    assert daemon.rec.reconcile()
    daemon.settings.state_dir.mkdir(parents=True, exist_ok=True)
    sock = daemon.control.open()
    sent = daemon.handle({"cmd": "status", "peers": False})

    def serve_one() -> None:  # as the loop does: accept once the socket is readable
        select.select([sock], [], [], 10)
        daemon.control.accept()

    for args in (["--json"], []):
        server = threading.Thread(target=serve_one)
        server.start()
        code = cli.main(["status", "--no-peers", "--state-dir", str(daemon.settings.state_dir),
                         *args])  # fmt: skip
        server.join(timeout=10)
        out = capsys.readouterr().out
        assert code == 0
        if args:
            assert json.loads(out) == sent and list(json.loads(out)) == STATUS_KEYS
        else:
            assert "host hv1  driver vtysh  FRR up" in out and "192.0.2.30/32" in out
    daemon.control.close()
    assert not (daemon.settings.state_dir / "control.sock").exists()


def test_text_status_names_every_reason_it_is_unhealthy(daemon: Daemon) -> None:
    """A daemon that is not healthy never looks healthy in the text view either."""
    daemon.rec.reconcile()
    status = dataclasses.replace(  # the fixture's FRR is a fake: make it all well
        daemon.status(peers=False),
        healthy=True,
        frr_up=True,
        frr_daemons_down=[],
        frr_state_verified=True,
        kernel_view_ok=True,
        kernel_defaults_missing=[],
        last_error=None,
    )
    assert "UNHEALTHY" not in format_status(status)
    sick = dataclasses.replace(
        status,
        healthy=False,
        frr_daemons_down=["staticd"],
        bfd_sessions_lost=["198.18.0.3"],
        ospf_not_redistributed=["2001:db8:100::30/128"],
    )
    (line,) = [x for x in format_status(sick).splitlines() if x.startswith("UNHEALTHY:")]
    assert "FRR daemons down: staticd" in line and "BFD sessions lost: 198.18.0.3" in line
    assert "1 prefix(es) wrong in OSPF" in line
    bare = dataclasses.replace(status, healthy=False)  # unhealthy for a reason not listed
    assert "UNHEALTHY: see --json" in format_status(bare)
