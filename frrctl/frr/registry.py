"""The one place that knows the back ends by name: driver name -> announcer.

The daemon asks `make_announcer` for its announcer and `uses_grpc` whether to
close the gRPC port; nothing else anywhere branches on a driver's name.
A new back end is one entry in DRIVERS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frrctl.errors import UsageError
from frrctl.frr.base import AnnounceDriver, RetryPolicy
from frrctl.frr.composite import Composite, OspfAdmission
from frrctl.frr.ospf import OspfGate


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
    )


@dataclass(frozen=True)
class Backend:
    build: Callable[[AnnouncerSpec], AnnounceDriver]
    grpc: bool  # talks to FRR's northbound gRPC port (the daemon firewalls it)
    carries_ospf: bool = False  # its routes reach ospfd/ospf6d (built on OSPF-only hosts)


DRIVERS: dict[str, Backend] = {
    "vtysh": Backend(_vtysh, grpc=False),
    "grpc": Backend(_grpc_static, grpc=True, carries_ospf=True),
}


def backend(driver: str) -> Backend:
    try:
        return DRIVERS[driver]
    except KeyError:
        names = ", ".join(DRIVERS)
        raise UsageError(f"unknown driver {driver!r} ({names})") from None


def uses_grpc(driver: str) -> bool:
    return backend(driver).grpc


def make_announcer(driver: str, spec: AnnouncerSpec) -> AnnounceDriver:
    """The announcer for a host: the back end alone when it serves every protocol
    the host runs (BGP only, or a back end that carries OSPF too), the OSPF gates
    alone (an OSPF-only host whose back end does not carry OSPF), or both."""
    back = backend(driver)  # an unknown name is refused on every host
    if not spec.runs_bgp and not spec.ospf_versions:
        raise UsageError("the host runs neither BGP nor OSPF: nothing to announce")
    main = back.build(spec) if spec.runs_bgp or back.carries_ospf else None
    if main is not None and (main.carries_ospf or not spec.ospf_versions):
        return main
    ospf = OspfAdmission([OspfGate(spec.vty_dir, v, retry=RETRY) for v in spec.ospf_versions])
    return Composite(main, ospf) if main is not None else ospf
