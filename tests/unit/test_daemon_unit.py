"""The daemon's decisions without FRR or a kernel: a fake driver, built snapshots."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path

import pytest

from frrctl.daemon import Backoff, Daemon, DaemonSettings, JsonFormatter, tune_gc
from frrctl.errors import FrrctlError, UsageError
from frrctl.frr.base import AnnounceDriver, DriverError, FrrUnavailable
from frrctl.metrics import Metrics, resync_kind
from frrctl.policy import Drain, KernelRoute, Plan, parse_prefix
from frrctl.pools import IPNetwork, Pools
from frrctl.status import (
    DaemonNotRunning,
    OperatorState,
    format_status,
    host_prefix,
    load_operator,
    request,
    update_operator,
)
from frrctl.watch import KernelSnapshot

P = parse_prefix


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


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    d = Daemon(settings(tmp_path), driver=FakeDriver(), metrics=Metrics())
    d.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("203.0.113.5/32", "cloudbr0"))
    return d


def fake(d: Daemon) -> FakeDriver:
    assert isinstance(d.driver, FakeDriver)
    return d.driver


def test_pass_announces_only_policy_approved(daemon: Daemon) -> None:
    assert daemon.reconcile()
    assert fake(daemon).state == {P("192.0.2.30/32"): False}
    assert daemon.frr_up and not daemon.pending
    # nothing changed: no batch, no write to FRR
    daemon.frr_state = None
    assert daemon.reconcile() and len(fake(daemon).applied) == 1


def test_stale_prefix_in_frr_is_withdrawn_valid_one_kept(daemon: Daemon) -> None:
    fake(daemon).state = {P("192.0.2.30/32"): False, P("192.0.2.40/32"): False}
    assert daemon.reconcile()
    (plan,) = fake(daemon).applied
    assert plan.withdraw == (P("192.0.2.40/32"),) and plan.announce == ()


def test_frr_unavailable_is_retried_fast_never_raised(daemon: Daemon) -> None:
    fake(daemon).fail = [FrrUnavailable("bgpd: cannot connect")]
    assert not daemon.reconcile()
    assert not daemon.frr_up and daemon.pending and daemon.frr_state is None
    assert daemon.last_error and "cannot connect" in daemon.last_error
    assert daemon.reconcile() and daemon.frr_up and daemon.last_error is None


def test_half_applied_batch_is_noticed_and_completed(daemon: Daemon) -> None:
    daemon.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    fake(daemon).partial = True
    assert not daemon.reconcile()
    assert daemon.frr_state is None  # FRR is re-read before the next batch
    assert fake(daemon).state == {P("192.0.2.30/32"): False}
    fake(daemon).partial = False
    assert daemon.reconcile()
    assert fake(daemon).state == {P("192.0.2.30/32"): False, P("192.0.2.31/32"): False}
    assert fake(daemon).applied[-1].announce == ((P("192.0.2.31/32"), False),)


def test_verify_mismatch_is_an_error(daemon: Daemon) -> None:
    drv = fake(daemon)
    real_apply = drv.apply

    def lossy(plan: Plan) -> None:  # FRR accepts the change but does not keep it
        drv.applied.append(plan)

    drv.apply = lossy  # type: ignore[method-assign]
    assert daemon.reconcile()  # applied; read back later, once the burst is over
    assert daemon.unverified_since is not None
    assert daemon.status(peers=False)["frr_state_verified"] is False
    assert not daemon.verify()
    assert daemon.last_error and "differs" in daemon.last_error and daemon.pending
    assert daemon.frr_state == {}  # what FRR really holds
    drv.apply = real_apply  # type: ignore[method-assign]
    assert daemon.reconcile() and daemon.verify()
    assert drv.state == {P("192.0.2.30/32"): False}


def test_batches_are_verified_once_per_burst(daemon: Daemon) -> None:
    drv = fake(daemon)
    assert daemon.reconcile()
    reads = drv.reads
    daemon.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    assert daemon.reconcile()
    assert drv.reads == reads  # diffed against the expected state, no read in the burst
    assert daemon.verify() and drv.reads == reads + 1 and daemon.unverified_since is None


def test_unexpected_exception_does_not_end_the_loop(daemon: Daemon) -> None:
    fake(daemon).fail = [RuntimeError("bug")]
    assert not daemon.reconcile()
    assert daemon.pending and daemon.next_attempt > 0


def test_maximum_keeps_announced_and_alerts(daemon: Daemon) -> None:
    routes = [(f"192.0.2.{i}/32", "cloudbr0") for i in range(40, 46)]
    fake(daemon).state = {P("192.0.2.45/32"): False}
    daemon.snapshot = snap(*routes)
    assert daemon.reconcile()
    assert P("192.0.2.45/32") in fake(daemon).state and len(fake(daemon).state) == 3
    assert daemon.decision is not None and daemon.decision.alerts


def test_operator_state_drain_and_hold(daemon: Daemon, tmp_path: Path) -> None:
    state_dir = daemon.settings.state_dir
    update_operator(state_dir, lambda s: OperatorState(Drain.GRACEFUL, s.held))
    daemon._reload_operator("test")
    assert daemon.reconcile()
    assert fake(daemon).state == {P("192.0.2.30/32"): True}
    update_operator(state_dir, lambda s: OperatorState(Drain.NONE, frozenset({P("192.0.2.30/32")})))
    daemon._reload_operator("test")
    assert daemon.reconcile() and fake(daemon).state == {}
    status = daemon.status(peers=False)
    item = {i["prefix"]: i for i in status["prefixes"]}["192.0.2.30/32"]
    assert item["verdict"] == "held" and item["in_kernel"] and not item["in_frr"]
    assert status["held"] == ["192.0.2.30/32"]


def test_corrupt_operator_state_keeps_the_previous(daemon: Daemon) -> None:
    state_dir = daemon.settings.state_dir
    update_operator(state_dir, lambda s: OperatorState(Drain.WITHDRAW, s.held))
    daemon._reload_operator("test")
    (state_dir / "operator.json").write_text("{not json")
    daemon._reload_operator("test")
    assert daemon.operator.drain is Drain.WITHDRAW
    with pytest.raises(FrrctlError, match="invalid operator state"):
        load_operator(state_dir)


def test_status_lists_every_candidate_with_reason(daemon: Daemon) -> None:
    daemon.reconcile()
    status = daemon.status(peers=False)
    items = {i["prefix"]: i for i in status["prefixes"]}
    assert items["203.0.113.5/32"]["verdict"] == "outside-pools"
    assert items["203.0.113.5/32"]["reason"] == "address is outside the host's pools"
    assert items["192.0.2.30/32"]["in_frr"] and items["192.0.2.30/32"]["kernel_interfaces"] == [
        "cloudbr0"
    ]
    text = format_status(status)
    assert "outside-pools" in text and "192.0.2.30/32" in text
    assert "OSPF" not in text  # a BGP-only host
    ospf = {**status, "ospf_daemons": ["ospfd"], "ospf_admission": "closed"}
    assert "OSPF (ospfd): admission closed  blocked 0" in format_status(ospf)
    json.dumps(status)  # serialisable as is


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
    d.snapshot = snap(("192.0.2.30/32", "cloudbr0"), ("192.0.2.31/32", "cloudbr0"))
    fake(d).partial = True
    assert d.reconcile()  # handed to the worker
    assert d.inflight is not None
    assert not d._collect(wait=True)
    assert d.inflight is None and d.frr_state is None and d.pending
    assert d.last_error and "refused" in d.last_error
    fake(d).partial = False
    d.next_attempt = 0.0
    assert d.reconcile() and d._collect(wait=True)
    assert fake(d).state == {P("192.0.2.30/32"): False, P("192.0.2.31/32"): False}
    assert d.last_batch_seconds is not None and d.last_plan == "+1 -0 =1"
    # a second batch waits for the first: never two in flight
    d.snapshot = snap(("192.0.2.30/32", "cloudbr0"))
    d.changed = None
    assert d.reconcile() and d._collect(wait=True)
    assert fake(d).state == {P("192.0.2.30/32"): False}


def test_restarted_bgpd_gets_no_batch_until_its_config_is_loaded(daemon: Daemon) -> None:
    """A commit landing while `vtysh -b` still loads bgpd's config would be undone
    by the load's final commit: drivers that can tell make the pass wait."""
    loaded = [False]
    fake(daemon).config_loaded = lambda: loaded[0]  # type: ignore[attr-defined]
    daemon.config_wait_until = time.monotonic() + 30
    assert not daemon.reconcile()
    assert fake(daemon).reads == 0 and not fake(daemon).applied and daemon.pending
    assert daemon.last_error is None  # waiting is not a failure
    loaded[0] = True
    assert daemon.reconcile() and fake(daemon).state == {P("192.0.2.30/32"): False}
    assert daemon.config_wait_until == 0.0
    # past the wait, a driver that never reports its config loaded is not waited for
    loaded[0] = False
    daemon.config_wait_until = time.monotonic() - 1
    daemon.frr_state = None
    assert daemon.reconcile()


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
    assert d.reconcile() and d.verify()
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
    assert d.next_liveness == 100.0 + d.settings.liveness_confirm  # checked again soon
    d._check_liveness(101.0)
    assert watcher.resyncs == 0 and d.kernel_view_ok and d.kernel_view_mismatches == 0
    assert d.next_liveness == 101.0 + d.settings.liveness_interval


def test_deaf_watcher_is_caught_resynced_and_shown_unhealthy(
    deaf: tuple[Daemon, FakeWatcher],
) -> None:
    d, watcher = deaf
    status = d.status(peers=False)
    assert status["healthy"] and status["frr_state_verified"] and status["kernel_view_ok"]
    watcher.audits = [lost(1), lost(1)]  # the same difference twice: confirmed
    d._check_liveness(100.0)
    d._check_liveness(101.0)
    assert watcher.resyncs == 1 and d.kernel_view_mismatches == 1
    assert d.metrics.kernel_view_mismatches._value.get() == 1
    status = d.status(peers=False)
    assert status["kernel_view_ok"] is False and status["healthy"] is False
    assert status["frr_state_verified"] is False
    assert "UNHEALTHY" in format_status(status)
    assert d._sel.get_key(watcher.sock).data == "netlink"  # the resynced socket is heard
    d._check_liveness(102.0)  # the resync cured it: healthy again
    assert d.kernel_view_ok and d.status(peers=False)["frr_state_verified"]
    # it keeps happening (twice within 10 minutes): unhealthy although each resync cured it
    watcher.audits = [lost(2), lost(2), clean_audit(), clean_audit()]
    for now in (200.0, 201.0, 202.0, 212.0):
        d._check_liveness(now)
    assert d.kernel_view_mismatches == 2 and not d.kernel_view_ok
    assert not d.status(peers=False)["healthy"]
    d._check_liveness(800.0)  # a quiet 10 minutes later
    assert d.kernel_view_ok


def test_kernel_view_check_failure_is_logged_not_raised(deaf: tuple[Daemon, FakeWatcher]) -> None:
    d, watcher = deaf
    watcher.audits = [OSError("netlink: no buffer"), None]
    d._check_liveness(100.0)
    d._check_liveness(110.0)  # None: dump interrupted, inconclusive
    assert watcher.resyncs == 0 and d.kernel_view_ok
    assert d.next_liveness == 110.0 + d.settings.liveness_confirm


# -- issue 10, 4.2: every pending timer bounds the loop's sleep --


def test_loop_timeout_takes_the_earliest_pending_timer() -> None:
    from frrctl.daemon import loop_timeout

    assert loop_timeout(100.0, verify=130.0) == 30.0
    assert loop_timeout(100.0, verify=130.0, repair=101.0, liveness=None) == 1.0
    assert loop_timeout(100.0, verify=130.0, liveness=105.0, attempt=None) == 5.0
    assert loop_timeout(100.0, verify=130.0, probe=0.1, repair=101.0) == 0.1
    assert loop_timeout(100.0, verify=90.0, repair=101.0) == 0.0  # overdue: no sleep


def test_idle_daemon_wakes_for_the_repair_after_a_zebra_restart(daemon: Daemon) -> None:
    assert daemon.reconcile() and daemon.verify()  # idle: nothing pending, verify 30 s away
    now = time.monotonic()
    daemon.next_liveness = now + 60
    assert daemon._timeout(now) > 25
    daemon.repair_until, daemon.next_repair = now + 40, now + 1  # zebra came back
    assert daemon._timeout(now) == pytest.approx(1.0, abs=0.01)
    daemon.frr_up = False  # FRR away: the probe interval rules
    assert daemon._timeout(now) == daemon.settings.probe_interval


# -- issue 10, 4.3: bgpd's best default route missing from the kernel --


def test_missing_default_is_confirmed_then_reinstalled_once_per_cooldown(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    best = {4, 6}
    sent: list[int] = []
    monkeypatch.setattr(daemon, "_bgp_best_defaults", lambda: set(best))
    monkeypatch.setattr(daemon.monitor.clients["bgpd"], "run", lambda cmds: sent.append(1) or [])
    monkeypatch.setattr(type(daemon.monitor.clients["bgpd"]), "connected", property(lambda _: True))
    monkeypatch.setattr(daemon, "_register_monitor", lambda: None)
    daemon._check_defaults(100.0, frozenset({6}))  # IPv4 missing once: may be in flight
    assert not sent and daemon.defaults_missing == frozenset()
    daemon._check_defaults(101.0, frozenset({6}))  # twice: act
    assert sent == [1] and daemon.defaults_missing == {4} and daemon.defaults_reinstalls == 1
    assert daemon.status(peers=False)["healthy"] is False
    daemon._check_defaults(101.5, frozenset({6}))  # within the cooldown: no second command
    assert sent == [1]
    daemon._check_defaults(103.5, frozenset({6}))
    assert sent == [1, 1]
    daemon._check_defaults(104.5, frozenset({4, 6}))  # back
    assert daemon.defaults_missing == frozenset()
    best.clear()  # bgpd has no default (session down): nothing to repair
    daemon._check_defaults(110.0, frozenset())
    daemon._check_defaults(111.0, frozenset())
    assert sent == [1, 1] and daemon.defaults_missing == frozenset()


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
