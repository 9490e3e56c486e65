"""The one announcer interface, NAPALM style: read, compare, apply, verify.

A driver only ever reconciles against what it reads back from FRR: `read()`
asks the daemon, `reconcile()` diffs the desired set against that answer,
applies the difference as one batch and reads again to verify. Drivers keep
no announcement state of their own between calls, so a restarted FRR or a
restarted frrctl converges the same way.

The daemon calls only this interface, never a driver by name: `read` and
`apply` are required; every optional capability (config_loaded, check_table,
refresh, redistribution, min_metric, ...) is a method or attribute with a
default that means "this back end cannot / need not", as NAPALM's
NetworkDriver raises NotImplementedError or returns nothing. One announcer
serves every protocol of a host (frrctl.frr.registry picks it).
"""

from __future__ import annotations

import abc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

from frrctl.errors import FrrctlError
from frrctl.policy import Announced, Plan, diff, prefix_key
from frrctl.pools import IPNetwork

log = logging.getLogger(__name__)
T = TypeVar("T")


class DriverError(FrrctlError):
    """FRR refused a change or answered something the driver cannot use."""


class FrrUnavailable(DriverError):
    """FRR could not be reached (socket gone, daemon restarting): worth retrying."""


class VerifyError(DriverError):
    """After applying a batch, FRR's read-back state still differs from the desired set."""

    def __init__(self, message: str, plan: Plan) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass(frozen=True)
class RetryPolicy:
    """How long a driver keeps retrying an unreachable FRR before it gives up."""

    deadline: float = 10.0  # seconds for one operation, all attempts included
    first_wait: float = 0.05
    max_wait: float = 1.0

    def call(self, what: str, func: Callable[[], T]) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(FrrUnavailable),
            wait=tenacity.wait_exponential(multiplier=self.first_wait, max=self.max_wait),
            stop=tenacity.stop_after_delay(self.deadline),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "%s: FRR unavailable (%s), attempt %d, retrying",
                what,
                state.outcome.exception() if state.outcome else "?",
                state.attempt_number,
            ),
        )
        return retrying(func)


@dataclass(frozen=True)
class TableCheck:
    """bgpd's table against what frrctl announces (after a zebra restart)."""

    missing: list[IPNetwork]  # announced by frrctl, absent or unresolved in bgpd
    stale: list[IPNetwork] = field(default_factory=list)  # in bgpd, no longer frrctl's


@dataclass(frozen=True)
class Redistributed:
    """What one OSPF daemon redistributes against what frrctl announces (after a
    zebra restart, see frrctl.frr.staticd)."""

    daemon: str  # "ospfd" | "ospf6d"
    missing: frozenset[IPNetwork]  # announced, not redistributed
    stale: frozenset[IPNetwork]  # still redistributed, no longer announced


@dataclass(frozen=True)
class ReconcileResult:
    plan: Plan  # what was applied (empty: FRR already matched)
    announced: dict[IPNetwork, bool]  # read back from FRR after the batch
    apply_seconds: float


class AnnounceDriver(abc.ABC):
    """Announces host prefixes through FRR; see the module docstring."""

    name: str = "abstract"
    # The lowest kernel route metric this back end can announce (0: any). A
    # staticd route only wins over a kernel route whose metric is >= 2 << 24.
    min_metric: int = 0
    # Whether what it announces needs the bridge's carrier: zebra keeps a static
    # route to an interface without carrier inactive (not redistributed), so
    # the policy refuses such prefixes with a reason instead (Code.NO_CARRIER).
    needs_carrier: bool = False
    # FRR daemons, beyond zebra/bgpd/ospfd/ospf6d, that lose what it announced
    # when they restart: the daemon monitors them and reconciles when one is back.
    monitored_daemons: tuple[str, ...] = ()
    # Whether apply() returns only once FRR's running configuration holds the
    # whole batch (a transactional commit that answered OK). Then the read-back
    # after a burst adds nothing and is skipped: on a staticd holding 10,000
    # routes one read costs staticd about as much CPU as the commit itself, and
    # the loop would wait for it. The periodic check (verify_interval) still
    # reads FRR and finds anyone else's edit.
    confirms_apply: bool = False

    @abc.abstractmethod
    def read(self) -> dict[IPNetwork, bool]:
        """What FRR announces now for frrctl: prefix -> graceful_shutdown."""

    @abc.abstractmethod
    def apply(self, plan: Plan) -> None:
        """Apply one batch. Raise DriverError if any part of it failed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the driver may be used again afterwards."""

    # -- optional capabilities: the defaults say "nothing to do here" ----------
    def config_loaded(self) -> bool:
        """Whether a restarted FRR has its configuration loaded (True: cannot tell)."""
        return True

    def check_table(self) -> TableCheck | None:
        """bgpd's table against what is announced, after a zebra restart (None: no check)."""
        return None

    def refresh(self, prefixes: list[IPNetwork]) -> None:  # noqa: B027 - optional hook
        """Make FRR resolve these announced prefixes again (after check_table)."""

    def reregister(self, prefixes: list[IPNetwork]) -> None:  # noqa: B027 - optional hook
        """After a zebra restart: have the protocol daemons register again with
        the new zebra whatever carries these prefixes to them. Called every
        repair round while the window is open: cheap and idempotent."""

    def withdraw_stale(self, prefixes: list[IPNetwork]) -> bool:
        """Make bgpd withdraw prefixes it still announces although nothing
        announces them any more (check_table's stale, after a zebra restart).
        False: this back end cannot (the daemon alerts instead)."""
        return False

    def redistribution(self, desired: Announced) -> list[Redistributed] | None:
        """Per OSPF daemon: what it fails to redistribute and what it still
        redistributes (after a zebra restart); None: this announcer has no check."""
        return None

    def register_redistribution(self) -> bool:
        """Have the OSPF daemons register their redistribution with zebra again
        (it takes effect some seconds later). False: this back end cannot."""
        return False

    def withdraw_redistributed(self, prefixes: list[IPNetwork]) -> bool:
        """Make the registered OSPF daemons withdraw prefixes they still
        redistribute although nothing announces them. False: cannot."""
        return False

    def compare(self, desired: Announced) -> Plan:
        return diff(desired, self.read())

    def reconcile(self, desired: Announced) -> ReconcileResult:
        """Make FRR announce exactly `desired`; raise VerifyError if it does not."""
        plan = diff(desired, self.read())
        if not plan:
            return ReconcileResult(plan, dict(desired), 0.0)
        started = time.perf_counter()
        self.apply(plan)
        elapsed = time.perf_counter() - started
        after = self.read()
        left = diff(desired, after)
        if left:
            sample = ", ".join(
                str(p) for p in sorted([*dict(left.announce), *left.withdraw], key=prefix_key)[:5]
            )
            raise VerifyError(
                f"{self.name}: FRR state differs after applying {plan.summary()}: "
                f"still {left.summary()} (e.g. {sample})",
                left,
            )
        log.info("%s: applied %s in %.3f s", self.name, plan.summary(), elapsed)
        return ReconcileResult(plan, after, elapsed)

    def __enter__(self) -> AnnounceDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
