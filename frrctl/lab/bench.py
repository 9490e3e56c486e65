"""`frrctl lab bench`: FRR's native redistribution vs the frrctl daemon, on one lab.

One hypervisor (`bench`) peers with the upstream, which passes everything on
to the ExaBGP peer. The same running lab is measured in turn with
- native:  `redistribute kernel route-map only-cloud` (FRR alone),
- each daemon driver (controller mode: BGP has no `redistribute kernel`).
Every phase uses the same FRR binaries, the same kernel and the same peer.
Times are taken from the moment the route is written to the kernel (one
long-lived `ip -batch` process, so no process start is measured) until the
ExaBGP peer's API process has written the update to its record.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frrctl.inventory import Fleet, parse_inventory
from frrctl.lab.netns import LabError
from frrctl.lab.verify import apply_exabgp_line

BENCH_HOST = "bench"
BENCH_POOL4 = ipaddress.IPv4Network("198.19.0.0/16")  # benchmark range (198.18.0.0/15)
BENCH_MAC = "52:54:00:be:0c:01"
# routes as `frrctl instance plug` writes them (the grpc-static driver needs
# the metric; native redistribution and the other drivers ignore it)
PLUG_METRIC = 2 << 24


def bench_inventory() -> dict[str, Any]:
    return {
        "fabric": {"pools": {"ipv4": [str(BENCH_POOL4)], "ipv6": ["2001:db8:b::/64"]}},
        "hosts": [
            {
                "hostname": BENCH_HOST,
                "router-id": "198.51.100.99",
                "asn": 65099,
                "remote-as": 65000,
                "uplinks": [
                    {
                        "interface": "eth0",
                        "addresses": ["198.18.0.1/31"],
                        "bgp": {"neighbors": ["198.18.0.0"]},
                    }
                ],
            }
        ],
    }


def bench_fleet() -> Fleet:
    return parse_inventory(bench_inventory())


class PeerRecord:
    """Follows the ExaBGP record file as it grows: the prefixes the peer holds now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""
        self.held: set[str] = set()

    def poll(self) -> None:
        with open(self.path) as handle:
            handle.seek(self.offset)
            data = handle.read()
            self.offset = handle.tell()
        if not data:
            return
        lines = (self.partial + data).split("\n")
        self.partial = lines.pop()  # an unfinished last line waits for the next poll
        for line in lines:
            apply_exabgp_line(self.held, line)

    def wait(self, predicate: Callable[[set[str]], bool], timeout: float) -> float:
        """Poll until `predicate(held)`; return the monotonic time it became true."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if predicate(self.held):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise LabError(
                    f"the ExaBGP peer did not get there within {timeout:.0f} s "
                    f"(holds {len(self.held)} prefixes)"
                )
            time.sleep(0.0005)


class KernelWriter:
    """One `ip -batch -` process in the host namespace: routes reach the kernel at once."""

    def __init__(self, ns: str, bridge: str) -> None:
        self.bridge = bridge
        self.proc = subprocess.Popen(
            ["ip", "-n", ns, "-force", "-batch", "-"],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def add(self, prefixes: Iterable[str]) -> None:
        self._write(
            line
            for p in prefixes
            for line in (
                f"route add {p} dev {self.bridge} metric {PLUG_METRIC}",
                f"neigh replace {p.split('/')[0]} lladdr {BENCH_MAC} dev {self.bridge}"
                " nud permanent",
            )
        )

    def delete(self, prefixes: Iterable[str]) -> None:
        self._write(
            line
            for p in prefixes
            for line in (
                f"neigh del {p.split('/')[0]} dev {self.bridge}",
                f"route del {p} dev {self.bridge} metric {PLUG_METRIC}",
            )
        )

    def _write(self, lines: Iterator[str]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def give_carrier(ns: str, bridge: str) -> None:
    """A port with carrier on the bench's bridge, as a hypervisor with running VMs
    has: on a bridge without one, zebra holds a static route to it inactive (the
    grpc-static driver's routes would never be announced; kernel routes are)."""
    for args in (
        ["link", "add", "bench-port", "type", "veth", "peer", "name", "bench-port-p"],
        ["link", "set", "bench-port", "master", bridge, "up"],
        ["link", "set", "bench-port-p", "up"],
    ):
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def addresses(start: int, count: int) -> list[str]:
    base = int(BENCH_POOL4.network_address)
    return [f"{ipaddress.IPv4Address(base + start + i)}/32" for i in range(count)]


Held = Callable[[set[str]], bool]


def has(prefix: str) -> Held:
    return lambda held: prefix in held


def lacks(prefix: str) -> Held:
    return lambda held: prefix not in held


def has_all(want: set[str]) -> Held:
    return lambda held: want <= held


def lacks_some(want: set[str]) -> Held:
    return lambda held: not want <= held


def has_none(want: set[str]) -> Held:
    return lambda held: not want & held


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class PhaseResult:
    name: str
    announce_ms: list[float] = field(default_factory=list)
    withdraw_ms: list[float] = field(default_factory=list)
    bulk_s: dict[int, float] = field(default_factory=dict)  # median of bulk_samples_s
    bulk_samples_s: dict[int, list[float]] = field(default_factory=dict)
    bulk_withdraw_s: dict[int, float] = field(default_factory=dict)
    # one more prefix on a host already announcing N: announce samples per N
    held_announce_ms: dict[int, list[float]] = field(default_factory=dict)
    held_withdraw_ms: dict[int, list[float]] = field(default_factory=dict)
    recovery_s: float | None = None
    daemon_rss_mb: float | None = None
    note: str = ""

    def summary(self) -> dict[str, Any]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {
                "p50": round(statistics.median(values), 1),
                "p99": round(percentile(values, 99), 1),
                "n": len(values),
            }

        return {
            "name": self.name,
            "announce_ms": stats(self.announce_ms),
            "withdraw_ms": stats(self.withdraw_ms),
            "bulk_s": {str(k): round(v, 3) for k, v in self.bulk_s.items()},
            "bulk_samples_s": {
                str(k): [round(v, 3) for v in vs] for k, vs in self.bulk_samples_s.items()
            },
            "bulk_withdraw_s": {str(k): round(v, 3) for k, v in self.bulk_withdraw_s.items()},
            "held_announce_ms": {str(k): stats(v) for k, v in self.held_announce_ms.items()},
            "held_withdraw_ms": {str(k): stats(v) for k, v in self.held_withdraw_ms.items()},
            "held_samples_ms": {
                str(k): [round(x, 1) for x in v] for k, v in self.held_announce_ms.items()
            },
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "daemon_rss_mb": self.daemon_rss_mb,
            "note": self.note,
        }


def measure(
    name: str,
    record: PeerRecord,
    writer: KernelWriter,
    samples: int,
    bulk: list[int],
    restart_bgpd: Callable[[], None] | None,
    rss: Callable[[], float | None] = lambda: None,
    offset: int = 0,
    bulk_repeat: int = 7,
    settle: float = 3.0,
    held: tuple[int, ...] = (),
    held_samples: int = 10,
) -> PhaseResult:
    """Time announce/withdraw of single prefixes, bulk sets and recovery after bgpd died.

    Each bulk size runs `bulk_repeat` times; the median is the result. A
    single 10,000-prefix burst varies by +-25% on a 2-core machine, for native
    redistribution as much as for the daemon, and the median of 3 moved the
    vtysh ratio between 1.4x and 1.8x from run to run; 7 keep it steadier. After each bulk
    withdraw, `settle` seconds let zebra and bgpd finish their own cleanup
    before the next run starts."""
    result = PhaseResult(name)
    record.poll()
    warmup = addresses(offset + 999, 1)  # first route after a change of mode: not counted
    writer.add(warmup)
    record.wait(has(warmup[0]), 60)
    writer.delete(warmup)
    record.wait(lacks(warmup[0]), 60)
    for i in range(samples):
        (prefix,) = addresses(offset + i, 1)
        t0 = time.monotonic()
        writer.add([prefix])
        t1 = record.wait(has(prefix), 30)
        result.announce_ms.append((t1 - t0) * 1000)
        t2 = time.monotonic()
        writer.delete([prefix])
        t3 = record.wait(lacks(prefix), 30)
        result.withdraw_ms.append((t3 - t2) * 1000)
    for count in bulk:
        prefixes = addresses(offset + 20000, count)
        want = set(prefixes)
        samples_s = result.bulk_samples_s.setdefault(count, [])
        withdraw_s: list[float] = []
        for run in range(bulk_repeat):
            t0 = time.monotonic()
            writer.add(prefixes)
            t1 = record.wait(has_all(want), 300)
            samples_s.append(t1 - t0)
            if count == max(bulk) and run == 0:
                result.daemon_rss_mb = rss()
                if restart_bgpd is not None:
                    t2 = time.monotonic()
                    restart_bgpd()  # kills bgpd, starts it again and returns when it runs
                    record.wait(lacks_some(want), 60)  # the peer saw the loss
                    t3 = record.wait(has_all(want), 300)
                    result.recovery_s = t3 - t2
            t4 = time.monotonic()
            writer.delete(prefixes)
            record.wait(has_none(want), 300)
            withdraw_s.append(time.monotonic() - t4)
            time.sleep(settle)
        result.bulk_s[count] = statistics.median(samples_s)
        result.bulk_withdraw_s[count] = statistics.median(withdraw_s)
    for count in held:
        measure_held(result, record, writer, count, held_samples, offset, settle)
    return result


def measure_held(
    result: PhaseResult,
    record: PeerRecord,
    writer: KernelWriter,
    count: int,
    samples: int,
    offset: int,
    settle: float,
) -> None:
    """Per-change latency on a host already announcing `count` prefixes
    (issue 11, 2.6): FRR's northbound cost per commit grows with the config."""
    background = addresses(offset + 40000, count)
    want = set(background)
    writer.add(background)
    record.wait(has_all(want), 300)
    time.sleep(settle)
    announce = result.held_announce_ms.setdefault(count, [])
    withdraw = result.held_withdraw_ms.setdefault(count, [])
    for i in range(samples):
        (prefix,) = addresses(offset + 60000 + i, 1)
        t0 = time.monotonic()
        writer.add([prefix])
        announce.append((record.wait(has(prefix), 60) - t0) * 1000)
        t1 = time.monotonic()
        writer.delete([prefix])
        withdraw.append((record.wait(lacks(prefix), 60) - t1) * 1000)
    writer.delete(background)
    record.wait(has_none(want), 300)
    time.sleep(settle)


def process_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def kill_pidfile(pidfile: Path) -> None:
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def format_table(results: list[PhaseResult]) -> str:
    native = results[0].summary()
    held = list(native["held_announce_ms"])
    rows = [
        (
            "phase",
            "1 prefix p50/p99 ms",
            "withdraw p50/p99 ms",
            *[f"{k} at peer s" for k in native["bulk_s"]],
            *[f"+1 on {k} p50/p99 ms" for k in held],
            "bgpd restart s",
            "RSS MB",
            "ratio p50",
            *[f"ratio {k}" for k in native["bulk_s"]],
            *[f"ratio +1 on {k}" for k in held],
        )
    ]
    for result in results:
        s = result.summary()
        a, w = s["announce_ms"], s["withdraw_ms"]
        ratio = [f"{a['p50'] / native['announce_ms']['p50']:.2f}x"]
        ratio += [f"{s['bulk_s'][k] / native['bulk_s'][k]:.2f}x" for k in native["bulk_s"]]
        ratio += [
            f"{s['held_announce_ms'][k]['p50'] / native['held_announce_ms'][k]['p50']:.2f}x"
            for k in held
        ]
        rows.append(
            (
                s["name"],
                f"{a['p50']}/{a['p99']}",
                f"{w['p50']}/{w['p99']}",
                *[str(s["bulk_s"].get(k, "-")) for k in native["bulk_s"]],
                *[
                    f"{s['held_announce_ms'][k]['p50']}/{s['held_announce_ms'][k]['p99']}"
                    for k in held
                ],
                str(s["recovery_s"] if s["recovery_s"] is not None else "-"),
                str(s["daemon_rss_mb"] if s["daemon_rss_mb"] is not None else "-"),
                *ratio,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)) for r in rows)


# -- the run -------------------------------------------------------------------------

# What `--drivers` may name: a driver, optionally with a controller setting.
BENCH_DRIVERS = {
    "vtysh": ("vtysh", {}),
    "vtysh+import-check": ("vtysh", {"import-check": True}),
    "grpc": ("grpc", {}),
    "grpc-static": ("grpc-static", {}),
}


DriverPhase = Callable[["Any", str], "Callable[[], float | None]"]


def run_bench(
    state_dir: Path,
    samples: int = 50,
    bulk: tuple[int, ...] = (1000, 10000),
    drivers: tuple[str, ...] = ("vtysh", "vtysh+import-check", "grpc"),
    frr_sbin: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
    bulk_repeat: int = 7,
    held: tuple[int, ...] = (),
) -> list[PhaseResult]:
    """Build the bench lab, measure native then every driver, tear it down."""
    import yaml

    from frrctl.lab import controller, frrproc, runner

    sbin = frr_sbin or controller.frr_sbin_for(drivers)
    state_dir.mkdir(parents=True, exist_ok=True)
    inventory = state_dir / "bench-fleet.yaml"
    inventory.write_text(yaml.safe_dump(bench_inventory(), sort_keys=False))
    lab = runner.up(inventory, state_dir, wait=60, frr_sbin=sbin)
    results: list[PhaseResult] = []
    give_carrier(lab.plan.host_ns(BENCH_HOST), lab.plan.fleet.fabric.bridge)
    writer = KernelWriter(lab.plan.host_ns(BENCH_HOST), lab.plan.fleet.fabric.bridge)
    try:
        record = PeerRecord(lab.record)
        record.wait(lambda held: not held, 30)  # a fresh peer holds nothing

        def restart() -> None:
            frrproc.restart_daemon(lab, BENCH_HOST, "bgpd")

        progress(f"native redistribution ({sbin})")
        results.append(
            measure(
                "native",
                record,
                writer,
                samples,
                list(bulk),
                restart,
                bulk_repeat=bulk_repeat,
                held=held,
            )
        )
        for index, driver in enumerate(drivers, start=1):
            progress(f"frrctl daemon, {driver} driver")
            name, settings = BENCH_DRIVERS[driver]
            # room above the largest set: "one more on a host holding N" must not
            # meet the daemon's maximum (default 10,000), native has none
            room = {"max-prefixes": max([*bulk, *held, 0]) + 1000}
            daemon = controller.switch_to_controller(lab, BENCH_HOST, name, **room, **settings)
            try:
                results.append(
                    measure(
                        f"daemon-{driver}",
                        record,
                        writer,
                        samples,
                        list(bulk),
                        restart,
                        rss=functools.partial(process_rss_mb, daemon.pid),
                        offset=index * 1000,
                        bulk_repeat=bulk_repeat,
                        held=held,
                    )
                )
            finally:
                controller.stop_daemon(daemon)
    finally:
        writer.close()
        runner.down(state_dir)
    return results
