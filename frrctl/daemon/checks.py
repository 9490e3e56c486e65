"""The repair windows' decisions, pure: each check is fed what was read (and the
time) and says what to do. A difference must be seen twice in a row before it
counts (an event, a route or a session may just be in flight); repairs keep a
cooldown. The reads and the repairs themselves are the loop's (thin I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from frrctl.pools import IPNetwork

# Seconds between two repairs of the same neighbour's lost BFD session.
BFD_REPAIR_RETRY = 10.0
MISMATCH_WINDOW = 600.0  # two kernel view mismatches within this: unhealthy
STALE_AFTER = 3.0  # a prefix leaves bgpd's table ~1 s after its gate closes


def bfd_sessions_lost(neighbors: Mapping[str, Any], bfd_peers: list[Any]) -> set[str]:
    """Established BGP neighbours with BFD configured that bfdd has no session
    for (from `show bgp neighbors json` and `show bfd peers json`)."""
    have = {str(p.get("peer")) for p in bfd_peers if isinstance(p, dict)}
    return {
        address
        for address, info in neighbors.items()
        if isinstance(info, dict)
        and info.get("peerBfdInfo")
        and info.get("bgpState") == "Established"
        and address not in have
    }


@dataclass
class Liveness:
    """The kernel's routes against the watcher's view (see Daemon._check_liveness)."""

    interval: float = 10.0
    confirm: float = 1.0
    next_at: float = 0.0
    suspect: frozenset[Any] = frozenset()
    ok: bool = True
    mismatches: int = 0
    times: list[float] = field(default_factory=list)  # of confirmed mismatches

    def start(self, now: float, fast: bool) -> None:
        """A check begins: the next one in `interval` (or `confirm` when `fast`)."""
        self.next_at = now + (self.confirm if fast else self.interval)

    def inconclusive(self, now: float) -> None:
        self.next_at = now + self.confirm

    def observe(self, now: float, differs: frozenset[Any]) -> bool:
        """True when a difference is confirmed: the view must be resynced now."""
        confirmed = differs & self.suspect
        self.suspect = differs - confirmed
        if not differs:
            self.times = [t for t in self.times if now - t < MISMATCH_WINDOW]
            self.ok = len(self.times) < 2
            return False
        self.next_at = now + self.confirm  # confirm it soon (or: the resync must cure it)
        if not confirmed:
            return False
        self.mismatches += 1
        self.times = [t for t in self.times if now - t < MISMATCH_WINDOW] + [now]
        self.ok = False
        self.suspect = frozenset()
        return True


@dataclass
class DefaultsRepair:
    """Default routes bgpd holds as best but the kernel lacks (a zebra restart)."""

    cooldown: float = 2.0
    suspect: frozenset[int] = frozenset()
    missing: frozenset[int] = frozenset()  # confirmed
    next_fix: float = 0.0
    reinstalls: int = 0

    def clear(self) -> None:
        self.suspect = self.missing = frozenset()

    def observe(self, now: float, best: Iterable[int], kernel: frozenset[int]) -> frozenset[int]:
        """The IP versions to repair now (empty: none, or within the cooldown)."""
        missing = frozenset(set(best) - kernel)
        confirmed = missing & self.suspect
        self.suspect = missing
        self.missing = confirmed
        if not confirmed or now < self.next_fix:
            return frozenset()
        self.next_fix = now + self.cooldown
        self.reinstalls += 1
        return confirmed


@dataclass
class BfdRepair:
    """BGP neighbours whose BFD session bfdd lost; repaired every BFD_REPAIR_RETRY."""

    retry: float = BFD_REPAIR_RETRY
    suspect: set[str] = field(default_factory=set)
    lost: set[str] = field(default_factory=set)  # confirmed
    fixed_at: dict[str, float] = field(default_factory=dict)
    repairs: int = 0

    def observe(self, now: float, lost: set[str]) -> list[str]:
        """The neighbours to repair now: confirmed, and not repaired within `retry`
        (a repair made while bgpd still reconnects to zebra is lost too)."""
        confirmed = lost & self.suspect
        self.suspect = lost
        self.lost = confirmed
        return sorted(a for a in confirmed if now - self.fixed_at.get(a, -1e9) >= self.retry)

    def repaired(self, now: float, address: str) -> None:
        self.fixed_at[address] = now
        self.repairs += 1


@dataclass
class Confirmed:
    """A set of prefixes that counts once seen in two checks in a row."""

    suspect: set[IPNetwork] = field(default_factory=set)
    confirmed: set[IPNetwork] = field(default_factory=set)

    def observe(self, seen: set[IPNetwork]) -> bool:
        """True when the confirmed set changed to a non-empty one (alert on it)."""
        confirmed = seen & self.suspect
        self.suspect = seen
        alert = bool(confirmed) and confirmed != self.confirmed
        self.confirmed = confirmed
        return alert


@dataclass
class TableRepair:
    """Announced prefixes missing from bgpd's table (refresh when seen twice in a
    row), and prefixes bgpd still announces that nobody can withdraw."""

    suspect: set[IPNetwork] = field(default_factory=set)
    stale_seen: dict[IPNetwork, float] = field(default_factory=dict)
    stale_alerted: set[IPNetwork] = field(default_factory=set)

    def to_refresh(self, missing: set[IPNetwork]) -> set[IPNetwork]:
        fix = missing & self.suspect
        self.suspect = missing - fix
        return fix

    def stale_due(self, now: float) -> set[IPNetwork]:
        """Stale prefixes seen for STALE_AFTER (bgpd had its time to drop them)."""
        return {p for p, since in self.stale_seen.items() if now - since >= STALE_AFTER}

    def stale(self, now: float, stale: set[IPNetwork]) -> set[IPNetwork]:
        """Stale prefixes to alert on now (still there STALE_AFTER later, and new)."""
        self.stale_seen = {p: self.stale_seen.get(p, now) for p in stale}
        confirmed = {p for p, since in self.stale_seen.items() if now - since >= STALE_AFTER}
        if confirmed and confirmed != self.stale_alerted:
            self.stale_alerted = confirmed
            return confirmed
        return set()


# ospf6d registers again OSPF_MIN_LS_INTERVAL (5 s) after a route-map change
# (frrctl.frr.staticd.nudge_commands): withdraw through zebra only after that.
REGISTER_SETTLE = 6.0
# Between two nudges while stale prefixes stay: one made before ospf6d is back
# on zebra (its zclient reconnects ~10 s after zebra went) is lost, and one
# more once it is registered costs nothing (zebra dedups the registration).
REGISTER_RETRY = 8.0
WITHDRAW_RETRY = 2.0  # between two withdraw attempts of the same stale prefixes
# Stale this long after first confirmed: the repair failed (reconnect 10 s +
# a nudge cycle 8 s + settle 6 s, and a margin)
WITHDRAW_BOUND = 35.0
# A difference counts once seen in two checks in a row spanning this long:
# longer than OSPF's MinLSInterval (5 s), which may delay an LSA for a prefix
# withdrawn and announced again quickly.
CONFIRM_AFTER = 6.0
# After a zebra restart the OSPF daemons stay unregistered until they restart
# (FRR 8.4.4): a prefix announced long after the repair window must be
# checked too.
WATCH_INTERVAL = 10.0


@dataclass(frozen=True)
class RedistAction:
    """What to do after one look at the OSPF daemons' redistribution."""

    register: bool = False  # nudge ospf6d to register with zebra again
    withdraw: frozenset[IPNetwork] = frozenset()  # ospf6d's stale, through zebra now
    alert_missing: dict[str, frozenset[IPNetwork]] = field(default_factory=dict)
    alert_stale: dict[str, frozenset[IPNetwork]] = field(default_factory=dict)


@dataclass
class RedistRepair(Confirmed):
    """OSPF redistribution after a zebra restart (FRR 8.4.4, see
    frrctl.frr.staticd): a difference counts when seen in two checks in a row
    CONFIRM_AFTER apart, and `confirmed` (every daemon's missing and stale)
    keeps status unhealthy until it is gone. ospf6d's stale prefixes are
    repaired: nudge it to register (every REGISTER_RETRY while they stay),
    REGISTER_SETTLE after a nudge withdraw them through zebra, alert if still
    there WITHDRAW_BOUND after they were confirmed. Nothing cures the rest
    without restarting the daemon (a flap): missing prefixes (ospf6d drops routes redistributed
    after the restart; ospfd is not registered) and ospfd's stale ones are
    alerted at once."""

    seen: dict[tuple[str, str], dict[IPNetwork, float]] = field(default_factory=dict)
    watching: bool = False  # a zebra restart was seen: check every WATCH_INTERVAL
    next_watch: float = 0.0
    alerted: dict[tuple[str, str], frozenset[IPNetwork]] = field(default_factory=dict)
    registered_at: float | None = None
    withdrawn_at: float = -1e9
    stale_since: float | None = None  # ospf6d's stale first confirmed
    registers: int = 0
    withdrawals: int = 0

    def watch_due(self, now: float) -> bool:
        if not self.watching or now < self.next_watch:
            return False
        self.next_watch = now + WATCH_INTERVAL
        return True

    def _confirm(
        self, key: tuple[str, str], seen: frozenset[IPNetwork], now: float
    ) -> frozenset[IPNetwork]:
        """Seen in this check and the one before, first seen CONFIRM_AFTER ago."""
        before = self.seen.get(key, {})
        self.seen[key] = {p: before.get(p, now) for p in seen}
        return frozenset(p for p in seen if p in before and now - before[p] >= CONFIRM_AFTER)

    def _alert(self, key: tuple[str, str], confirmed: frozenset[IPNetwork]) -> bool:
        """Alert once per new non-empty set; forget it once cured."""
        if not confirmed:
            self.alerted.pop(key, None)
            return False
        if confirmed <= self.alerted.get(key, frozenset()):
            return False
        self.alerted[key] = confirmed
        return True

    def decide(self, now: float, checks: Iterable[Any]) -> RedistAction:
        """`checks`: the announcer's Redistributed per daemon (daemon, missing, stale)."""
        register = False
        withdraw: frozenset[IPNetwork] = frozenset()
        alert_missing: dict[str, frozenset[IPNetwork]] = {}
        alert_stale: dict[str, frozenset[IPNetwork]] = {}
        confirmed: set[IPNetwork] = set()
        six_stale: frozenset[IPNetwork] = frozenset()
        for check in checks:
            missing = self._confirm((check.daemon, "missing"), frozenset(check.missing), now)
            stale = self._confirm((check.daemon, "stale"), frozenset(check.stale), now)
            confirmed |= missing | stale
            if self._alert((check.daemon, "missing"), missing):
                alert_missing[check.daemon] = missing
            if check.daemon == "ospf6d":
                six_stale = stale
            elif self._alert((check.daemon, "stale"), stale):
                alert_stale[check.daemon] = stale
        self.suspect = set()
        self.confirmed = confirmed
        if not six_stale:
            self.stale_since = None
            self.alerted.pop(("ospf6d", "stale"), None)
            return RedistAction(False, frozenset(), alert_missing, alert_stale)
        if self.stale_since is None:
            self.stale_since = now
        if self.registered_at is None or now - self.registered_at >= REGISTER_RETRY:
            register = True
            self.registered_at = now
            self.registers += 1
        elif (
            now - self.registered_at >= REGISTER_SETTLE
            and now - self.withdrawn_at >= WITHDRAW_RETRY
        ):
            withdraw = six_stale
            self.withdrawn_at = now
            self.withdrawals += 1
        if now - self.stale_since >= WITHDRAW_BOUND and self._alert(("ospf6d", "stale"), six_stale):
            alert_stale["ospf6d"] = six_stale
        return RedistAction(register, withdraw, alert_missing, alert_stale)
