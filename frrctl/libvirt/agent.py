"""`frrctl libvirt run`: follow libvirt's domain events and plug what runs here.

Thin on purpose: libvirt-python's default event loop runs in a thread whose
callbacks only queue the domain name; the main thread re-reads that domain
(state and live XML), asks `plan.plan` what to change against the instance
record, and applies it through `Host.plug` / `Host.prepare` / `Host.unplug`.
A guest migrating in is prepared when it arrives paused (STARTED/MIGRATED),
so its RESUMED costs the plug of a prepared instance (one netlink batch).
Level-triggered:
what counts is the state read after the event, so a burst or a missed event
cannot leave a stale plug (RESUMED+MIGRATED reads RUNNING: plug; SUSPENDED+
MIGRATED reads PAUSED/migration: unplug; STOPPED finds no running domain).
A full re-read happens at start, after every reconnect (libvirtd restarted)
and every `resync` seconds. Stopping the agent withdraws nothing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError
from frrctl.host.instances import Host
from frrctl.libvirt import metadata
from frrctl.libvirt.plan import (
    PAUSED,
    PAUSED_MIGRATION,
    Domain,
    Plan,
    Want,
    domain_from_xml,
    implied_state,
    owned,
    plan,
)
from frrctl.pools import Pools

log = logging.getLogger("frrctl.libvirt")

EVENTS = ("DEFINED", "UNDEFINED", "STARTED", "SUSPENDED", "RESUMED", "STOPPED", "SHUTDOWN",
          "PMSUSPENDED", "CRASHED")  # fmt: skip
DETAILS = {
    "SHUTDOWN": ("FINISHED", "GUEST", "HOST"),
    "STARTED": ("BOOTED", "MIGRATED", "RESTORED", "FROM_SNAPSHOT", "WAKEUP"),
    "SUSPENDED": (
        "PAUSED",
        "MIGRATED",
        "IOERROR",
        "WATCHDOG",
        "RESTORED",
        "FROM_SNAPSHOT",
        "API_ERROR",
        "POSTCOPY",
        "POSTCOPY_FAILED",
    ),
    "RESUMED": ("UNPAUSED", "MIGRATED", "FROM_SNAPSHOT", "POSTCOPY", "POSTCOPY_FAILED"),
    "STOPPED": (
        "SHUTDOWN",
        "DESTROYED",
        "CRASHED",
        "MIGRATED",
        "SAVED",
        "FAILED",
        "FROM_SNAPSHOT",
    ),
}
_CLOSED = object()


def event_name(event: int, detail: int) -> tuple[str, str]:
    name = EVENTS[event] if 0 <= event < len(EVENTS) else str(event)
    names = DETAILS.get(name, ())
    return name, names[detail] if 0 <= detail < len(names) else str(detail)


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError:
        raise FrrctlError(
            "libvirt-python is not installed: pip install 'frrctl[libvirt]' (lab/setup.sh does)"
        ) from None
    return libvirt


_loop_started = False


def start_event_loop() -> None:
    """libvirt's default event loop in a daemon thread (once per process)."""
    global _loop_started
    if _loop_started:
        return
    lv = _libvirt()
    lv.registerErrorHandler(lambda *_: None, None)  # errors are raised; no stderr noise
    lv.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            lv.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()
    _loop_started = True


def read_domain(dom: Any, incoming: bool = False) -> Domain:
    """State and live XML; for a migration's pause, which way it goes.

    `incoming`: the agent saw this domain's STARTED/MIGRATED (only a
    destination gets it); otherwise libvirt's job says (after a restart).
    """
    state, reason = dom.state()
    view = domain_from_xml(dom.name(), state, reason, dom.XMLDesc(0))
    if state == PAUSED and reason == PAUSED_MIGRATION:
        view = replace(view, incoming=incoming or _migrating_in(dom))
    return view


def _migrating_in(dom: Any) -> bool:
    lv = _libvirt()
    try:
        stats = dom.jobStats()
    except lv.libvirtError as exc:
        # libvirt 9.0 refuses a migration's statistics on its destination, and only there
        return bool(exc.get_error_code() == lv.VIR_ERR_OPERATION_UNSUPPORTED)
    return bool(stats.get("operation") == lv.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN)


@dataclass
class Agent:
    uri: str
    host: Host
    pools: Pools | None = None
    status_path: Path | None = None
    resync: float = 30.0
    domains: dict[str, Domain] = field(default_factory=dict)
    plug_errors: dict[str, str] = field(default_factory=dict)
    last_plan: Plan = field(default_factory=Plan)
    connected_since: float | None = None

    def __post_init__(self) -> None:
        self.lv = _libvirt()
        self.q: queue.Queue[Any] = queue.Queue()
        self.conn: Any = None
        self._cb_ids: list[int] = []
        self.incoming: set[str] = set()  # domains whose STARTED/MIGRATED was seen

    # -- connection --------------------------------------------------------------
    def connect(self) -> None:
        lv = self.lv
        start_event_loop()
        conn = lv.open(self.uri)
        conn.setKeepAlive(5, 3)
        conn.registerCloseCallback(lambda _c, reason, _o: self.q.put((_CLOSED, reason)), None)
        q = self.q

        def lifecycle(_c: Any, dom: Any, event: int, detail: int, _o: Any) -> None:
            q.put((dom.name(), *event_name(event, detail), time.time()))

        def meta(_c: Any, dom: Any, _type: int, nsuri: str | None, _o: Any) -> None:
            q.put((dom.name(), "METADATA_CHANGE", nsuri or "", time.time()))

        def dev(kind: str) -> Any:
            return lambda _c, dom, alias, _o: q.put((dom.name(), kind, alias, time.time()))

        self._cb_ids = [
            conn.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None),
            conn.domainEventRegisterAny(None, lv.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, meta, None),
            conn.domainEventRegisterAny(
                None, lv.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, dev("DEVICE_ADDED"), None
            ),
            conn.domainEventRegisterAny(
                None, lv.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, dev("DEVICE_REMOVED"), None
            ),
        ]
        self.conn = conn
        self.connected_since = time.time()
        log.info("connected", extra={"fields": {"uri": self.uri}})

    def disconnect(self) -> None:
        conn, self.conn = self.conn, None
        self.connected_since = None
        if conn is None:
            return
        for cb in self._cb_ids:
            with contextlib.suppress(Exception):
                conn.domainEventDeregisterAny(cb)
        with contextlib.suppress(Exception):
            conn.unregisterCloseCallback()
        with contextlib.suppress(Exception):
            conn.close()

    # -- reading -------------------------------------------------------------------
    def refresh_all(self) -> None:
        views: dict[str, Domain] = {}
        for dom in self.conn.listAllDomains(self.lv.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                views[dom.name()] = read_domain(dom, dom.name() in self.incoming)
            except self.lv.libvirtError as exc:
                if exc.get_error_code() != self.lv.VIR_ERR_NO_DOMAIN:
                    raise
        self.domains = views

    def refresh(self, name: str) -> None:
        lv = self.lv
        try:
            dom = self.conn.lookupByName(name)
            self.domains[name] = read_domain(dom, name in self.incoming)
        except lv.libvirtError as exc:
            if exc.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                raise
            self.domains.pop(name, None)

    # -- applying ------------------------------------------------------------------
    def reconcile(self, full: bool, cause: dict[str, Any] | None = None) -> Plan:
        record = self.host.store.all()
        p = plan(list(self.domains.values()), record, self.pools)
        for dom, why in sorted(p.problems.items()):
            if self.last_plan.problems.get(dom) != why:
                log.warning("not plugged", extra={"fields": {"domain": dom, "problem": why}})
        fields = dict(cause or {})
        for name in p.unplug:
            try:
                res = self.host.unplug(name)
                log.info("unplugged", extra={"fields": {**fields, "instance": name,
                         "removed": res.removed, "routes_t": res.routes_at,
                         "t": time.time()}})  # fmt: skip
            except Exception as exc:  # one instance's failure must not stop the agent
                log.error("unplug failed", extra={"fields": {"instance": name, "error": str(exc)}})
        errors: dict[str, str] = {}
        # (want, announce): plugs first, they are what a resumed guest waits for
        todo = [(w, True) for w in p.plug] + [(w, False) for w in p.prepare]
        if full and p.keep:  # repair only what drifted: one listing, not a plug per instance
            listing = self.host.listing()["instances"]
            drifted = {e["name"]: e.get("state") == "prepared" for e in listing if not e["ok"]}
            todo += [(w, not drifted[w.name]) for w in p.keep if w.name in drifted]
        for attempt in (0, 1):  # a second pass: an address may move between two instances
            failed: list[tuple[Want, bool]] = []
            for w, announce in todo:
                t0 = time.monotonic()
                try:
                    bring = self.host.plug if announce else self.host.prepare
                    res = bring(w.name, w.mac, w.addresses, w.port)
                except Exception as exc:  # FrrctlError, or netlink/nft trouble: reported
                    failed.append((w, announce))
                    errors[w.domain] = str(exc) or type(exc).__name__
                    continue
                errors.pop(w.domain, None)
                if res.changed:
                    log.info("plugged" if announce else "prepared", extra={"fields": {
                             **fields, "instance": w.name, "port": w.port, "added": res.added,
                             "removed": res.removed, "repaired": res.repaired,
                             "plug_ms": round((time.monotonic() - t0) * 1e3, 1),
                             "routes_t": res.routes_at, "t": time.time()}})  # fmt: skip
            todo = failed
            if not failed or attempt:
                break
        for dom, why in errors.items():
            if self.plug_errors.get(dom) != why:
                log.error("plug failed", extra={"fields": {"domain": dom, "error": why}})
        self.plug_errors = errors
        self.last_plan = p
        self.write_status()
        return p

    def status(self) -> dict[str, Any]:
        record = {i.name: i for i in self.host.store.all() if owned(i.name)}
        doms: dict[str, Any] = {}
        for name, d in sorted(self.domains.items()):
            if not d.has_metadata:
                continue
            insts = sorted(n for n in record if n.rsplit("@", 1)[0] == name)
            prepared = [n for n in insts if record[n].prepared]
            doms[name] = {
                "state": d.state,
                "reason": d.reason,
                "running": d.running,
                "paused": d.paused,
                "migrating_in": d.arriving,
                "interfaces": [
                    {
                        "mac": n.mac,
                        "addresses": [str(a) for a in n.addresses],
                        "port": d.ports.get(n.mac),
                    }
                    for n in d.nics
                ],
                "instances": insts,
                "prepared": prepared,  # ready, not announced until the guest runs here
                "problem": self.last_plan.problems.get(name) or self.plug_errors.get(name),
                "waiting": self.last_plan.waiting.get(name, []),
            }
        return {
            "pid": os.getpid(),
            "uri": self.uri,
            "connected": self.conn is not None,
            "connected_since": self.connected_since,
            "updated": time.time(),
            "domains": doms,
            "unowned_domains": sorted(n for n, d in self.domains.items() if not d.has_metadata),
            "instances": sorted(record),
        }

    def write_status(self) -> None:
        if self.status_path is None:
            return
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.status_path)

    # -- main loop -----------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        next_full = 0.0
        last_error = ""
        while not stop.is_set():
            if self.conn is None:
                try:
                    self.connect()
                except self.lv.libvirtError as exc:
                    why = str(exc).splitlines()[0]
                    if why != last_error:  # once, not every second
                        log.warning("cannot connect", extra={"fields": {"uri": self.uri,
                                    "error": why}})  # fmt: skip
                        last_error = why
                    self.write_status()
                    stop.wait(1.0)
                    continue
                next_full = 0.0
                last_error = ""
            if time.monotonic() >= next_full:
                try:
                    self.refresh_all()
                    self.reconcile(full=True, cause={"cause": "resync"})
                except self.lv.libvirtError as exc:
                    self._lost(exc)
                    continue
                next_full = time.monotonic() + self.resync
            try:
                item = self.q.get(timeout=min(1.0, max(0.0, next_full - time.monotonic())))
            except queue.Empty:
                continue
            names: dict[str, dict[str, Any]] = {}
            closed = False
            while True:
                if item[0] is _CLOSED:
                    closed = True
                else:
                    name, event, detail, t = item
                    if (event, detail) == ("STARTED", "MIGRATED"):
                        self.incoming.add(name)
                    elif event in ("RESUMED", "STOPPED", "UNDEFINED"):
                        self.incoming.discard(name)
                    log.info("event", extra={"fields": {"domain": name, "event": event,
                             "detail": detail, "t": t}})  # fmt: skip
                    names[name] = {"domain": name, "event": event, "detail": detail}
                try:
                    item = self.q.get_nowait()
                except queue.Empty:
                    break
            if closed:
                self._lost(None)
                continue
            cause = next(iter(names.values())) if len(names) == 1 else {"events": len(names)}
            # fast path: what the event itself says, with the domain's last known XML
            fast = False
            for name, ev in names.items():
                implied = implied_state(ev["event"], ev["detail"])
                known = self.domains.get(name)
                if implied is not None and known is not None:
                    self.domains[name] = replace(known, state=implied[0], reason=implied[1])
                    fast = True
            if fast:
                self.reconcile(full=False, cause={**cause, "path": "event"})
            try:
                for name in names:
                    self.refresh(name)
                self.reconcile(full=False, cause=cause)
            except self.lv.libvirtError as exc:
                self._lost(exc)
        self.disconnect()
        self.write_status()

    def _lost(self, exc: Exception | None) -> None:
        why = str(exc).splitlines()[0] if exc else "connection closed"
        log.warning("libvirt connection lost", extra={"fields": {"error": why}})
        self.disconnect()
        # events may have been missed: the next connect re-reads everything
        while not self.q.empty():
            with contextlib.suppress(queue.Empty):
                self.q.get_nowait()


def set_metadata(uri: str, domain: str, mac: str, addresses: tuple[Any, ...] | None) -> bool:
    """Write MAC's addresses into the domain's frrctl metadata (live and persistent).

    Returns False when nothing had to change. The MAC need not be attached yet
    (an interface hot-plugged later is picked up then).
    """
    lv = _libvirt()
    conn = lv.open(uri)
    try:
        try:
            dom = conn.lookupByName(domain)
        except lv.libvirtError:
            raise FrrctlError(f"no domain {domain!r} at {uri}") from None
        changed = False
        targets: list[int] = []
        if dom.isActive():
            targets.append(lv.VIR_DOMAIN_AFFECT_LIVE)
        if dom.isPersistent():
            targets.append(lv.VIR_DOMAIN_AFFECT_CONFIG)
        for flag in targets:
            text = ""
            try:
                text = dom.metadata(lv.VIR_DOMAIN_METADATA_ELEMENT, metadata.NS, flag)
                current = metadata.parse(text)
            except lv.libvirtError:
                current = ()  # no frrctl metadata yet
            except metadata.MetadataError:
                current = ()  # unusable: replaced by what is written now
                text = ""
            new = metadata.with_nic(current, mac, addresses)
            if new == current and (text or not new):
                continue
            if new:
                body = metadata.render(new, namespaced=False)
                dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, body, metadata.PREFIX,
                                metadata.NS, flag)  # fmt: skip
            else:
                dom.setMetadata(lv.VIR_DOMAIN_METADATA_ELEMENT, None, None, metadata.NS, flag)
            changed = True
        return changed
    finally:
        conn.close()
