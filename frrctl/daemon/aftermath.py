"""The repairs after a zebra restart that go through the announcer: bgpd's
table (refresh what it lacks, alert on what it cannot withdraw) and the OSPF
daemons' redistribution (withdraw ospf6d's stale prefixes, alert on the rest).
The judgements are checks' trackers."""

from __future__ import annotations

import logging

from frrctl.daemon.checks import RedistRepair, TableRepair
from frrctl.frr.base import AnnounceDriver, DriverError
from frrctl.metrics import Metrics
from frrctl.policy import Announced, prefix_key
from frrctl.pools import IPNetwork

log = logging.getLogger("frrctl.daemon")


def _sample(prefixes: set[IPNetwork]) -> list[str]:
    return [str(p) for p in sorted(prefixes, key=prefix_key)]


def repair_table(
    announcer: AnnounceDriver,
    desired: set[IPNetwork],
    table: TableRepair,
    metrics: Metrics,
    now: float,
) -> bool:
    """Refresh announced prefixes bgpd lacks although the kernel has them
    (`network` statements stuck unresolved, see VtyshDriver.invalid; or kernel
    redistribution not registered again) when found missing twice in a row;
    alert on ones it cannot withdraw. True when it refreshed: re-read FRR."""
    try:
        announcer.reregister(sorted(desired, key=prefix_key))
        check = announcer.check_table()
    except DriverError as exc:
        log.warning("repair after a zebra restart: %s", exc)
        return False
    if check is None:
        return False
    stale = table.stale(now, set(check.stale) - desired)
    due = table.stale_due(now)
    if due:
        try:
            withdrawn = announcer.withdraw_stale(sorted(due, key=prefix_key))
        except DriverError as exc:
            log.warning("repair after a zebra restart: %s", exc)
            withdrawn = False
        if withdrawn:
            metrics.errors.labels("bgp-table-stale").inc(len(due))
            log.warning(
                "bgpd still announces prefixes withdrawn while zebra was restarting; "
                "withdrawing them through zebra (%s driver)",
                announcer.name,
                extra={"fields": {"prefixes": _sample(due)}},
            )
            return True
    if stale:
        metrics.errors.labels("bgp-table-stale").inc(len(stale))
        log.error(
            "ALERT: bgpd still announces prefixes whose kernel routes went while zebra "
            "was restarting; FRR 8.4 gives no way to withdraw them but restarting bgpd",
            extra={"fields": {"prefixes": _sample(stale)}},
        )
    fix = table.to_refresh(set(check.missing) & desired)
    if not fix:
        return False
    metrics.errors.labels("bgp-table-missing").inc(len(fix))
    log.warning(
        "bgpd lacks announced prefixes although the kernel has them (zebra restarted); "
        "asking bgpd to resolve them again (%s driver)",
        announcer.name,
        extra={"fields": {"prefixes": _sample(fix)}},
    )
    try:
        announcer.refresh(sorted(fix, key=prefix_key))
    except DriverError as exc:
        log.warning("repair after a zebra restart: %s", exc)
        return False
    return True


def check_redistribution(
    announcer: AnnounceDriver,
    desired: Announced,
    repair: RedistRepair,
    metrics: Metrics,
    now: float,
) -> bool:
    """The OSPF daemons' redistribution after a zebra restart (RedistRepair
    decides): nudge ospf6d to register again, withdraw its stale prefixes
    through zebra, alert on what no repair can cure. True when it changed
    staticd's routes (the loop reads FRR again)."""
    try:
        checks = announcer.redistribution(desired)
    except DriverError as exc:
        log.warning("check after a zebra restart: %s", exc)
        return False
    if checks is None:
        return False
    action = repair.decide(now, checks)
    for daemon, missing in action.alert_missing.items():
        _alert(metrics, "lost", daemon, missing, _LOST, _WHY[daemon])
    for daemon, stale in action.alert_stale.items():
        _alert(metrics, "stale", daemon, stale, _STALE)
    touched = False
    try:
        if action.register and announcer.register_redistribution():
            log.warning(
                "ospf6d still redistributes prefixes withdrawn while zebra was restarting; "
                "nudging it to register with zebra again (a no-op route-map change)",
                extra={
                    "fields": {"prefixes": _sample(set(repair.seen.get(("ospf6d", "stale"), {})))}
                },
            )
        if action.withdraw:
            touched = announcer.withdraw_redistributed(sorted(action.withdraw, key=prefix_key))
            if touched:
                metrics.errors.labels("ospf6-redistribution-stale").inc(len(action.withdraw))
                log.warning(
                    "withdrawing them through zebra (%s driver)",
                    announcer.name,
                    extra={"fields": {"prefixes": _sample(set(action.withdraw))}},
                )
    except DriverError as exc:
        log.warning("repair after a zebra restart: %s", exc)
    return touched


def _alert(
    metrics: Metrics,
    kind: str,
    daemon: str,
    prefixes: frozenset[IPNetwork],
    message: str,
    *why: str,
) -> None:
    """An ALERT on an OSPF daemon's redistribution (`message` names the daemon
    twice, then `why`), counted in the `<ospf|ospf6>-redistribution-<kind>` error."""
    metrics.errors.labels(f"{daemon.removesuffix('d')}-redistribution-{kind}").inc(len(prefixes))
    log.error(message, daemon, daemon, *why, extra={"fields": {"prefixes": _sample(set(prefixes))}})


_LOST = (
    "ALERT: %s does not redistribute announced prefixes since zebra restarted; "
    "FRR 8.4 cannot register it again without a restart of %s (%s)"
)
_STALE = (
    "ALERT: %s still redistributes prefixes withdrawn while zebra was restarting; "
    "only a restart of %s withdraws them"
)
_WHY = {
    "ospf6d": "it ignores every route zebra redistributes after its zclient bitmaps were freed",
    "ospfd": "`redistribute static` again is an update that does not register",
}
