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

import contextlib
import functools
import ipaddress
import os
import shutil
import signal
import statistics
import subprocess
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError
from frrctl.inventory import Fleet, parse_inventory
from frrctl.lab.netns import LabError
from frrctl.lab.verify import apply_exabgp_line

BENCH_HOST = "bench"
BENCH_OSPF_HOST = (
    "bench-ospf"  # OSPFv2 + OSPFv3 only: its externals reach the peer via the upstream
)
BENCH_POOL4 = ipaddress.IPv4Network("198.19.0.0/16")  # benchmark range (198.18.0.0/15)
BENCH_POOL6 = ipaddress.IPv6Network("2001:db8:b::/64")
BENCH_MAC = "52:54:00:be:0c:01"
# routes as `frrctl instance plug` writes them (the grpc driver needs
# the metric; native redistribution and the other drivers ignore it)
PLUG_METRIC = 2 << 24
# seconds a bulk set may take to reach the peer (FRR alone: ~1 s for 10,000)
BULK_TIMEOUT = 120
# the OSPF host's prefixes start here in both pools, apart from the BGP host's
OSPF_OFFSET = 50000


def bench_inventory() -> dict[str, Any]:
    return {
        "fabric": {"pools": {"ipv4": [str(BENCH_POOL4)], "ipv6": [str(BENCH_POOL6)]}},
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
            },
            {
                "hostname": BENCH_OSPF_HOST,
                "router-id": "198.51.100.98",
                "uplinks": [
                    {
                        "interface": "eth0",
                        "addresses": ["198.18.0.3/31"],
                        "ospf": {"area": "0.0.0.9"},
                        "ospf6": {"area": "0.0.0.9"},
                    }
                ],
            },
        ],
    }


def bench_fleet() -> Fleet:
    return parse_inventory(bench_inventory())


def bench_drivers() -> dict[str, tuple[str, dict[str, Any]]]:
    """What `--drivers` may name: every driver the inventory accepts (so a driver
    added, renamed or removed there changes the bench with it), plus vtysh with
    bgpd's import-check as a variant."""
    from frrctl.inventory import ControllerSettings

    names = typing.get_args(ControllerSettings.model_fields["driver"].annotation)
    out: dict[str, tuple[str, dict[str, Any]]] = {str(n): (str(n), {}) for n in names}
    if "vtysh" in out:
        out["vtysh+import-check"] = ("vtysh", {"import-check": True})
    return out


def default_drivers() -> list[str]:
    return [name for name, (_, settings) in bench_drivers().items() if not settings]


class PeerRecord:
    """Follows the ExaBGP record file as it grows: the prefixes the peer holds now."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = ""
        self.held: set[str] = set()
        # why waiting is pointless (the daemon died), else None; checked twice a second
        self.broken: Callable[[], str | None] = lambda: None

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
        check = time.monotonic() + 0.5
        while True:
            self.poll()
            if predicate(self.held):
                return time.monotonic()
            if time.monotonic() > check:
                check = time.monotonic() + 0.5
                why = self.broken()
                if why is not None:
                    raise LabError(why)
            if time.monotonic() > deadline:
                raise LabError(
                    f"the ExaBGP peer did not get there within {timeout:.0f} s "
                    f"(holds {len(self.held)} prefixes)"
                )
            time.sleep(0.0005)


class KernelWriter:
    """One `ip -batch -` process in the host namespace: routes reach the kernel at once.

    `ip -force` goes on after a failed `route` line, but exits at a failed
    `neigh del`; so the normal path deletes only what it added, and `purge`
    (after a failed part) runs a batch of its own.

    iproute2 6.1's batch mode never frees what a line allocates (~32 KB of heap,
    ~4 KB resident per `route` or `neigh` line, measured here), so a writer that
    lived through earlier phases faults in fresh pages for every line: its CPU
    doubled in the later phases. `fresh()` starts a new process before each
    measured bulk run, so every phase pays the same."""

    def __init__(self, ns: str, bridge: str) -> None:
        self.ns, self.bridge = ns, bridge
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "-n", self.ns, "-force", "-batch", "-"],
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

    def purge(self, prefixes: list[str]) -> None:
        """Remove whatever of `prefixes` exists (routes first: a missing neighbour
        ends the batch), waiting until it is done."""
        lines = [f"route del {p} dev {self.bridge} metric {PLUG_METRIC}" for p in prefixes]
        lines += [f"neigh del {p.split('/')[0]} dev {self.bridge}" for p in prefixes]
        subprocess.run(
            ["ip", "-n", self.ns, "-force", "-batch", "-"],
            input="".join(f"{line}\n" for line in lines),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def fresh(self) -> None:
        """Replace the process by a new one (outside any timing: see the class)."""
        self.close()
        self.proc = self._start()

    def _write(self, lines: Iterator[str]) -> None:
        if self.proc.poll() is not None:  # it died (a line it could not take)
            self.proc = self._start()
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        self.proc.wait(timeout=30)


def give_carrier(ns: str, bridge: str) -> None:
    """A port with carrier on the bench's bridge, as a hypervisor with running VMs
    has: on a bridge without one, zebra holds a static route to it inactive (the
    grpc driver's routes would never be announced; kernel routes are)."""
    for args in (
        ["link", "add", "bench-port", "type", "veth", "peer", "name", "bench-port-p"],
        ["link", "set", "bench-port", "master", bridge, "up"],
        ["link", "set", "bench-port-p", "up"],
    ):
        subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


def addresses(start: int, count: int, version: int = 4) -> list[str]:
    if version == 4:
        base = int(BENCH_POOL4.network_address)
        return [f"{ipaddress.IPv4Address(base + start + i)}/32" for i in range(count)]
    base = int(BENCH_POOL6.network_address)
    return [f"{ipaddress.IPv6Address(base + start + i)}/128" for i in range(count)]


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


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": round(statistics.median(values), 1),
        "p90": round(percentile(values, 90), 1),
        "p99": round(percentile(values, 99), 1),
        "n": len(values),
    }


# -- NLRIs the upstream receives ---------------------------------------------------


def count_nlri(text: str) -> int:
    """NLRIs in bgpd's `debug bgp updates in` log text: one line per prefix
    announced (`rcvd P`, also `...duplicate ignored`), withdrawn (`rcvd UPDATE
    about P -- withdrawn`) or denied (`rcvd UPDATE about P -- DENIED`); the
    `rcvd UPDATE w/ attr` line is per message, not per NLRI."""
    count = 0
    for line in text.splitlines():
        _, sep, rest = line.partition(" rcvd ")
        words = rest.split()
        if not sep or not words:
            continue
        if words[0] == "UPDATE":
            words = words[2:] if words[1:2] == ["about"] else []
        if words and "/" in words[0]:
            count += 1
    return count


class UpstreamUpdates:
    """The upstream bgpd logs every NLRI it receives (`debug bgp updates in`) to a
    file while counting: an update storm (a design that re-sends its table per
    change) shows as thousands, though the ExaBGP peer behind the upstream sees
    only real changes (bgpd passes no duplicate on)."""

    def __init__(self, ns: str, vty: Path, path: Path) -> None:
        self.ns, self.vty, self.path = ns, vty, path
        self.offset = 0

    def start(self) -> None:
        from frrctl.lab import netns

        netns.vtysh(
            self.ns, self.vty, "configure terminal", f"log file {self.path} debugging", "end",
            "debug bgp updates in",
        )  # fmt: skip
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def count(self) -> int:
        """NLRIs logged since the last call (whole lines only)."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        return count_nlri(complete.decode(errors="replace"))

    def stop(self) -> None:
        from frrctl.lab import netns

        netns.vtysh(
            self.ns, self.vty, "no debug bgp updates in", "configure terminal", "no log file",
            "end", check=False,
        )  # fmt: skip


# -- results ---------------------------------------------------------------------


@dataclass
class PhaseResult:
    """One phase (native, or the daemon with one driver): every sample kept."""

    name: str
    announce_ms: list[float] = field(default_factory=list)
    withdraw_ms: list[float] = field(default_factory=list)
    bulk_s: dict[int, float] = field(default_factory=dict)  # median of bulk_samples_s
    bulk_samples_s: dict[int, list[float]] = field(default_factory=dict)
    bulk_withdraw_s: dict[int, list[float]] = field(default_factory=dict)
    # CPU seconds each process spent in one bulk run (kernel add to all at the peer)
    bulk_cpu_s: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    # one more prefix on a host already announcing N: samples per N
    held_announce_ms: dict[int, list[float]] = field(default_factory=dict)
    held_withdraw_ms: dict[int, list[float]] = field(default_factory=dict)
    # NLRIs the upstream received for each single change on a host announcing N
    held_nlri: dict[int, list[int]] = field(default_factory=dict)
    held_rss_mb: dict[int, float | None] = field(default_factory=dict)
    # CPU ms each process spent per single change there (the timed loop's total / changes)
    held_cpu_ms: dict[int, dict[str, float]] = field(default_factory=dict)
    # the OSPF host: "ospf" (OSPFv2, IPv4) and "ospf6" (OSPFv3, IPv6)
    ospf_announce_ms: dict[str, list[float]] = field(default_factory=dict)
    ospf_withdraw_ms: dict[str, list[float]] = field(default_factory=dict)
    recovery_s: float | None = None
    daemon_rss_mb: float | None = None  # right after the largest bulk set reached the peer
    errors: list[str] = field(default_factory=list)  # parts that failed; the run went on

    def summary(self) -> dict[str, Any]:
        def keyed(values: dict[Any, list[float]]) -> dict[str, Any]:
            return {str(k): stats(v) for k, v in values.items()}

        def samples(values: dict[Any, list[float]], digits: int = 1) -> dict[str, list[float]]:
            return {str(k): [round(x, digits) for x in v] for k, v in values.items()}

        return {
            "name": self.name,
            "announce_ms": stats(self.announce_ms),
            "withdraw_ms": stats(self.withdraw_ms),
            "announce_samples_ms": [round(x, 1) for x in self.announce_ms],
            "withdraw_samples_ms": [round(x, 1) for x in self.withdraw_ms],
            "bulk_s": {str(k): round(v, 3) for k, v in self.bulk_s.items()},
            "bulk_samples_s": samples(self.bulk_samples_s, 3),
            "bulk_withdraw_samples_s": samples(self.bulk_withdraw_s, 3),
            "bulk_cpu_s": {str(k): v for k, v in self.bulk_cpu_s.items()},
            "held_announce_ms": keyed(self.held_announce_ms),
            "held_withdraw_ms": keyed(self.held_withdraw_ms),
            "held_announce_samples_ms": samples(self.held_announce_ms),
            "held_withdraw_samples_ms": samples(self.held_withdraw_ms),
            "held_nlri_per_change": {str(k): v for k, v in self.held_nlri.items()},
            "held_rss_mb": {str(k): v for k, v in self.held_rss_mb.items()},
            "held_cpu_ms_per_change": {str(k): v for k, v in self.held_cpu_ms.items()},
            "ospf_announce_ms": keyed(self.ospf_announce_ms),
            "ospf_withdraw_ms": keyed(self.ospf_withdraw_ms),
            "ospf_announce_samples_ms": samples(self.ospf_announce_ms),
            "ospf_withdraw_samples_ms": samples(self.ospf_withdraw_ms),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 3),
            "daemon_rss_mb": self.daemon_rss_mb,
            "errors": self.errors,
        }


# -- measuring -------------------------------------------------------------------


@dataclass
class Bench:
    """What every part of a phase measures with."""

    record: PeerRecord
    writer: KernelWriter
    progress: Callable[[str], None] = lambda _: None
    settle: float = 3.0  # after a bulk withdraw: zebra and bgpd finish their own cleanup
    # why the phase cannot go on (the daemon died), else None: checked per part
    broken: Callable[[], str | None] = lambda: None
    # process name -> its pid now (FRR's daemons, the frrctl daemon): CPU per bulk run
    pids: Callable[[], dict[str, int]] = dict

    def clear(self, prefixes: list[str], timeout: float = 300) -> None:
        """Remove `prefixes` and wait until the peer holds none of them."""
        self.writer.delete(prefixes)
        self.record.wait(has_none(set(prefixes)), timeout)

    def attempt(
        self, result: PhaseResult, part: str, prefixes: list[str], run: Callable[[], None]
    ) -> None:
        """Run one part; if it fails, record why, clean up its prefixes and go on
        (one run must still measure every other part)."""
        why = self.broken()
        if why is not None:
            self.progress(f"{result.name}: {part} skipped: {why}")
            result.errors.append(f"{part}: skipped: {why}")
            return
        try:
            run()
        except (LabError, OSError) as exc:
            self.progress(f"{result.name}: {part} FAILED: {exc}")
            result.errors.append(f"{part}: {exc}")
            try:
                self.writer.purge(prefixes)
                self.record.wait(has_none(set(prefixes)), 300)
            except LabError as again:
                result.errors.append(f"{part}: cleanup: {again}")
            time.sleep(self.settle)

    def single(self, prefix: str, timeout: float = 30) -> tuple[float, float]:
        """(announce ms, withdraw ms) of one prefix: kernel to the peer and back."""
        t0 = time.monotonic()
        self.writer.add([prefix])
        t1 = self.record.wait(has(prefix), timeout)
        self.writer.delete([prefix])
        t2 = time.monotonic()
        t3 = self.record.wait(lacks(prefix), timeout)
        return (t1 - t0) * 1000, (t3 - t2) * 1000


def measure(
    name: str,
    bench: Bench,
    samples: int,
    bulk: list[int],
    restart_bgpd: Callable[[], None] | None,
    rss: Callable[[], float | None] = lambda: None,
    offset: int = 0,
    bulk_repeat: int = 7,
    held: tuple[int, ...] = (),
    held_samples: int = 10,
    nlri: UpstreamUpdates | None = None,
) -> PhaseResult:
    """Time announce/withdraw of single prefixes, bulk sets, recovery after bgpd
    died, and one more prefix on a host holding N.

    Each bulk size runs `bulk_repeat` times; the median is the result. A
    single 10,000-prefix burst varies by +-25% on a 2-core machine, for native
    redistribution as much as for the daemon, and the median of 3 moved the
    vtysh ratio between 1.4x and 1.8x from run to run; 7 keep it steadier."""
    result = PhaseResult(name)
    bench.record.poll()
    warmup = addresses(offset + 999, 1)  # first route after a change of mode: not counted

    def warm() -> None:
        bench.single(warmup[0], 60)

    bench.attempt(result, "warm-up", warmup, warm)

    def singles() -> None:
        for i in range(samples):
            announce, withdraw = bench.single(addresses(offset + i, 1)[0])
            result.announce_ms.append(announce)
            result.withdraw_ms.append(withdraw)

    bench.progress(f"{name}: {samples} single prefixes")
    bench.attempt(result, "single prefix", addresses(offset, samples), singles)
    for count in bulk:
        prefixes = addresses(offset + 20000, count)
        bench.attempt(
            result,
            f"{count} at once",
            prefixes,
            functools.partial(
                measure_bulk, result, bench, prefixes, bulk_repeat,
                rss if count == max(bulk) else None,
                restart_bgpd if count == max(bulk) else None,
            ),
        )  # fmt: skip
    for count in held:
        background = addresses(offset + 40000, count)
        bench.attempt(
            result,
            f"+1 on {count}",
            background + addresses(offset + 60000, held_samples),
            functools.partial(
                measure_held, result, bench, background, held_samples, offset, rss, nlri
            ),
        )
    return result


def measure_bulk(
    result: PhaseResult,
    bench: Bench,
    prefixes: list[str],
    repeat: int,
    rss: Callable[[], float | None] | None,
    restart_bgpd: Callable[[], None] | None,
) -> None:
    count, want = len(prefixes), set(prefixes)
    samples = result.bulk_samples_s.setdefault(count, [])
    withdraw = result.bulk_withdraw_s.setdefault(count, [])
    cpu = result.bulk_cpu_s.setdefault(count, [])
    for run in range(repeat):
        bench.progress(f"{result.name}: {count} at once, run {run + 1}/{repeat}")
        bench.writer.fresh()
        pids = {**bench.pids(), "ip": bench.writer.proc.pid}
        before = cpu_seconds(pids)
        t0 = time.monotonic()
        bench.writer.add(prefixes)
        samples.append(bench.record.wait(has_all(want), BULK_TIMEOUT) - t0)
        after = cpu_seconds(pids)
        cpu.append({k: round(after[k] - before[k], 3) for k in after.keys() & before.keys()})
        if run == 0 and rss is not None:
            result.daemon_rss_mb = rss()
        if run == 0 and restart_bgpd is not None:
            bench.progress(f"{result.name}: bgpd killed and restarted holding {count}")
            t2 = time.monotonic()
            restart_bgpd()  # kills bgpd, starts it again and returns when it runs
            bench.record.wait(lacks_some(want), 60)  # the peer saw the loss
            result.recovery_s = bench.record.wait(has_all(want), 300) - t2
        t4 = time.monotonic()
        bench.clear(prefixes)
        withdraw.append(time.monotonic() - t4)
        time.sleep(bench.settle)
    result.bulk_s[count] = statistics.median(samples)


def measure_held(
    result: PhaseResult,
    bench: Bench,
    background: list[str],
    samples: int,
    offset: int,
    rss: Callable[[], float | None],
    nlri: UpstreamUpdates | None,
) -> None:
    """Per-change latency on a host already announcing `len(background)` prefixes
    (issue 11, 2.6: FRR's northbound cost per commit grows with the config), the
    NLRIs the upstream receives per change, and the daemon's memory there."""
    count = len(background)
    bench.progress(f"{result.name}: +1 on a host holding {count}")
    bench.writer.add(background)
    bench.record.wait(has_all(set(background)), BULK_TIMEOUT)
    time.sleep(bench.settle)
    result.held_rss_mb[count] = rss()
    announce = result.held_announce_ms.setdefault(count, [])
    withdraw = result.held_withdraw_ms.setdefault(count, [])
    per_change = result.held_nlri.setdefault(count, []) if nlri else []
    if nlri:
        nlri.start()
    pids = bench.pids()
    before = cpu_seconds(pids)
    try:
        for i in range(samples):
            (prefix,) = addresses(offset + 60000 + i, 1)
            t0 = time.monotonic()
            bench.writer.add([prefix])
            announce.append((bench.record.wait(has(prefix), 60) - t0) * 1000)
            if nlri:
                per_change.append(nlri.count())
            t1 = time.monotonic()
            bench.writer.delete([prefix])
            withdraw.append((bench.record.wait(lacks(prefix), 60) - t1) * 1000)
            if nlri:
                per_change.append(nlri.count())
        if nlri:
            time.sleep(bench.settle)  # a storm a timer sends later is counted too
            if per_change:
                per_change[-1] += nlri.count()
        after = cpu_seconds(pids)
        result.held_cpu_ms[count] = {
            k: round((after[k] - before[k]) * 1000 / (2 * samples), 1)
            for k in sorted(after.keys() & before.keys())
        }
    finally:
        if nlri:
            nlri.stop()
    bench.clear(background)
    time.sleep(bench.settle)


def measure_ospf(result: PhaseResult, bench: Bench, samples: int, offset: int) -> None:
    """Announce/withdraw of one prefix on the OSPF host, IPv4 (OSPFv2) and IPv6
    (OSPFv3): to the upstream as an NSSA external, on to the peer through its BGP."""
    for version, key in ((4, "ospf"), (6, "ospf6")):
        base = OSPF_OFFSET + offset

        def run(version: int = version, key: str = key, base: int = base) -> None:
            bench.single(addresses(base + 999, 1, version)[0], 120)  # warm-up, not counted
            announce = result.ospf_announce_ms.setdefault(key, [])
            withdraw = result.ospf_withdraw_ms.setdefault(key, [])
            for i in range(samples):
                a, w = bench.single(addresses(base + i, 1, version)[0])
                announce.append(a)
                withdraw.append(w)

        bench.progress(f"{result.name}: {key} {samples} single prefixes")
        prefixes = addresses(base, samples, version) + addresses(base + 999, 1, version)
        bench.attempt(result, key, prefixes, run)


def process_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process (those still there), and the
    machine's: `all` busy on every core (other engineers' tests included) and
    `steal` (taken by the hypervisor): how noisy a run was."""
    tick = os.sysconf("SC_CLK_TCK")
    out = machine_seconds(tick)
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def machine_seconds(tick: int) -> dict[str, float]:
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return {}
    # cpu user nice system idle iowait irq softirq steal ...
    values = [int(v) for v in first[1:9]]
    busy = sum(values) - values[3] - values[4]
    return {"all": busy / tick, "steal": values[7] / tick}


def frr_pids(workdir: Path, daemons: Iterable[str]) -> dict[str, int]:
    """FRR daemons' pids from their pidfiles (read each time: a restart changes them)."""
    out = {}
    for daemon in daemons:
        with contextlib.suppress(OSError, ValueError):
            out[daemon] = int((workdir / "vty" / f"{daemon}.pid").read_text().strip())
    return out


def peer_pids(exabgp_conf: Path, record: Path) -> dict[str, int]:
    """This lab's ExaBGP's and its recorder's pids (found once: the peer never
    restarts; matched by their own files, as other labs may run beside it).
    Their CPU shows whether a phase sends the peer more, smaller UPDATEs."""
    out: dict[str, int] = {}
    conf, rec = str(exabgp_conf).encode(), str(record).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"frrctl.lab.recorder" in cmdline and rec in cmdline:
            out["peer-recorder"] = int(entry.name)
        elif conf in cmdline and b"exabgp" in cmdline and b"netns" not in cmdline:
            out["exabgp"] = int(entry.name)
    return out


def with_daemon(frr: Callable[[], dict[str, int]], pid: int) -> dict[str, int]:
    return {**frr(), "frrctl": pid}


def kill_pidfile(pidfile: Path) -> None:
    pid = int(pidfile.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


# -- the table -------------------------------------------------------------------


def _metrics(native: dict[str, Any]) -> list[tuple[str, Callable[[dict[str, Any]], float | None]]]:
    """(row label, value of a summary) for every row the native phase has."""

    def path(*keys: str) -> Callable[[dict[str, Any]], float | None]:
        def get(s: dict[str, Any]) -> float | None:
            value: Any = s
            for key in keys:
                value = value.get(key) if isinstance(value, dict) else None
            return value if isinstance(value, int | float) else None

        return get

    rows: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
        ("1 prefix announce p50 ms", path("announce_ms", "p50")),
        ("1 prefix announce p90 ms", path("announce_ms", "p90")),
        ("1 prefix withdraw p50 ms", path("withdraw_ms", "p50")),
    ]
    rows += [(f"{k} at once, at peer s", path("bulk_s", k)) for k in native["bulk_s"]]
    for k in native["held_announce_ms"]:
        rows += [
            (f"+1 on {k} announce p50 ms", path("held_announce_ms", k, "p50")),
            (f"+1 on {k} announce p90 ms", path("held_announce_ms", k, "p90")),
            (f"+1 on {k} withdraw p50 ms", path("held_withdraw_ms", k, "p50")),
        ]
    for key, label in (("ospf", "OSPFv2"), ("ospf6", "OSPFv3")):
        if key in native["ospf_announce_ms"]:
            rows += [
                (f"{label} announce p50 ms", path("ospf_announce_ms", key, "p50")),
                (f"{label} withdraw p50 ms", path("ospf_withdraw_ms", key, "p50")),
            ]
    return rows


def nlri_per_change(summary: dict[str, Any], count: str) -> str:
    changes = summary["held_nlri_per_change"].get(count) or []
    if not changes:
        return "-"
    return f"{sum(changes) / len(changes):.1f} (max {max(changes)})"


def cpu_cell(summary: dict[str, Any], count: str) -> str:
    runs = summary["bulk_cpu_s"].get(count) or []
    names = sorted({name for run in runs for name in run})
    medians = {n: statistics.median(r[n] for r in runs if n in r) for n in names}
    return " ".join(f"{n}={v:.2f}" for n, v in medians.items()) or "-"


def held_cpu_cell(summary: dict[str, Any], count: str) -> str:
    per = summary["held_cpu_ms_per_change"].get(count) or {}
    return " ".join(f"{n}={v:g}" for n, v in per.items()) or "-"


def format_table(results: list[PhaseResult]) -> str:
    """One row per figure, one column per phase: the value and its ratio to native."""
    summaries = [r.summary() for r in results]
    native = summaries[0]
    rows = [("", *[s["name"] for s in summaries])]
    for label, get in _metrics(native):
        base = get(native)
        cells = []
        for s in summaries:
            value = get(s)
            if value is None:
                cells.append("-")
            elif s is native or not base:
                cells.append(f"{value:g}")
            else:
                cells.append(f"{value:g} ({value / base:.2f}x)")
        rows.append((label, *cells))
    for k in native["held_announce_ms"]:
        rows.append(
            (f"NLRIs at upstream per change on {k}", *[nlri_per_change(s, k) for s in summaries])
        )
        rows.append(
            (
                f"daemon RSS MB holding {k}",
                *[str(s["held_rss_mb"].get(k) or "-") for s in summaries],
            )
        )
    rows.append(
        ("daemon RSS MB after largest set", *[str(s["daemon_rss_mb"] or "-") for s in summaries])
    )
    for k in native["bulk_cpu_s"]:
        rows.append((f"CPU s per {k} run (median)", *[cpu_cell(s, k) for s in summaries]))
    for k in native["held_announce_ms"]:
        rows.append((f"CPU ms per change on {k}", *[held_cpu_cell(s, k) for s in summaries]))
    rows.append(("bgpd restart, all back s", *[str(s["recovery_s"] or "-") for s in summaries]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    for s in summaries:
        lines += [f"{s['name']}: FAILED {e}" for e in s["errors"]]
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------


def switch_ospf_host(lab: Any, hostname: str, driver: str, **settings: Any) -> Any:
    """The OSPF host to controller mode with `driver`: its OSPF daemons (and staticd,
    where the config loads it with a module) restart with the new config, as
    `controller.switch_to_controller` does for bgpd; then the daemon starts."""
    import yaml

    from frrctl.lab import controller, frrproc
    from frrctl.pipeline import publish

    raw = yaml.safe_load(lab.inventory.read_text())
    inventory = lab.nsdir(hostname) / f"fleet-controller-{driver}.yaml"
    switched = controller.controller_inventory(raw, {hostname}, driver, **settings)
    inventory.write_text(yaml.safe_dump(switched, sort_keys=False))
    publish(parse_inventory(switched), lambda _host: lab.nsdir(hostname) / "etc", only=hostname)
    daemons = ["ospfd", "ospf6d"]
    modules = frrproc.daemon_modules((lab.nsdir(hostname) / "etc" / "daemons").read_text())
    if modules.get("staticd"):
        daemons.append("staticd")
    for daemon in daemons:
        frrproc.restart_daemon(lab, hostname, daemon)
    return controller.start_daemon(lab, hostname, inventory)


def daemon_broken(daemon: Any) -> Callable[[], str | None]:
    """For Bench.broken: the daemon's exit and the last line of its log."""

    def check() -> str | None:
        if daemon.proc.poll() is None:
            return None
        try:
            last = Path(daemon.log).read_text().strip().splitlines()[-1:]
        except OSError:
            last = []
        return f"the daemon exited ({daemon.proc.returncode}): {' '.join(last)[-300:]}"

    return check


def stop_and_keep_log(daemon: Any, keep: Path) -> None:
    """Stop a daemon; its log outlives the lab (`lab down` removes the lab's files)."""
    from frrctl.lab import controller

    controller.stop_daemon(daemon)
    with contextlib.suppress(OSError):
        shutil.copyfile(daemon.log, keep)


def run_bench(
    state_dir: Path,
    samples: int = 50,
    bulk: tuple[int, ...] = (1000, 10000),
    drivers: tuple[str, ...] | None = None,
    frr_sbin: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
    bulk_repeat: int = 7,
    held: tuple[int, ...] = (1000, 10000),
    held_samples: int = 10,
    ospf: bool = True,
    ospf_samples: int = 10,
) -> list[PhaseResult]:
    """Build the bench lab, measure native then every driver, tear it down."""
    import yaml

    from frrctl.lab import controller, frrproc, runner

    table = bench_drivers()
    drivers = tuple(default_drivers()) if drivers is None else drivers
    unknown = [d for d in drivers if d not in table]
    if unknown:
        raise LabError(f"unknown bench driver {unknown[0]!r} (known: {', '.join(table)})")
    sbin = frr_sbin or controller.frr_sbin_for(drivers)
    state_dir.mkdir(parents=True, exist_ok=True)
    inventory = state_dir / "bench-fleet.yaml"
    inventory.write_text(yaml.safe_dump(bench_inventory(), sort_keys=False))
    lab = runner.up(inventory, state_dir, wait=60, frr_sbin=sbin)
    results: list[PhaseResult] = []
    bridge = lab.plan.fleet.fabric.bridge
    for host in (BENCH_HOST, BENCH_OSPF_HOST):
        give_carrier(lab.plan.host_ns(host), bridge)
    writer = KernelWriter(lab.plan.host_ns(BENCH_HOST), bridge)
    ospf_writer = KernelWriter(lab.plan.host_ns(BENCH_OSPF_HOST), bridge)
    nlri = UpstreamUpdates(
        lab.plan.upstream_ns, lab.vty("upstream"), lab.nsdir("upstream") / "bench-updates.log"
    )
    try:
        record = PeerRecord(lab.record)
        record.wait(lambda held: not held, 30)  # a fresh peer holds nothing

        peer = peer_pids(lab.nsdir("xbgp") / "exabgp.conf", lab.record)

        def frr() -> dict[str, int]:
            up = frr_pids(lab.nsdir("upstream"), ("bgpd",))
            return {**frr_pids(lab.nsdir(BENCH_HOST), ("bgpd", "zebra", "staticd")),
                    **{f"upstream-{k}": v for k, v in up.items()}, **peer}  # fmt: skip

        bench = Bench(record, writer, progress, pids=frr)
        ospf_bench = Bench(record, ospf_writer, progress)

        def restart() -> None:
            frrproc.restart_daemon(lab, BENCH_HOST, "bgpd")

        def phase(name: str, offset: int, rss: Callable[[], float | None]) -> PhaseResult:
            return measure(
                name, bench, samples, list(bulk), restart, rss=rss, offset=offset,
                bulk_repeat=bulk_repeat, held=held, held_samples=held_samples, nlri=nlri,
            )  # fmt: skip

        progress(f"native redistribution ({sbin})")
        native = phase("native", 0, lambda: None)
        if ospf:
            measure_ospf(native, ospf_bench, ospf_samples, 0)
        results.append(native)
        for index, driver in enumerate(drivers, start=1):
            progress(f"frrctl daemon, {driver} driver")
            name, settings = table[driver]
            result = PhaseResult(f"daemon-{driver}")
            # room above the largest set: "one more on a host holding N" must not
            # meet the daemon's maximum (default 10,000), native has none
            room = {"max-prefixes": max([*bulk, *held, 0]) + 1000}
            try:
                daemon = controller.switch_to_controller(lab, BENCH_HOST, name, **room, **settings)
            except FrrctlError as exc:
                result.errors.append(f"switch to {driver}: {exc}")
            else:
                bench.broken = record.broken = daemon_broken(daemon)
                bench.pids = functools.partial(with_daemon, frr, daemon.pid)
                try:
                    rss = functools.partial(process_rss_mb, daemon.pid)
                    result = phase(result.name, index * 1000, rss)
                finally:
                    bench.broken = record.broken = lambda: None
                    bench.pids = frr
                    stop_and_keep_log(daemon, state_dir / f"daemon-{driver}-{BENCH_HOST}.log")
            if ospf and not settings:  # a variant's settings are BGP ones: same OSPF figures
                progress(f"frrctl daemon, {driver} driver, OSPF host")
                try:
                    daemon = switch_ospf_host(lab, BENCH_OSPF_HOST, name)
                except FrrctlError as exc:
                    result.errors.append(f"OSPF host switch to {driver}: {exc}")
                else:
                    ospf_bench.broken = record.broken = daemon_broken(daemon)
                    try:
                        measure_ospf(result, ospf_bench, ospf_samples, index * 1000)
                    finally:
                        ospf_bench.broken = record.broken = lambda: None
                        log = state_dir / f"daemon-{driver}-{BENCH_OSPF_HOST}.log"
                        stop_and_keep_log(daemon, log)
            results.append(result)
    finally:
        writer.close()
        ospf_writer.close()
        runner.down(state_dir)
    return results
