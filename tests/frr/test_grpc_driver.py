"""gRPC driver against bgpd built with gRPC (lab/build-frr-grpc.sh), checked at an upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from frrctl.frr.base import FrrUnavailable, RetryPolicy
from frrctl.frr.gate import Edit, Gate
from frrctl.frr.grpc import GrpcDriver
from frrctl.frr.netns import NetnsPortForwarder
from frrctl.policy import parse_prefix

from .conftest import GRPC_PORT, Fabric, grpc_install, host_bgpd_config, make_fabric, needs_grpc_frr

pytestmark = [needs_grpc_frr, pytest.mark.lab]
P = parse_prefix
GATE = Gate(shards=8)


def grpc_bgpd_config(with_route_maps: bool = True) -> str:
    lines = "\n".join(GATE.config_lines()) if with_route_maps else ""
    return host_bgpd_config(
        extra=lines,
        af_v4=f"  redistribute kernel route-map {GATE.route_map(4)}",
        af_v6=f"  redistribute kernel route-map {GATE.route_map(6)}",
    )


@pytest.fixture(scope="module")
def grpc_fabric() -> Iterator[Fabric]:
    install = grpc_install()
    assert install is not None
    yield from make_fabric(install, ("-M", f"grpc:{GRPC_PORT}"), grpc_bgpd_config())


@pytest.fixture
def driver(grpc_fabric: Fabric) -> Iterator[GrpcDriver]:
    with NetnsPortForwarder(grpc_fabric.host.name, "127.0.0.1", GRPC_PORT, "fg4-fwd-") as fwd:
        drv = GrpcDriver(fwd.target, gate=GATE, retry=RetryPolicy(deadline=3))
        try:
            yield drv
            drv.reconcile({})
        finally:
            drv.close()


def test_capabilities(driver: GrpcDriver) -> None:
    caps = driver.capabilities()
    assert caps["frr_version"].startswith("8.")
    assert {"frr-filter", "frr-route-map"} <= set(caps["modules"])


def test_rendered_gate_is_recognised(driver: GrpcDriver) -> None:
    state = driver.read_state()
    assert all(state.rmap_ok.values()) and len(state.rmap_ok) == 2 * GATE.shards
    assert driver.read() == {}


def test_announce_withdraw_read_back(grpc_fabric: Fabric, driver: GrpcDriver) -> None:
    fab = grpc_fabric
    prefixes = ["192.0.2.30/32", "192.0.2.31/32", "2001:db8:100::80/128"]
    for p in prefixes:
        fab.add_route(p)
    fab.add_route("192.0.2.99/32")  # in the kernel, never in the gate
    desired = {P(p): False for p in prefixes}
    result = driver.reconcile(desired)
    assert result.announced == desired
    assert driver.read() == desired
    fab.wait_upstream(lambda got: set(prefixes) <= got)
    assert "192.0.2.99/32" not in fab.upstream_prefixes()
    assert not driver.reconcile(desired).plan
    driver.reconcile({P("192.0.2.31/32"): False})
    fab.wait_upstream(lambda got: got & set(prefixes) == {"192.0.2.31/32"})
    # Shards that just lost their last prefix keep the gate closed (an
    # empty FRR prefix-list would permit everything).
    time.sleep(1.5)
    assert "192.0.2.99/32" not in fab.upstream_prefixes()
    for p in [*prefixes, "192.0.2.99/32"]:
        fab.del_route(p)


def test_commit_without_changes_is_success(driver: GrpcDriver) -> None:
    entry = f"{GATE.rmap_entry_xpath(4, 0)}/action"
    assert driver.commit(Edit(update=((entry, "permit"),))) is None


def test_graceful_shutdown_is_one_small_commit(grpc_fabric: Fabric, driver: GrpcDriver) -> None:
    fab = grpc_fabric
    fab.add_route("192.0.2.50/32")
    fab.add_route("2001:db8:100::50/128")
    both = [P("192.0.2.50/32"), P("2001:db8:100::50/128")]
    driver.reconcile(dict.fromkeys(both, False))
    fab.wait_upstream(lambda got: {"192.0.2.50/32", "2001:db8:100::50/128"} <= got)
    result = driver.reconcile(dict.fromkeys(both, True))
    assert result.announced == dict.fromkeys(both, True)
    deadline = time.monotonic() + 10
    while not all("graceful-shutdown" in fab.upstream_communities(str(p)) for p in both):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    driver.reconcile(dict.fromkeys(both, False))
    while any("graceful-shutdown" in fab.upstream_communities(str(p)) for p in both):
        assert time.monotonic() < deadline + 10
        time.sleep(0.1)
    for p in both:
        fab.del_route(str(p))


def test_a_few_hundred_in_one_commit(grpc_fabric: Fabric, driver: GrpcDriver) -> None:
    fab = grpc_fabric
    prefixes = [f"198.18.{i // 250 + 100}.{i % 250 + 1}/32" for i in range(500)]
    fab.add_routes(prefixes)
    result = driver.reconcile({P(p): False for p in prefixes})
    assert len(result.plan.announce) == 500
    fab.wait_upstream(lambda got: set(prefixes) <= got, timeout=30)
    driver.reconcile({})
    fab.wait_upstream(lambda got: not (got & set(prefixes)), timeout=30)
    batch = fab.host.workdir / "del.batch"
    batch.write_text("".join(f"route del {p} dev cloudbr0\n" for p in prefixes))
    fab.host.ns_exec(["ip", "-batch", str(batch)])


def test_bgpd_restart(grpc_fabric: Fabric, driver: GrpcDriver) -> None:
    fab = grpc_fabric
    fab.add_route("192.0.2.60/32")
    driver.reconcile({P("192.0.2.60/32"): False})
    fab.host.kill("bgpd")
    with pytest.raises(FrrUnavailable):
        driver.read()  # retried for 3 s, then a clear error
    # bgpd comes back without the route-maps: the driver restores them too
    fab.host.start("bgpd", grpc_bgpd_config(with_route_maps=False), ("-M", f"grpc:{GRPC_PORT}"))
    started = time.monotonic()
    result = driver.reconcile({P("192.0.2.60/32"): False})
    assert result.plan.announce
    # Speed is reported, never asserted (benchmarks print numbers).
    print(f"re-announced {time.monotonic() - started:.3f} s after bgpd was started again")
    assert all(driver.read_state().rmap_ok.values())
    fab.wait_established()
    fab.wait_upstream(lambda got: "192.0.2.60/32" in got)
    fab.del_route("192.0.2.60/32")
