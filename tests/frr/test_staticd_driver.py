"""grpc driver: staticd over gRPC (lab/build-frr-grpc.sh), bgpd redistributing
static routes, checked at an upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from frrctl.frr.base import DriverError, FrrUnavailable, RetryPolicy
from frrctl.frr.netns import NetnsPortForwarder
from frrctl.frr.staticd import StaticdDriver, StaticEdit, StaticLayout, build_edit
from frrctl.policy import (
    STATIC_MIN_METRIC,
    Code,
    KernelRoute,
    Plan,
    PolicyConfig,
    decide,
    parse_prefix,
)
from frrctl.pools import Pools

from .conftest import GRPC_PORT, Fabric, grpc_install, host_bgpd_config, make_fabric, needs_grpc_frr

pytestmark = [needs_grpc_frr, pytest.mark.lab]
P = parse_prefix
LAYOUT = StaticLayout()
POOL_LISTS = {4: "cloud-pool-v4", 6: "cloud-pool-v6"}
STATICD_ARGS = ("-M", f"grpc:{GRPC_PORT}")


def static_bgpd_config() -> str:
    lines = [
        "ip prefix-list cloud-pool-v4 seq 5 permit 192.0.2.0/24 ge 32",
        "ip prefix-list cloud-pool-v4 seq 10 permit 198.18.0.0/15 ge 32",
        "ipv6 prefix-list cloud-pool-v6 seq 5 permit 2001:db8:100::/48 ge 128",
        *LAYOUT.config_lines(POOL_LISTS),
    ]
    return host_bgpd_config(
        extra="\n".join(lines),
        af_v4=f"  redistribute static route-map {LAYOUT.route_map(4)}",
        af_v6=f"  redistribute static route-map {LAYOUT.route_map(6)}",
    )


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    install = grpc_install()
    assert install is not None
    yield from make_fabric(install, (), static_bgpd_config(), STATICD_ARGS)


@pytest.fixture
def driver(fabric: Fabric) -> Iterator[StaticdDriver]:
    with NetnsPortForwarder(fabric.host.name, "127.0.0.1", GRPC_PORT, "fg4-sfwd-") as fwd:
        drv = StaticdDriver(fwd.target, retry=RetryPolicy(deadline=3), vty_dir=fabric.host.vtydir)
        try:
            yield drv
            drv.reconcile({})
        finally:
            drv.close()


def plug(fabric: Fabric, *prefixes: str) -> None:
    """What `frrctl instance plug` does to the kernel: metric 2 << 24."""
    fabric.add_routes(list(prefixes), metric=STATIC_MIN_METRIC)


def test_announce_withdraw_read_back(fabric: Fabric, driver: StaticdDriver) -> None:
    prefixes = ["192.0.2.30/32", "192.0.2.31/32", "2001:db8:100::80/128"]
    plug(fabric, *prefixes)
    assert driver.read() == {}
    desired = {P(p): False for p in prefixes}
    started = time.monotonic()
    result = driver.reconcile(desired)
    assert result.announced == desired and driver.read() == desired
    fabric.wait_upstream(lambda got: set(prefixes) <= got, timeout=5)
    print(f"3 prefixes at the upstream {time.monotonic() - started:.3f} s after the commit")
    # zebra's copy (proto static, metric 20) sits next to the plugged route
    shown = fabric.host.ns_exec(["ip", "route", "show", "192.0.2.30/32"]).stdout
    assert "proto static" in shown and f"metric {STATIC_MIN_METRIC}" in shown
    assert not driver.reconcile(desired).plan  # idempotent: nothing to change
    driver.reconcile({P("192.0.2.31/32"): False})
    fabric.wait_upstream(lambda got: got & set(prefixes) == {"192.0.2.31/32"}, timeout=5)
    assert driver.read() == {P("192.0.2.31/32"): False}
    assert (
        "proto static" not in fabric.host.ns_exec(["ip", "route", "show", "192.0.2.30/32"]).stdout
    )
    for p in prefixes:
        fabric.del_route(p)


def test_only_the_pools_pass_bgpds_route_map(fabric: Fabric, driver: StaticdDriver) -> None:
    """The rendered route-map is a second guard: a static route outside the
    pools (if the daemon's policy ever let one through) never leaves bgpd."""
    driver.reconcile({P("203.0.113.9/32"): False, P("192.0.2.40/32"): False})
    fabric.wait_upstream(lambda got: "192.0.2.40/32" in got, timeout=5)
    time.sleep(0.5)
    assert "203.0.113.9/32" not in fabric.upstream_prefixes()


def test_graceful_shutdown_is_the_routes_tag(fabric: Fabric, driver: StaticdDriver) -> None:
    both = [P("192.0.2.50/32"), P("2001:db8:100::50/128")]
    plug(fabric, *map(str, both))
    driver.reconcile(dict.fromkeys(both, False))
    fabric.wait_upstream(lambda got: {str(p) for p in both} <= got, timeout=5)
    result = driver.reconcile(dict.fromkeys(both, True))
    assert result.announced == dict.fromkeys(both, True)
    deadline = time.monotonic() + 5
    while not all("graceful-shutdown" in fabric.upstream_communities(str(p)) for p in both):
        assert time.monotonic() < deadline, "GRACEFUL_SHUTDOWN never reached the upstream"
        time.sleep(0.05)
    driver.reconcile(dict.fromkeys(both, False))
    deadline = time.monotonic() + 5
    while any("graceful-shutdown" in fabric.upstream_communities(str(p)) for p in both):
        assert time.monotonic() < deadline, "GRACEFUL_SHUTDOWN never went away"
        time.sleep(0.05)
    for p in both:
        fabric.del_route(str(p))


def test_a_batch_is_one_commit(fabric: Fabric, driver: StaticdDriver) -> None:
    prefixes = [f"198.18.{i // 250 + 100}.{i % 250 + 1}/32" for i in range(1000)]
    plug(fabric, *prefixes)
    started = time.monotonic()
    result = driver.reconcile({P(p): False for p in prefixes})
    assert len(result.plan.announce) == 1000 and len(driver.read()) == 1000
    fabric.wait_upstream(lambda got: set(prefixes) <= got, timeout=30)
    print(f"1,000 at the upstream {time.monotonic() - started:.3f} s after reconcile started")
    driver.reconcile({})
    fabric.wait_upstream(lambda got: not (got & set(prefixes)), timeout=30)
    batch = fabric.host.workdir / "del.batch"
    batch.write_text("".join(f"route del {p} dev cloudbr0\n" for p in prefixes))
    fabric.host.ns_exec(["ip", "-batch", str(batch)])


def test_ten_thousand_in_one_commit_fit_frrs_message_limit(driver: StaticdDriver) -> None:
    """10,000 routes are ~6 MB of path-values: sent as one EditCandidate they
    exceed FRR 8.4.4's 4 MiB gRPC receive limit (RESOURCE_EXHAUSTED, retried
    forever before); the transaction splits them by size and still commits once."""
    prefixes = {P(f"198.18.{i // 250 + 10}.{i % 250 + 1}/32"): False for i in range(10_000)}
    started = time.monotonic()
    result = driver.reconcile(prefixes)
    assert len(result.plan.announce) == 10_000
    assert driver.read() == prefixes
    print(f"10,000 in staticd {time.monotonic() - started:.2f} s after reconcile started")


def test_a_kernel_route_at_metric_0_outranks_the_static_route(
    fabric: Fabric, driver: StaticdDriver
) -> None:
    """The seed's recipe (`ip route add ... dev cloudbr0`, metric 0): zebra
    selects the kernel route (distance 0), the static route is never
    redistributed. The policy therefore refuses it for this driver, saying how
    to fix it; the fix (metric 2 << 24) makes it announceable."""
    fabric.add_route("192.0.2.70/32")  # metric 0
    driver.reconcile({P("192.0.2.70/32"): False})
    time.sleep(1.0)
    assert "192.0.2.70/32" not in fabric.upstream_prefixes()
    route = KernelRoute(P("192.0.2.70/32"), "cloudbr0", metric=0)
    config = PolicyConfig(
        pools=Pools.parse(ipv4=["192.0.2.0/24"], ipv6=[]), min_metric=STATIC_MIN_METRIC
    )
    (verdict,) = decide([route], config).verdicts
    assert verdict.code is Code.KERNEL_METRIC and "frrctl instance plug" in verdict.reason
    fabric.del_route("192.0.2.70/32")
    plug(fabric, "192.0.2.70/32")  # the fix the reason names
    fabric.wait_upstream(lambda got: "192.0.2.70/32" in got, timeout=5)
    fabric.del_route("192.0.2.70/32")


def test_check_table_sees_what_bgpd_originates(fabric: Fabric, driver: StaticdDriver) -> None:
    plug(fabric, "192.0.2.80/32")
    driver.reconcile({P("192.0.2.80/32"): False})
    fabric.wait_upstream(lambda got: "192.0.2.80/32" in got, timeout=5)
    table = driver.check_table()
    assert table is not None
    assert table.missing == [] and table.stale == []
    driver.refresh([P("192.0.2.80/32")])  # withdrawn and announced again
    assert driver.read() == {P("192.0.2.80/32"): False}
    fabric.wait_upstream(lambda got: "192.0.2.80/32" in got, timeout=5)
    fabric.del_route("192.0.2.80/32")


def test_a_refused_batch_raises_and_leaves_running_unchanged(
    fabric: Fabric, driver: StaticdDriver
) -> None:
    """What `confirms_apply` rests on: apply() returning means staticd holds the
    whole batch, because a batch it refuses raises and none of it is committed."""
    assert driver.confirms_apply
    plug(fabric, "192.0.2.61/32", "192.0.2.62/32")
    driver.reconcile({P("192.0.2.61/32"): False})
    before = driver.read()
    good = build_edit(LAYOUT, Plan(announce=((P("192.0.2.62/32"), False),)))
    bad = StaticEdit((*good.update, (LAYOUT.tag_xpath(P("192.0.2.62/32")), "no-tag")))
    with pytest.raises(DriverError) as refused:
        driver.commit(bad)
    assert not isinstance(refused.value, FrrUnavailable)  # an answer, not worth retrying
    assert driver.read() == before  # the valid half of the batch is not there either
    time.sleep(1)
    assert "192.0.2.62/32" not in fabric.upstream_prefixes()
    fabric.del_route("192.0.2.61/32")
    fabric.del_route("192.0.2.62/32")


def test_staticd_restart(fabric: Fabric, driver: StaticdDriver) -> None:
    plug(fabric, "192.0.2.60/32")
    driver.reconcile({P("192.0.2.60/32"): False})
    fabric.wait_upstream(lambda got: "192.0.2.60/32" in got, timeout=5)
    fabric.host.kill("staticd")
    with pytest.raises(FrrUnavailable):
        driver.read()  # retried for 3 s, then a clear error
    # staticd's routes died with it (zebra drops a dead client's routes)
    fabric.wait_upstream(lambda got: "192.0.2.60/32" not in got, timeout=10)
    fabric.host.start("staticd", f"hostname {fabric.host.name}\n", STATICD_ARGS)
    started = time.monotonic()
    result = driver.reconcile({P("192.0.2.60/32"): False})
    assert result.plan.announce  # read back empty: announced again
    fabric.wait_upstream(lambda got: "192.0.2.60/32" in got, timeout=5)
    print(f"re-announced at the upstream {time.monotonic() - started:.3f} s after the restart")
    fabric.del_route("192.0.2.60/32")
