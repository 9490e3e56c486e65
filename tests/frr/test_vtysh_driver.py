"""vtysh driver against real bgpd (Debian's FRR), checked at a real upstream peer."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from frrctl.frr.base import DriverError, FrrUnavailable, RetryPolicy
from frrctl.frr.vtysh import VtyshDriver
from frrctl.policy import parse_prefix

from .conftest import HOST_ASN, Fabric, host_bgpd_config, needs_frr

pytestmark = [needs_frr, pytest.mark.lab]
P = parse_prefix


@pytest.fixture
def driver(debian_fabric: Fabric) -> Iterator[VtyshDriver]:
    drv = VtyshDriver(debian_fabric.host.vtydir, HOST_ASN, retry=RetryPolicy(deadline=2))
    try:
        yield drv
        drv.reconcile({})
    finally:
        drv.close()


def test_announce_withdraw_and_read_back(debian_fabric: Fabric, driver: VtyshDriver) -> None:
    fab = debian_fabric
    fab.add_route("192.0.2.30/32")
    fab.add_route("2001:db8:100::80/128")
    desired = {P("192.0.2.30/32"): False, P("2001:db8:100::80/128"): False}
    result = driver.reconcile(desired)
    assert result.announced == desired
    assert driver.read() == desired  # read back from bgpd, not remembered
    fab.wait_upstream(lambda got: {"192.0.2.30/32", "2001:db8:100::80/128"} <= got)
    # idempotent: nothing to do the second time
    assert not driver.reconcile(desired).plan
    result = driver.reconcile({P("192.0.2.30/32"): False})
    assert result.plan.withdraw == (P("2001:db8:100::80/128"),)
    fab.wait_upstream(lambda got: "2001:db8:100::80/128" not in got and "192.0.2.30/32" in got)
    fab.del_route("192.0.2.30/32")
    fab.del_route("2001:db8:100::80/128")


def test_import_check_keeps_missing_kernel_routes_unannounced(
    debian_fabric: Fabric, driver: VtyshDriver
) -> None:
    fab = debian_fabric
    driver.reconcile({P("192.0.2.40/32"): False})  # no kernel route yet
    time.sleep(1)
    assert "192.0.2.40/32" not in fab.upstream_prefixes()
    fab.add_route("192.0.2.40/32")
    fab.wait_upstream(lambda got: "192.0.2.40/32" in got)
    fab.del_route("192.0.2.40/32")
    fab.wait_upstream(lambda got: "192.0.2.40/32" not in got)


def test_graceful_shutdown_marks_without_withdraw(
    debian_fabric: Fabric, driver: VtyshDriver
) -> None:
    fab = debian_fabric
    fab.add_route("192.0.2.50/32")
    driver.reconcile({P("192.0.2.50/32"): False})
    fab.wait_upstream(lambda got: "192.0.2.50/32" in got)
    assert "graceful-shutdown" not in fab.upstream_communities("192.0.2.50/32")
    result = driver.reconcile({P("192.0.2.50/32"): True})
    assert result.announced == {P("192.0.2.50/32"): True}
    deadline = time.monotonic() + 10
    while "graceful-shutdown" not in fab.upstream_communities("192.0.2.50/32"):
        assert time.monotonic() < deadline, fab.upstream_communities("192.0.2.50/32")
        time.sleep(0.1)
    driver.reconcile({P("192.0.2.50/32"): False})
    assert driver.read() == {P("192.0.2.50/32"): False}
    fab.del_route("192.0.2.50/32")


def test_ten_thousand_in_one_batch(debian_fabric: Fabric, driver: VtyshDriver) -> None:
    fab = debian_fabric
    prefixes = [f"198.18.{i // 250 + 100}.{i % 250 + 1}/32" for i in range(10_000)]
    fab.add_routes(prefixes)
    desired = {P(p): False for p in prefixes}
    started = time.monotonic()
    result = driver.reconcile(desired)
    assert len(result.plan.announce) == 10_000
    fab.wait_upstream(lambda got: len(got) >= 10_000, timeout=60)
    print(
        f"vtysh: 10,000 prefixes applied in {result.apply_seconds:.2f} s, "
        f"at the upstream after {time.monotonic() - started:.2f} s"
    )
    driver.reconcile({})
    fab.wait_upstream(lambda got: not got, timeout=60)
    batch = fab.host.workdir / "del.batch"
    batch.write_text("".join(f"route del {p} dev cloudbr0\n" for p in prefixes))
    fab.host.ns_exec(["ip", "-batch", str(batch)])


def test_bgpd_restart_is_survived(debian_fabric: Fabric, driver: VtyshDriver) -> None:
    fab = debian_fabric
    fab.add_route("192.0.2.60/32")
    driver.reconcile({P("192.0.2.60/32"): False})
    fab.host.kill("bgpd")
    with pytest.raises(FrrUnavailable):
        driver.read()  # retried for 2 s, then a clear error, not a crash
    fab.host.start("bgpd", host_bgpd_config())
    assert driver.read() == {}  # a fresh bgpd has forgotten everything
    driver.reconcile({P("192.0.2.60/32"): False})  # and the driver re-announces
    fab.wait_established()
    fab.wait_upstream(lambda got: "192.0.2.60/32" in got)
    fab.del_route("192.0.2.60/32")


def test_missing_bgp_instance_is_an_error_not_a_new_instance(debian_fabric: Fabric) -> None:
    drv = VtyshDriver(debian_fabric.host.vtydir, 65000, retry=RetryPolicy(deadline=1))
    with pytest.raises(DriverError, match="no 'router bgp 65000'"):
        drv.reconcile({P("192.0.2.70/32"): False})
    assert "router bgp 65000" not in debian_fabric.host.vtysh("show running-config")
    drv.close()
