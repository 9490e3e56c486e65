"""The daemon's typed status, built from the reconciler's state (pure)."""

from __future__ import annotations

from collections.abc import Mapping

from frrctl.daemon.reconciler import Reconciler
from frrctl.policy import Verdict, prefix_key
from frrctl.pools import IPNetwork
from frrctl.status import DaemonStatus, PrefixStatus


def _sorted(prefixes: object) -> list[str]:
    return [str(p) for p in sorted(prefixes, key=prefix_key)]  # type: ignore[call-overload]


def prefix_status(
    prefix: IPNetwork,
    verdict: Verdict | None,
    kernel: Mapping[IPNetwork, list[str]],
    frr: Mapping[IPNetwork, bool],
    advertised: Mapping[str, list[str]],
) -> PrefixStatus:
    return PrefixStatus(
        prefix=str(prefix),
        verdict=verdict.code.value if verdict else "unknown",
        reason=verdict.reason if verdict else "not judged yet",
        announce=verdict.announce if verdict else False,
        graceful=verdict.graceful_shutdown if verdict else False,
        in_kernel=prefix in kernel,
        kernel_interfaces=sorted(kernel.get(prefix, [])),
        in_frr=prefix in frr,
        frr_graceful=frr.get(prefix),
        advertised_to=advertised.get(str(prefix), []),
    )


def build_status(
    rec: Reconciler,
    frr: Mapping[IPNetwork, bool],
    daemons_down: set[str],
    advertised: Mapping[str, list[str]],
) -> DaemonStatus:
    """Every candidate prefix (kernel, verdict and reason, FRR, advertised to) and
    the daemon's health; `frr` is what FRR announces (read now if it was unknown)."""
    s = rec.settings
    snap = rec.snapshot
    kernel: dict[IPNetwork, list[str]] = {}
    for route in snap.routes if snap else ():
        kernel.setdefault(route.prefix, []).append(route.ifname or "multipath")
    verdicts = {v.prefix: v for v in (rec.decision.verdicts if rec.decision else ())}
    prefixes = sorted(set(kernel) | set(verdicts) | set(frr), key=prefix_key)
    live = rec.liveness
    healthy = (
        rec.frr_up
        and not daemons_down
        and rec.unverified_since is None
        and live.ok
        and not rec.defaults.missing
        and not rec.bfd.lost
        and not rec.ospf6.confirmed
        and rec.last_error is None
    )
    return DaemonStatus(
        host=s.hostname,
        driver=s.driver,
        bridge=s.bridge,
        frr_up=rec.frr_up,
        frr_daemons_down=sorted(daemons_down),
        drain=rec.operator.drain.value,
        held=_sorted(rec.operator.held),
        max_prefixes=s.max_prefixes,
        require_neighbor=s.require_neighbor,
        announced_count=len(frr),
        frr_state_verified=rec.unverified_since is None and live.ok,
        kernel_view_ok=live.ok,
        kernel_view_mismatches=live.mismatches,
        kernel_defaults_missing=sorted(rec.defaults.missing),
        defaults_reinstalls=rec.defaults.reinstalls,
        bfd_sessions_lost=sorted(rec.bfd.lost),
        bfd_repairs=rec.bfd.repairs,
        ospf_not_redistributed=_sorted(rec.ospf6.confirmed),
        healthy=bool(healthy),
        alerts=list(rec.decision.alerts) if rec.decision else [],
        last_error=rec.last_error,
        last_batch=rec.last_plan,
        last_batch_seconds=rec.last_batch_seconds,
        netlink_generation=snap.generation if snap else 0,
        bridge_up=snap.bridge_up if snap else False,
        prefixes=[prefix_status(p, verdicts.get(p), kernel, frr, advertised) for p in prefixes],
    )
