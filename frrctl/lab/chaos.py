"""`frrctl lab chaos`: a seeded random soak of the lab in controller mode.

A schedule of events (plug and unplug bursts of host routes, forbidden routes,
kills of bgpd, zebra, ospfd and the frrctl daemon, `clear bgp *`, drain and
undrain, hold and release, VM migrations) runs against the lab while two
invariants are checked at the ExaBGP peer, which sees what the whole fabric
announces:

- safety: a forbidden prefix (outside every pool) is never held by the peer,
  not even for one sample (the record is read every 50 ms);
- liveness: after each event the peer holds exactly the expected set within
  `bound` seconds (and, after a zebra kill, the host's kernel has its default
  routes back: the hypervisor's own reachability).

The schedule is pure (`schedule`): a model of the lab (`World`) and a seed in,
events and the expected announcements after each of them out. `run` applies it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError, UsageError
from frrctl.lab import netns
from frrctl.lab.frrproc import restart_daemon
from frrctl.lab.state import Lab, attach
from frrctl.lab.verify import apply_exabgp_line, learned_routes
from frrctl.policy import STATIC_MIN_METRIC

KINDS = (
    "plug-burst", "unplug-burst", "forbidden-add", "forbidden-del", "kill-bgpd", "kill-zebra",
    "kill-ospfd", "kill-daemon", "clear-bgp", "drain", "undrain", "hold", "release", "migrate",
)  # fmt: skip
# Forbidden prefixes: documentation space outside every pool of the lab's fleet.
FORBIDDEN = tuple(f"198.18.250.{i}/32" for i in range(1, 9)) + tuple(
    f"2001:db8:dead::{i:x}/128" for i in range(1, 9)
)


@dataclass(frozen=True)
class HostModel:
    name: str
    daemons: frozenset[str]  # FRR daemons it runs (bgpd, zebra, ospfd, ...)
    free: tuple[str, ...]  # in-pool prefixes no VM uses, for plug bursts (disjoint per host)


@dataclass(frozen=True)
class World:
    """What the schedule needs to know of the lab, and its state as events go."""

    hosts: tuple[HostModel, ...]
    vms: dict[str, tuple[str, tuple[str, ...]]]  # vm -> (host, prefixes)
    destinations: dict[str, tuple[str, ...]]  # vm -> hosts whose pools hold all its addresses
    plugged: dict[str, frozenset[str]] = field(default_factory=dict)  # host -> burst prefixes
    forbidden: dict[str, frozenset[str]] = field(default_factory=dict)  # host -> prefixes
    drained: frozenset[str] = frozenset()
    held: dict[str, frozenset[str]] = field(default_factory=dict)  # host -> held prefixes

    def host(self, name: str) -> HostModel:
        return next(h for h in self.hosts if h.name == name)

    def owned(self, host: str) -> set[str]:
        """Prefixes the host's kernel has on its bridge (VMs and bursts)."""
        out = set(self.plugged.get(host, frozenset()))
        for vm_host, prefixes in self.vms.values():
            if vm_host == host:
                out |= set(prefixes)
        return out

    def expected(self) -> frozenset[str]:
        """What the peer must hold once the lab has converged."""
        out: set[str] = set()
        for host in self.hosts:
            if host.name not in self.drained:
                out |= self.owned(host.name) - self.held.get(host.name, frozenset())
        return frozenset(out)

    def all_forbidden(self) -> frozenset[str]:
        return frozenset(p for ps in self.forbidden.values() for p in ps)


@dataclass(frozen=True)
class Event:
    index: int
    kind: str
    host: str
    prefixes: tuple[str, ...] = ()
    vm: str = ""
    destination: str = ""
    expected: frozenset[str] = frozenset()  # the peer's set once converged after it

    def describe(self) -> str:
        what = self.vm and f" {self.vm} -> {self.destination}"
        if self.prefixes:
            what += f" {len(self.prefixes)} prefix(es)"
        return f"#{self.index} {self.kind} on {self.host}{what}"


def parse_exclude(text: str) -> tuple[str, str]:
    """`KIND` or `KIND@HOST` -> (kind, host or "*"); ValueError naming a bad kind."""
    kind, _, host = text.partition("@")
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r} in {text!r} (one of {', '.join(KINDS)})")
    return kind, host or "*"


def _choices(
    world: World, exclude: frozenset[tuple[str, str]] = frozenset()
) -> list[tuple[str, str]]:
    """(kind, host) pairs possible in this state, less the excluded ones."""
    return [
        (kind, host)
        for kind, host in _possible(world)
        if (kind, host) not in exclude and (kind, "*") not in exclude
    ]


def _possible(world: World) -> list[tuple[str, str]]:
    out = []
    for h in world.hosts:
        name = h.name
        if set(h.free) - world.plugged.get(name, frozenset()):
            out.append(("plug-burst", name))
        if world.plugged.get(name):
            out.append(("unplug-burst", name))
        if set(FORBIDDEN) - world.all_forbidden():
            out.append(("forbidden-add", name))
        if world.forbidden.get(name):
            out.append(("forbidden-del", name))
        for daemon in ("bgpd", "zebra", "ospfd"):
            if daemon in h.daemons:
                out.append((f"kill-{daemon}", name))
        out.append(("kill-daemon", name))
        if "bgpd" in h.daemons:
            out.append(("clear-bgp", name))
        out.append(("undrain" if name in world.drained else "drain", name))
        if world.owned(name) - world.held.get(name, frozenset()):
            out.append(("hold", name))
        if world.held.get(name):
            out.append(("release", name))
    for vm, (host, _) in world.vms.items():
        if [d for d in world.destinations.get(vm, ()) if d != host]:
            out.append(("migrate", host))
    return out


def step(
    world: World,
    rng: random.Random,
    index: int,
    exclude: frozenset[tuple[str, str]] = frozenset(),
) -> tuple[Event, World]:
    """One random event possible in `world`, and the world after it (pure)."""
    kind, host = rng.choice(_choices(world, exclude))
    prefixes: tuple[str, ...] = ()
    vm = destination = ""
    if kind == "plug-burst":
        free = sorted(set(world.host(host).free) - world.plugged.get(host, frozenset()))
        prefixes = tuple(rng.sample(free, rng.randint(1, min(len(free), 16))))
        plugged = world.plugged.get(host, frozenset()) | set(prefixes)
        world = replace(world, plugged={**world.plugged, host: plugged})
    elif kind == "unplug-burst":
        have = sorted(world.plugged[host])
        prefixes = tuple(rng.sample(have, rng.randint(1, len(have))))
        # (a hold is operator state: it stays, and applies again if the prefix comes back)
        world = replace(world, plugged={**world.plugged, host: world.plugged[host] - set(prefixes)})
    elif kind == "forbidden-add":
        prefixes = (rng.choice(sorted(set(FORBIDDEN) - world.all_forbidden())),)
        mine = world.forbidden.get(host, frozenset()) | set(prefixes)
        world = replace(world, forbidden={**world.forbidden, host: mine})
    elif kind == "forbidden-del":
        prefixes = (rng.choice(sorted(world.forbidden[host])),)
        world = replace(
            world, forbidden={**world.forbidden, host: world.forbidden[host] - set(prefixes)}
        )
    elif kind == "drain":
        world = replace(world, drained=world.drained | {host})
    elif kind == "undrain":
        world = replace(world, drained=world.drained - {host})
    elif kind == "hold":
        candidates = sorted(world.owned(host) - world.held.get(host, frozenset()))
        prefixes = (rng.choice(candidates),)
        world = replace(
            world, held={**world.held, host: world.held.get(host, frozenset()) | set(prefixes)}
        )
    elif kind == "release":
        prefixes = tuple(sorted(world.held[host]))
        world = replace(world, held={**world.held, host: frozenset()})
    elif kind == "migrate":
        movable = sorted(
            v for v, (h, _) in world.vms.items()
            if h == host and [d for d in world.destinations.get(v, ()) if d != h]
        )  # fmt: skip
        vm = rng.choice(movable)
        destination = rng.choice([d for d in world.destinations[vm] if d != host])
        # A hold is the source host's operator state: it does not travel with the VM.
        world = replace(world, vms={**world.vms, vm: (destination, world.vms[vm][1])})
    event = Event(index, kind, host, prefixes, vm, destination, world.expected())
    return event, world


def schedule(
    world: World, seed: int, count: int, exclude: frozenset[tuple[str, str]] = frozenset()
) -> list[Event]:
    """`count` events from `seed`: the same seed gives the same schedule (pure).
    `exclude`: (kind, host) pairs never drawn (host "*": on any host)."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        event, world = step(world, rng, index, exclude)
        events.append(event)
    return events


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class Outcome:
    event: Event
    seconds: float | None  # None: not converged within the bound
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    error: str = ""  # the event itself failed


def summarize(outcomes: list[Outcome], violations: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures per event kind: count, convergence p50 and max, failures."""
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.event.kind == kind]
        if not mine:
            continue
        times = [o.seconds for o in mine if o.seconds is not None]
        kinds[kind] = {
            "count": len(mine),
            "converged": len(times),
            "p50_s": round(statistics.median(times), 3) if times else None,
            "max_s": round(max(times), 3) if times else None,
        }
    failed = [
        {"event": o.event.describe(), "missing": o.missing, "extra": o.extra, "error": o.error}
        for o in outcomes
        if o.seconds is None
    ]
    return {
        "events": len(outcomes),
        "kinds": kinds,
        "liveness_failures": failed,
        "safety_violations": violations,
        "ok": not failed and not violations,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"{'EVENT':<14} {'COUNT':>5} {'OK':>4} {'P50 S':>7} {'MAX S':>7}"]
    for kind, row in summary["kinds"].items():
        p50 = "-" if row["p50_s"] is None else f"{row['p50_s']:.2f}"
        top = "-" if row["max_s"] is None else f"{row['max_s']:.2f}"
        lines.append(f"{kind:<14} {row['count']:>5} {row['converged']:>4} {p50:>7} {top:>7}")
    lines.append(
        f"{summary['events']} events; liveness failures {len(summary['liveness_failures'])}; "
        f"safety violations {len(summary['safety_violations'])}"
    )
    for failure in summary["liveness_failures"]:
        lines.append(
            f"  not converged: {failure['event']} missing {failure['missing'][:5]} "
            f"extra {failure['extra'][:5]}"
            + (f" error: {failure['error']}" if failure["error"] else "")
        )
    for violation in summary["safety_violations"][:10]:
        lines.append(f"  FORBIDDEN at the peer: {violation['prefixes']} after {violation['after']}")
    return "\n".join(lines)


# -- the lab side ------------------------------------------------------------------


def _norm(prefix: str) -> str:
    return str(ipaddress.ip_network(prefix))


def world_of(lab: Lab) -> World:
    """The model of a running lab: hosts, their daemons, VMs and free in-pool prefixes."""
    plan = lab.plan
    fleet = plan.fleet
    used = {_norm(a) for vm in plan.vms for a in vm.addresses}
    hosts = []
    taken: set[str] = set()
    for host in fleet.hosts:
        pools = fleet.pools_of(host)
        daemons = {"zebra"} | ({"bgpd"} if host.runs_bgp else set())
        if host.runs_ospf:
            daemons.add("ospfd")
        free: list[str] = []
        for entry in (*pools.ipv4, *pools.ipv6):
            per_entry = 0
            for address in itertools.islice(entry.addresses(), 1, None):  # not the network's
                text = _norm(f"{address}/{address.max_prefixlen}")
                if text not in used and text not in taken:
                    free.append(text)
                    per_entry += 1
                if per_entry >= 12:
                    break
        taken |= set(free)
        hosts.append(HostModel(host.hostname, frozenset(daemons), tuple(free)))
    vms = {vm.name: (vm.host, tuple(_norm(a) for a in vm.addresses)) for vm in plan.vms}
    destinations = {
        vm.name: tuple(
            h.hostname for h in fleet.hosts if all(a in fleet.pools_of(h) for a in vm.addresses)
        )
        for vm in plan.vms
    }
    return World(tuple(hosts), vms, destinations)


class PeerWatch:
    """The ExaBGP record, read every `interval`: what the peer holds, and any
    sample in which it holds a forbidden prefix."""

    def __init__(self, record: Path, interval: float = 0.05) -> None:
        self.record = record
        self.interval = interval
        self.held: set[str] = set()
        self.forbidden: frozenset[str] = frozenset()
        self.last_event = ""
        self.violations: list[dict[str, Any]] = []
        self._offset = 0
        self._partial = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            with open(self.record) as f:
                f.seek(self._offset)
                data = f.read()
                self._offset = f.tell()
            text = self._partial + data
            lines = text.split("\n")
            self._partial = lines.pop()
            for line in lines:
                apply_exabgp_line(self.held, line)
            bad = self.held & self.forbidden
            if bad:
                self.violations.append(
                    {"time": time.time(), "prefixes": sorted(bad), "after": self.last_event}
                )

    def now(self) -> frozenset[str]:
        self.sample()
        with self._lock:
            return frozenset(self.held)


def _daemon_state(lab: Lab, host: str) -> Path:
    return lab.nsdir(host) / "daemon-state"


def _daemon_pid(lab: Lab, host: str) -> int | None:
    """The frrctl daemon's pid among the processes of the host's namespace."""
    listed = netns.run(["ip", "netns", "pids", lab.plan.host_ns(host)], check=False)
    for text in listed.stdout.split():
        try:
            cmdline = Path(f"/proc/{text}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"frrctl.cli" in cmdline and b"daemon" in cmdline:
            return int(text)
    return None


def _operator(lab: Lab, host: str, change: Callable[[Any], Any]) -> None:
    from frrctl.status import DaemonNotRunning, request, update_operator

    state_dir = _daemon_state(lab, host)
    update_operator(state_dir, change)
    with contextlib.suppress(DaemonNotRunning):  # then applied when it starts
        request(state_dir, {"cmd": "reload"}, timeout=60)


def _gone(pid: int, children: dict[int, subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """Until the killed process is gone: reaped if it is our child (a zombie keeps
    its /proc entry), else until its /proc entry goes or only a zombie is left."""
    child = children.pop(pid, None)
    if child is not None:
        child.wait(timeout=timeout)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state == "Z":
            return
        time.sleep(0.01)


def _start_daemon(lab: Lab, host: str, children: dict[int, subprocess.Popen[bytes]]) -> None:
    from frrctl.lab.controller import start_daemon

    (_daemon_state(lab, host) / "control.sock").unlink(missing_ok=True)  # a killed one's
    daemon = start_daemon(lab, host, lab.inventory)
    children[daemon.pid] = daemon.proc


def apply(lab: Lab, event: Event, children: dict[int, subprocess.Popen[bytes]]) -> Lab:
    """Make the event happen in the lab; returns the lab (re-attached after a
    migration). `children`: the daemons this run started (reaped when killed)."""
    from frrctl.policy import Drain
    from frrctl.status import OperatorState, host_prefix

    ns = lab.plan.host_ns(event.host)
    bridge = lab.plan.fleet.fabric.bridge
    kind = event.kind
    # at the metric `frrctl instance plug` writes: a metric-0 route outranks the
    # grpc driver's static route in zebra and is refused there; deleted with
    # it, else the kernel may delete zebra's copy of the static route first
    tail = f"dev {bridge} metric {STATIC_MIN_METRIC}"
    if kind in ("plug-burst", "forbidden-add"):
        netns.ip_batch(ns, [f"route replace {p} {tail}" for p in event.prefixes])
    elif kind in ("unplug-burst", "forbidden-del"):
        netns.ip_batch(ns, [f"route del {p} {tail}" for p in event.prefixes])
    elif kind in ("kill-bgpd", "kill-zebra", "kill-ospfd"):
        restart_daemon(lab, event.host, kind.removeprefix("kill-"))
    elif kind == "kill-daemon":
        pid = _daemon_pid(lab, event.host)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            _gone(pid, children)
        _start_daemon(lab, event.host, children)
    elif kind == "clear-bgp":
        netns.vtysh(ns, lab.vty(event.host), "clear bgp *", check=False)
    elif kind in ("drain", "undrain"):
        mode = Drain.WITHDRAW if kind == "drain" else Drain.NONE
        _operator(lab, event.host, lambda s: OperatorState(mode, s.held))
    elif kind == "hold":
        held = {host_prefix(p) for p in event.prefixes}
        _operator(lab, event.host, lambda s: OperatorState(s.drain, s.held | held))
    elif kind == "release":
        _operator(lab, event.host, lambda s: OperatorState(s.drain, frozenset()))
    elif kind == "migrate":
        # `frrctl lab migrate`'s steps, without its wait for the upstream (the
        # destination may be drained): convergence is the peer's exact set.
        from frrctl.lab.runner import plug, unplug
        from frrctl.lab.state import record_move

        vm = lab.plan.vm(event.vm)
        unplug(lab, vm, event.host)
        netns.ip(ns, "link", "set", vm.host_port, "netns", lab.plan.host_ns(event.destination))
        plug(lab, vm, event.destination)
        record_move(lab.state_dir, vm.name, event.destination)
        lab = attach(lab.state_dir)
    return lab


CARRIER = "chaos-carrier"


def _carrier(ns: str, bridge: str) -> None:
    """A port with carrier on the bridge. Chaos's bursts are routes with no VM
    port behind them, and migrations can take a host's last VM away: a bridge
    without ports has no carrier, and zebra keeps a static route to a down
    interface inactive, so the grpc driver's routes there would never be
    redistributed (a real hypervisor's routes always have their VM's port)."""
    if netns.ip(ns, "link", "show", CARRIER, check=False).returncode == 0:
        return
    netns.ip(ns, "link", "add", CARRIER, "type", "veth", "peer", "name", f"{CARRIER}-p")
    netns.ip(ns, "link", "set", CARRIER, "master", bridge, "up")
    netns.ip(ns, "link", "set", f"{CARRIER}-p", "up")


def reset(lab: Lab, world: World, children: dict[int, subprocess.Popen[bytes]]) -> None:
    """Back to the state the model starts from: a daemon on every host, no burst
    or forbidden route in any kernel, no hold, no drain (also what a run leaves)."""
    from frrctl.policy import Drain
    from frrctl.status import OperatorState

    bridge = lab.plan.fleet.fabric.bridge
    for host in world.hosts:
        ns = lab.plan.host_ns(host.name)
        _carrier(ns, bridge)
        if _daemon_pid(lab, host.name) is None:
            _start_daemon(lab, host.name, children)
        for prefix in (*host.free, *FORBIDDEN):  # the plug metric's route, then any other
            netns.ip(ns, "route", "del", prefix, "dev", bridge, "metric", str(STATIC_MIN_METRIC),
                     check=False)  # fmt: skip
            netns.ip(ns, "route", "del", prefix, "dev", bridge, check=False)
        _operator(lab, host.name, lambda _: OperatorState(Drain.NONE, frozenset()))


def _defaults_ok(lab: Lab, host: str) -> bool:
    """The host's kernel has a default route for each family it runs (lab verify's check)."""
    from frrctl.lab.topology import host_versions

    ns = lab.plan.host_ns(host)
    want = host_versions(lab.plan.fleet.host(host))
    for version in want:
        result = netns.ip(ns, "-j", f"-{version}", "route", "show", "table", "main", check=False)
        try:
            routes = json.loads(result.stdout or "[]")
        except ValueError:
            return False
        if "default" not in learned_routes(routes):
            return False
    return True


def run(
    lab: Lab,
    seed: int,
    duration: float,
    bound: float = 60.0,
    progress: Callable[[str], None] | None = None,
    exclude: frozenset[tuple[str, str]] = frozenset(),
) -> dict[str, Any]:
    """Run the seeded schedule for `duration` seconds; the summary of what happened."""
    for host in lab.plan.fleet.hosts:
        if host.mode != "controller":
            raise UsageError(
                f"{host.hostname} runs no frrctl daemon: bring the lab up with "
                "`frrctl lab up --driver vtysh|grpc`"
            )
    world = world_of(lab)
    children: dict[int, subprocess.Popen[bytes]] = {}
    reset(lab, world, children)
    events = schedule(world, seed, max(1, int(duration)), exclude)  # never runs short
    watch = PeerWatch(lab.record)
    watch.forbidden = frozenset(_norm(p) for p in FORBIDDEN)  # never announced, at any moment
    watch.start()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        for event in events:
            if time.monotonic() - started >= duration:
                break
            watch.last_event = event.describe()
            t0 = time.monotonic()
            try:
                lab = apply(lab, event, children)
            except FrrctlError as exc:
                outcomes.append(Outcome(event, None, error=str(exc)))
                break  # the lab is no longer what the model says

            want = frozenset(_norm(p) for p in event.expected)
            seconds = None
            while time.monotonic() - t0 < bound:
                held = watch.now()
                if held == want and (event.kind != "kill-zebra" or _defaults_ok(lab, event.host)):
                    seconds = time.monotonic() - t0
                    break
                time.sleep(0.05)
            held = watch.now()
            outcome = Outcome(event, seconds, sorted(want - held), sorted(held - want))
            outcomes.append(outcome)
            if progress is not None:
                took = "NOT converged" if seconds is None else f"{seconds:.2f} s"
                progress(f"{event.describe()}: {took}")
    finally:
        watch.stop()
        reset(lab, world_of(attach(lab.state_dir)), children)
    return summarize(outcomes, watch.violations)
