"""The repairs after a zebra restart that go through the announcer: bgpd's
table (refresh what it lacks, alert on what it cannot withdraw) and a protocol
daemon's lost redistribution (ospf6d). The judgements are checks' trackers."""

from __future__ import annotations

import logging

from frrctl.daemon.checks import Confirmed, TableRepair
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
    announcer: AnnounceDriver, desired: Announced, lost: Confirmed, metrics: Metrics
) -> None:
    """Alert on announced prefixes a protocol daemon does not redistribute, seen
    twice in a row (OspfAdmission.redistribution_lost: ospf6d after zebra restarts)."""
    try:
        missing = announcer.redistribution_lost(desired)
    except DriverError as exc:
        log.warning("check after a zebra restart: %s", exc)
        return
    if missing is not None and lost.observe(missing):
        metrics.errors.labels("ospf6-redistribution-lost").inc(len(lost.confirmed))
        log.error(
            "ALERT: ospf6d does not redistribute announced prefixes since zebra "
            "restarted (FRR 8.4 loses its registration); restart ospf6d",
            extra={"fields": {"prefixes": _sample(lost.confirmed)}},
        )
