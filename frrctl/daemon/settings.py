"""The daemon's settings: the host's inventory entry and the command line."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frrctl.errors import UsageError
from frrctl.frr.registry import AnnouncerSpec
from frrctl.pools import Pools

log = logging.getLogger("frrctl.daemon")


@dataclass(frozen=True)
class DaemonSettings:
    """Everything the daemon needs, from the host's inventory entry and the command line."""

    hostname: str
    asn: int | None
    bridge: str
    pools: Pools
    driver: str  # a name in frrctl.frr.registry.DRIVERS
    max_prefixes: int
    require_neighbor: bool
    vty_dir: Path
    state_dir: Path
    grpc_target: str = "127.0.0.1:50051"
    grpc_port: int = 50051
    grpc_guard: bool = True  # nftables: the gRPC port only from the host itself
    runs_bgp: bool = True
    ospf_versions: tuple[int, ...] = ()  # 4: ospfd, 6: ospf6d (only-cloud gate)
    grpc_shards: int = 64
    metrics_port: int | None = 9342
    verify_interval: float = 30.0
    verify_delay: float = 0.5  # read back this long after the last batch of a burst
    verify_max_delay: float = 2.0  # ... but never later than this after the first
    probe_interval: float = 0.1
    # Every this many seconds the kernel's routes are dumped and compared with
    # the watcher's view (a daemon that stopped hearing netlink must notice).
    liveness_interval: float = 10.0
    liveness_confirm: float = 1.0  # a difference must persist this long (events in flight)
    # After bgpd restarts, wait this long at most for its config load to end
    # before announcing (see GrpcDriver.config_loaded).
    config_wait: float = 5.0
    # Apply each batch in a worker thread: while FRR takes it, the loop reads
    # and judges the next part of a burst (only one batch is ever in flight).
    overlap: bool = True
    # Quiet time that ends a netlink burst. Every single change waits this long,
    # which OSPF shows in full (ospfd originates at once); a plug's IPv4 and
    # IPv6 routes come in one netlink batch, and a long burst is gathered
    # while a batch is in flight anyway (timing.gather_limit).
    window: float = 0.003
    max_window: float = 0.1

    def announcer_spec(self) -> AnnouncerSpec:
        return AnnouncerSpec(
            bridge=self.bridge,
            vty_dir=self.vty_dir,
            asn=self.asn,
            grpc_target=self.grpc_target,
            grpc_shards=self.grpc_shards,
            runs_bgp=self.runs_bgp,
            ospf_versions=self.ospf_versions,
        )

    @classmethod
    def from_inventory(
        cls,
        inventory: Path,
        hostname: str,
        vty_dir: Path,
        state_dir: Path,
        **overrides: Any,
    ) -> DaemonSettings:
        from frrctl.inventory import load_inventory

        fleet = load_inventory(inventory)
        host = fleet.host(hostname)
        ctl = host.controller
        if host.mode != "controller":
            log.warning(
                "host %s is in %s mode: FRR redistributes by itself; the daemon's policy "
                "only adds to it",
                hostname,
                host.mode,
            )
        ospf = tuple(v for v, on in ((4, host.runs_ospf), (6, host.runs_ospf6)) if on)
        if not host.runs_bgp and not ospf:
            raise UsageError(f"host {hostname!r} runs neither BGP nor OSPF: nothing to announce")
        settings = cls(
            hostname=hostname,
            asn=host.asn,
            bridge=fleet.fabric.bridge,
            pools=fleet.pools_of(host),
            driver=ctl.driver,
            max_prefixes=ctl.max_prefixes,
            require_neighbor=ctl.require_neighbor,
            vty_dir=vty_dir,
            state_dir=state_dir,
            grpc_target=f"127.0.0.1:{ctl.grpc_port}",
            grpc_port=ctl.grpc_port,
            metrics_port=ctl.metrics_port,
            runs_bgp=host.runs_bgp,
            ospf_versions=ospf,
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if clean.get("metrics_port") == 0:
            clean["metrics_port"] = None  # 0 turns the metrics endpoint off
        return dataclasses.replace(settings, **clean)
