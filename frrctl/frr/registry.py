"""The one place that knows the back ends by name: driver name -> announcer.

The daemon asks `make_announcer` for its announcer and `uses_grpc` whether to
close the gRPC port, the renderer `uses_staticd` what FRR redistributes;
nothing else anywhere branches on a driver's name.
A new back end is one entry in DRIVERS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frrctl.errors import UsageError
from frrctl.frr.base import AnnounceDriver, RetryPolicy


@dataclass(frozen=True)
class AnnouncerSpec:
    """What a back end is built from (a subset of the daemon's settings)."""

    bridge: str
    vty_dir: Path
    asn: int | None = None
    grpc_target: str = "127.0.0.1:50051"
    grpc_shards: int = 64
    runs_bgp: bool = True
    ospf_versions: tuple[int, ...] = ()


# Short per-call retries: the daemon's loop does the long-term retrying, and
# stays responsive (kernel events, status) while FRR is away.
RETRY = RetryPolicy(deadline=0.3, first_wait=0.02, max_wait=0.1)


def _vtysh(spec: AnnouncerSpec) -> AnnounceDriver:
    """bgpd `network` statements on a BGP-only host. A host that runs OSPF gets
    staticd routes over staticd's vty instead, for BGP and both OSPFs alike:
    ospfd/ospf6d redistribute them (rendered `redistribute static`), so every
    refusal is a route that is not in staticd and never reaches an LSDB."""
    if spec.ospf_versions:
        from frrctl.frr.staticd import StaticdVtyDriver, StaticLayout

        return StaticdVtyDriver(
            spec.vty_dir,
            layout=StaticLayout(bridge=spec.bridge),
            retry=RETRY,
            bgp=spec.runs_bgp,
            ospf6=6 in spec.ospf_versions,
            ospf=4 in spec.ospf_versions,
        )
    from frrctl.frr.vtysh import VtyshDriver

    if spec.asn is None:
        raise UsageError("the vtysh driver needs the host's asn")
    return VtyshDriver(spec.vty_dir, spec.asn, retry=RETRY)


def _grpc_static(spec: AnnouncerSpec) -> AnnounceDriver:
    from frrctl.frr.staticd import StaticdDriver, StaticLayout

    return StaticdDriver(
        spec.grpc_target,
        layout=StaticLayout(bridge=spec.bridge),
        retry=RETRY,
        rpc_timeout=10.0,
        vty_dir=spec.vty_dir,
        bgp=spec.runs_bgp,
        ospf6=6 in spec.ospf_versions,  # the redistribution-lost check after zebra restarts
        ospf=4 in spec.ospf_versions,
    )


@dataclass(frozen=True)
class Backend:
    build: Callable[[AnnouncerSpec], AnnounceDriver]
    grpc: bool  # talks to FRR's northbound gRPC port (the daemon firewalls it)
    staticd: bool  # announces staticd routes on every host (else only where OSPF runs)


DRIVERS: dict[str, Backend] = {
    "vtysh": Backend(_vtysh, grpc=False, staticd=False),
    "grpc": Backend(_grpc_static, grpc=True, staticd=True),
}


def backend(driver: str) -> Backend:
    try:
        return DRIVERS[driver]
    except KeyError:
        names = ", ".join(DRIVERS)
        raise UsageError(f"unknown driver {driver!r} ({names})") from None


def uses_grpc(driver: str) -> bool:
    return backend(driver).grpc


def uses_staticd(driver: str, runs_ospf: bool) -> bool:
    """Whether the driver's announcements are staticd routes on such a host (what
    frrctl.render writes `redistribute static` for): always on an OSPF host,
    where one mechanism serves BGP and both OSPFs."""
    return runs_ospf or backend(driver).staticd


def make_announcer(driver: str, spec: AnnouncerSpec) -> AnnounceDriver:
    """The one announcer of a host, serving every protocol it runs."""
    back = backend(driver)  # an unknown name is refused on every host
    if not spec.runs_bgp and not spec.ospf_versions:
        raise UsageError("the host runs neither BGP nor OSPF: nothing to announce")
    return back.build(spec)
