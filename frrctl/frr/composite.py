"""Announcers built from others: the OSPF admission gates, and BGP plus OSPF.

OSPF announces by redistribution (`redistribute kernel route-map only-cloud`),
so there is nothing to diff and apply there: what the daemon decides reaches
ospfd/ospf6d through `admit`, which blocks what the policy refuses but
only-cloud would pass and, near the maximum or with require-neighbor, admits
only what the policy announces (see frrctl.frr.ospf). A host with BGP and OSPF
gets a `Composite`: BGP announces the diffs, the gates take the decision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from frrctl.frr.base import AdmissionState, AnnounceDriver, DriverError, TableCheck
from frrctl.frr.ospf import OspfGate, admission_closed
from frrctl.policy import Announced, Code, Decision, Drain, Plan, PolicyConfig, prefix_key
from frrctl.pools import IPNetwork

log = logging.getLogger("frrctl.daemon")

# Verdicts that refuse a prefix only-cloud alone would pass to OSPF.
_REFUSED = frozenset({Code.HELD, Code.NO_NEIGHBOR, Code.OVER_MAXIMUM})


def ospf_blocked(decision: Decision, config: PolicyConfig) -> set[IPNetwork]:
    """What the OSPF gates must block: the held prefixes and the refused verdicts."""
    blocked = set(config.held)
    blocked |= {v.prefix for v in decision.by_prefix.values() if v.code in _REFUSED}
    return blocked


@dataclass
class OspfAdmission(AnnounceDriver):
    """The only-cloud gates of ospfd (IPv4) and ospf6d (IPv6): an announcer on its own
    (an OSPF-only host) or the OSPF half of a `Composite`."""

    gates: list[OspfGate]
    name: str = "ospf"
    _state: AdmissionState = field(default_factory=AdmissionState, init=False)

    def read(self) -> dict[IPNetwork, bool]:
        return {}  # announced by redistribution: no announcement of its own to read

    def apply(self, plan: Plan) -> None:
        if plan:
            raise DriverError("OSPF announces by redistribution: nothing can be applied")

    def expected(self, decision: Decision) -> Announced:
        return {}

    def holding(self, read_back: Announced, last: Decision | None) -> Announced:
        # What the last pass let through the gates keeps its place.
        return last.desired if last is not None else read_back

    def admit(self, decision: Decision, config: PolicyConfig) -> bool:
        blocked = ospf_blocked(decision, config)
        drain = config.drain is Drain.WITHDRAW
        admitted = None
        if admission_closed(len(decision.desired), config.max_prefixes, config.require_neighbor):
            admitted = set(decision.desired)
        changed = False
        for gate in self.gates:
            if gate.reconcile(blocked, drain, admitted):
                changed = True
                mine = sorted((b for b in blocked if b.version == gate.version), key=prefix_key)
                log.info(
                    "OSPF gate applied",
                    extra={"fields": {
                        "daemon": gate.daemon, "drain": drain,
                        "blocked": [str(p) for p in mine[:50]],
                        "admission": "open" if admitted is None else "closed",
                        "admitted": None if admitted is None else sum(
                            1 for p in admitted if p.version == gate.version),
                    }},
                )  # fmt: skip
        self._state = AdmissionState(
            tuple(g.daemon for g in self.gates), frozenset(blocked), admitted is not None
        )
        return changed

    def admission(self) -> AdmissionState:
        if not self._state.daemons:
            return AdmissionState(tuple(g.daemon for g in self.gates))
        return self._state

    def redistribution_lost(self, desired: Announced) -> set[IPNetwork] | None:
        """Desired IPv6 prefixes ospf6d does not redistribute.

        FRR 8.4: a zclient that loses zebra frees its redistribution bitmaps
        (zclient_failed -> zclient_stop, lib/zclient.c) and only zclient_init
        makes them again; ospf6d keeps the bitmaps freed, so on reconnect
        zclient_send_reg_requests resends nothing, and no kernel route added
        since is redistributed. Re-entering `redistribute kernel` (measured) does
        not help either: the host needs ospf6d restarted."""
        lost: set[IPNetwork] | None = None
        for gate in self.gates:
            if gate.version != 6:  # ospfd keeps its registration (see the daemon's check)
                continue
            want = {p for p in desired if p.version == 6}
            lost = (lost or set()) | (want - gate.redistributed())
        return lost

    def close(self) -> None:
        for gate in self.gates:
            gate.close()


@dataclass
class Composite(AnnounceDriver):
    """BGP announces the diffs; the OSPF gates take every decision."""

    bgp: AnnounceDriver
    ospf: OspfAdmission

    def __post_init__(self) -> None:
        self.name = self.bgp.name
        self.min_metric = self.bgp.min_metric

    def read(self) -> dict[IPNetwork, bool]:
        return self.bgp.read()

    def apply(self, plan: Plan) -> None:
        self.bgp.apply(plan)

    def expected(self, decision: Decision) -> Announced:
        return self.bgp.expected(decision)

    def holding(self, read_back: Announced, last: Decision | None) -> Announced:
        return self.bgp.holding(read_back, last)

    def config_loaded(self) -> bool:
        return self.bgp.config_loaded()

    def check_table(self) -> TableCheck | None:
        return self.bgp.check_table()

    def refresh(self, prefixes: list[IPNetwork]) -> None:
        self.bgp.refresh(prefixes)

    def admit(self, decision: Decision, config: PolicyConfig) -> bool:
        return self.ospf.admit(decision, config)

    def admission(self) -> AdmissionState:
        return self.ospf.admission()

    def redistribution_lost(self, desired: Announced) -> set[IPNetwork] | None:
        return self.ospf.redistribution_lost(desired)

    def close(self) -> None:
        self.bgp.close()
        self.ospf.close()
