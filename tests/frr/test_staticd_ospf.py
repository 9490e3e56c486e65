"""The staticd (gRPC) driver on an OSPF host: ospfd and ospf6d redistribute staticd's
routes through the rendered route-maps, checked in a real upstream's LSDB.

The host's frr.conf is rendered from an inventory (mode controller, the staticd
driver, OSPFv2 + OSPFv3 in an NSSA area) and loaded with vtysh into zebra,
staticd (gRPC module), ospfd and ospf6d; the upstream runs Debian's ospfd and
ospf6d. Latencies are printed, not asserted: the machine is shared.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from frrctl.frr.base import AnnounceDriver, RetryPolicy
from frrctl.frr.netns import NetnsPortForwarder
from frrctl.frr.sandbox import FrrInstall, FrrSandbox, wire_host
from frrctl.frr.staticd import StaticdDriver, StaticdVtyDriver
from frrctl.frr.vty import VtyClient
from frrctl.inventory import parse_inventory
from frrctl.policy import STATIC_MIN_METRIC, Plan, parse_prefix
from frrctl.render import render_host

from .conftest import GRPC_PORT, grpc_install, needs_grpc_frr, unique

pytestmark = [needs_grpc_frr, pytest.mark.lab]
P = parse_prefix
STATICD = "grpc"
AREA = "0.0.0.3"
INVENTORY = {
    "fabric": {"pools": {"ipv4": ["192.0.2.0/24"], "ipv6": ["2001:db8:100::/64"]}},
    "hosts": [
        {
            "hostname": "fg4-ospf",
            "router-id": "198.51.100.21",
            "mode": "controller",
            "controller": {"driver": STATICD, "grpc-port": GRPC_PORT},
            "uplinks": [
                {
                    "interface": "eth-up",
                    "addresses": ["198.18.0.0/31", "2001:db8:ffff::/127"],
                    "ospf": {"area": AREA},
                    "ospf6": {"area": AREA},
                }
            ],
        }
    ],
}
UPSTREAM = f"""frr defaults datacenter
hostname fg4-ospf-up
interface eth-host
 ip ospf area {AREA}
 ip ospf network point-to-point
 ipv6 ospf6 area {AREA}
 ipv6 ospf6 network point-to-point
exit
router ospf
 ospf router-id 198.51.100.254
 area {AREA} nssa
exit
router ospf6
 ospf6 router-id 198.51.100.254
 area {AREA} nssa
exit
"""


def rendered_conf() -> str:
    fleet = parse_inventory(INVENTORY)
    return render_host(fleet, fleet.hosts[0])["frr.conf"]


def load(sandbox: FrrSandbox, text: str) -> None:
    conf = sandbox.workdir / "frr.conf"
    conf.write_text(text)
    cmd = [str(sandbox.install.vtysh), "--vty_socket", str(sandbox.vtydir), "-f", str(conf)]
    result = sandbox.ns_exec(cmd, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def lsa_prefixes(text: str) -> set[str]:
    """Live (not MaxAge) external prefixes of `show ip ospf database nssa-external`
    or `show ipv6 ospf6 database type-7 detail` (both FRR 8.4 text)."""
    out: set[str] = set()
    age = 0
    mask = ""
    lsid = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("LS age:", "Age:")):
            age = int(line.split(":")[1].split()[0])
        elif line.startswith("Link State ID:"):
            lsid = line.split(":", 1)[1].split()[0]
        elif line.startswith("Network Mask:") and age < 3600:
            mask = line.split("/")[-1]
            out.add(f"{lsid}/{mask}")
        elif line.startswith("Prefix:") and age < 3600:
            out.add(str(P(line.split()[1])))
    return out


@dataclass
class OspfFabric:
    host: FrrSandbox
    upstream: FrrSandbox

    def lsdb(self, where: FrrSandbox | None = None) -> set[str]:
        box = where or self.upstream
        v4 = box.vtysh("show ip ospf database nssa-external")
        v6 = box.vtysh("show ipv6 ospf6 database type-7 detail")
        return lsa_prefixes(v4) | lsa_prefixes(v6)

    def redistribute(self, source: str) -> None:
        """Switch both OSPFs between the rendered `static` and native `kernel` only-cloud."""
        maps = {
            "static": ("static-cloud", "static-cloud-v6"),
            "kernel": ("only-cloud", "only-cloud-v6"),
        }
        other = "kernel" if source == "static" else "static"
        v4, v6 = maps[source]
        self.host.vtysh(
            "configure terminal",
            "router ospf", f"no redistribute {other}", f"redistribute {source} route-map {v4}",
            "exit",
            "router ospf6", f"no redistribute {other}", f"redistribute {source} route-map {v6}",
        )  # fmt: skip


def wait_full(upstream: FrrSandbox, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        v4 = upstream.vtysh("show ip ospf neighbor")
        v6 = upstream.vtysh("show ipv6 ospf6 neighbor")
        if "Full" in v4 and "Full" in v6:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"OSPF adjacencies not Full:\n{v4}\n{v6}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def fabric() -> Iterator[OspfFabric]:
    install = grpc_install()
    assert install is not None
    tag = unique("o")
    host = FrrSandbox(f"{tag}h", install)
    upstream: FrrSandbox | None = None
    try:
        upstream = FrrSandbox(f"{tag}u", FrrInstall.debian())
        wire_host(host, upstream.name)
        for box in (host, upstream):
            box.start("zebra", f"hostname {box.name}\n")
        host.start("staticd", f"hostname {host.name}\n", ("-M", f"grpc:{GRPC_PORT}"))
        for box in (host, upstream):
            for daemon in ("ospfd", "ospf6d"):
                box.start(daemon, f"hostname {box.name}\n")
        load(host, rendered_conf())
        load(upstream, UPSTREAM)
        wait_full(upstream)
        yield OspfFabric(host, upstream)
    finally:
        if upstream is not None:
            upstream.close()
        host.close()


@pytest.fixture(scope="module")
def drivers(fabric: OspfFabric) -> Iterator[dict[str, AnnounceDriver]]:
    """Both transports to the same staticd: gRPC, and the vty (XFRR-batched)."""
    with NetnsPortForwarder(fabric.host.name, "127.0.0.1", GRPC_PORT, "fg4-ofwd-") as fwd:
        retry, vty_dir = RetryPolicy(deadline=3), fabric.host.vtydir
        grpc = StaticdDriver(fwd.target, retry=retry, vty_dir=vty_dir, bgp=False, ospf6=True)
        vty = StaticdVtyDriver(vty_dir, retry=retry, ospf6=True)
        try:
            yield {"grpc": grpc, "vty": vty}
        finally:
            grpc.close()
            vty.close()


@pytest.fixture(params=["grpc", "vty"])
def driver(
    request: pytest.FixtureRequest, drivers: dict[str, AnnounceDriver]
) -> Iterator[AnnounceDriver]:
    drv = drivers[request.param]
    yield drv
    drv.reconcile({})


def test_rendered_config_redistributes_static_in_both_ospfs(fabric: OspfFabric) -> None:
    v4 = fabric.host.vtysh("show running-config ospfd")
    v6 = fabric.host.vtysh("show running-config ospf6d")
    assert "redistribute static route-map static-cloud\n" in v4
    assert "redistribute static route-map static-cloud-v6\n" in v6
    assert "redistribute kernel" not in v4 + v6
    assert "frrctl-admit" not in v4 + v6


class Lsdb:
    """The external LSAs of one box, read over its daemons' vty sockets (a vtysh
    process per read would cost ~25 ms: too coarse for latencies)."""

    def __init__(self, box: FrrSandbox) -> None:
        self.v4 = VtyClient(box.vtydir / "ospfd.vty", timeout=10)
        self.v6 = VtyClient(box.vtydir / "ospf6d.vty", timeout=10)

    def read(self, versions: tuple[int, ...] = (4, 6)) -> set[str]:
        out: set[str] = set()
        if 4 in versions:
            (reply,) = self.v4.run(["show ip ospf database nssa-external"])
            out |= lsa_prefixes(reply.output)
        if 6 in versions:
            (reply,) = self.v6.run(["show ipv6 ospf6 database type-7 detail"])
            out |= lsa_prefixes(reply.output)
        return out

    def wait(self, want: Callable[[set[str]], bool], version: int, timeout: float = 15) -> float:
        started = time.perf_counter()
        while True:
            got = self.read((version,))
            if want(got):
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise AssertionError(f"LSDB never reached the wanted state: {sorted(got)}")
            time.sleep(0.002)

    def close(self) -> None:
        self.v4.close()
        self.v6.close()


def prefix_of(version: int, i: int) -> str:
    return f"192.0.2.{i}/32" if version == 4 else f"2001:db8:100::{i:x}/128"


def p50(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


ROUNDS = 8


def test_latency_against_native_redistribution(
    fabric: OspfFabric, drivers: dict[str, AnnounceDriver]
) -> None:
    """Announce / withdraw, one prefix at a time, until the LSA is (no longer,
    MaxAge counts as gone) in the upstream's LSDB: native `redistribute kernel`
    vs the staticd driver. Every round must arrive; the figures are printed.

    Each LSA is withdrawn well after its origination: a neighbour discards an
    instance that comes within MinLSArrival (1 s) of the previous one, and a
    MaxAge flush sent sooner only lands with the retransmission, 5-10 s later
    (native and driver alike; measured)."""
    lsdb = Lsdb(fabric.upstream)
    figures: dict[tuple[str, int], tuple[list[float], list[float]]] = {}

    def kernel(verb: str, p: str, *tail: str) -> None:
        fabric.host.ns_exec(["ip", "route", verb, p, "dev", "cloudbr0", *tail])

    try:
        for source in ("kernel", "grpc", "vty"):
            fabric.redistribute("kernel" if source == "kernel" else "static")
            driver = drivers.get(source)
            for version in (4, 6):
                ups, downs = figures.setdefault((source, version), ([], []))
                base = {"kernel": 10, "grpc": 40, "vty": 70}[source]
                prefixes = [prefix_of(version, i) for i in range(base, base + ROUNDS)]
                for p in prefixes:
                    if driver is not None:
                        kernel("add", p, "metric", str(STATIC_MIN_METRIC))
                    t0 = time.perf_counter()  # native: includes the `ip` exec (a few ms)
                    if driver is None:
                        kernel("add", p)
                    else:
                        driver.apply(Plan(announce=((P(p), False),)))
                    lsdb.wait(lambda got, p=p: p in got, version)  # type: ignore[misc]
                    ups.append(time.perf_counter() - t0)
                time.sleep(2.0)
                for p in prefixes:
                    t0 = time.perf_counter()
                    if driver is None:
                        kernel("del", p)
                    else:
                        driver.apply(Plan(withdraw=(P(p),)))
                    lsdb.wait(lambda got, p=p: p not in got, version)  # type: ignore[misc]
                    downs.append(time.perf_counter() - t0)
                    if driver is not None:
                        kernel("del", p, "metric", str(STATIC_MIN_METRIC))
    finally:
        fabric.redistribute("static")
        lsdb.close()
    for (source, version), (ups, downs) in sorted(figures.items()):
        name = {"kernel": "native redistribute kernel", "grpc": "staticd over gRPC",
                "vty": "staticd over its vty (XFRR batch)"}[source]  # fmt: skip
        print(f"OSPFv{2 if version == 4 else 3} {name}: announce p50 {p50(ups)}, "
              f"withdraw p50 {p50(downs)} ({len(ups)} rounds; "
              f"max {max(ups) * 1000:.1f} / {max(downs) * 1000:.1f} ms)")  # fmt: skip


def unplug(fabric: OspfFabric, *prefixes: str) -> None:
    """Remove the plugged route by its metric (else the kernel may delete zebra's
    copy of the static route first), then any metric-0 one."""
    for p in prefixes:
        for tail in (["metric", str(STATIC_MIN_METRIC)], []):
            fabric.host.ns_exec(["ip", "route", "del", p, "dev", "cloudbr0", *tail], check=False)


class Sampler(threading.Thread):
    """Reads the host's own and the upstream's LSDB back to back until stopped:
    every external prefix any sample held, and how many samples were taken."""

    def __init__(self, fabric: OspfFabric) -> None:
        super().__init__(daemon=True)
        self.boxes = [Lsdb(fabric.host), Lsdb(fabric.upstream)]
        self.seen: set[str] = set()
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for box in self.boxes:
                self.seen |= box.read()
            self.samples += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)
        for box in self.boxes:
            box.close()


def test_refused_prefixes_never_reach_the_lsdb(fabric: OspfFabric, driver: AnnounceDriver) -> None:
    """With staticd every refusal (hold, drain, the maximum, require-neighbor,
    the seed's metric-0 route) is a route that is not in staticd, so OSPF has
    nothing to originate, not even for a moment; and a static route outside the
    pools (if the policy ever let one through) stops at the rendered route-map.
    Both LSDBs are sampled throughout; the good prefix reaching the upstream
    proves the sampler ran while redistribution worked."""
    refused_plugged = ["192.0.2.90/32", "2001:db8:100::90/128"]  # held, over max, drained...
    metric_0 = ["192.0.2.91/32", "2001:db8:100::91/128"]  # the seed's `ip route add`
    outside = ["203.0.113.9/32", "2001:db8:999::9/128"]  # static, but outside the pools
    good = ["192.0.2.92/32", "2001:db8:100::92/128"]
    sampler = Sampler(fabric)
    sampler.start()
    try:
        for p in refused_plugged + good:
            fabric.host.ns_exec(["ip", "route", "add", p, "dev", "cloudbr0", "metric",
                                 str(STATIC_MIN_METRIC)])  # fmt: skip
        for p in metric_0:
            fabric.host.ns_exec(["ip", "route", "add", p, "dev", "cloudbr0"])
        driver.apply(Plan(announce=tuple((P(p), False) for p in outside)))
        time.sleep(0.5)
        driver.apply(Plan(announce=tuple((P(p), False) for p in good)))
        deadline = time.monotonic() + 10
        while not set(good) <= sampler.seen:
            assert time.monotonic() < deadline, f"good prefixes never came: {sampler.seen}"
            time.sleep(0.01)
        time.sleep(1.0)  # and a while after
    finally:
        sampler.stop()
        unplug(fabric, *refused_plugged, *good, *metric_0)
    leaked = sampler.seen & set(refused_plugged + metric_0 + outside)
    print(f"LSDB samples (host + upstream, both OSPFs): {sampler.samples}")
    assert sampler.samples > 20
    assert not leaked, f"refused prefixes reached an LSDB: {sorted(leaked)}"


def test_read_back_and_drain_tag(fabric: OspfFabric, driver: AnnounceDriver) -> None:
    """Both transports read back what they wrote, the drain tag included (a
    tagged route is still redistributed by OSPF: it has no GRACEFUL_SHUTDOWN)."""
    both = {P("192.0.2.95/32"): False, P("2001:db8:100::95/128"): False}
    for p in both:
        fabric.host.ns_exec(["ip", "route", "add", str(p), "dev", "cloudbr0", "metric",
                             str(STATIC_MIN_METRIC)])  # fmt: skip
    lsdb = Lsdb(fabric.upstream)
    try:
        assert driver.reconcile(both).announced == both
        drained = dict.fromkeys(both, True)
        assert driver.reconcile(drained).announced == drained
        config = fabric.host.vtysh("show running-config staticd")
        assert "ip route 192.0.2.95/32 cloudbr0 tag 65534" in config
        for p in both:
            lsdb.wait(lambda got, p=p: str(p) in got, p.version)  # type: ignore[misc]
        assert driver.check_table() is None  # no bgpd here
        # ospf6d redistributes the IPv6 one; one it was never given is reported lost
        extra = {P("2001:db8:100::96/128"): False}
        (v6,) = [r for r in driver.redistribution(both) or [] if r.daemon == "ospf6d"]
        assert not v6.missing and not v6.stale
        (v6,) = [r for r in driver.redistribution({**both, **extra}) or [] if r.daemon == "ospf6d"]
        assert v6.missing == set(extra) and not v6.stale
        assert driver.reconcile(both).announced == both
        assert not driver.reconcile(both).plan
    finally:
        lsdb.close()
        unplug(fabric, *map(str, both))
