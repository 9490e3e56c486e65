"""`frrctl instance plug|unplug|list`: per-VM host routes, neighbours and port guard.

Plug, with `--port`, first sets up the port (attached to the bridge, up,
isolated, no learning, no unknown-unicast flood, a static fdb entry for the
VM MAC) and its nftables guard in one nft transaction; then, for every
address of the VM, on the bridge:

    neigh replace ADDR lladdr MAC nud permanent   (first: the route never
    route add ADDR/32|128 proto boot scope link    points at an unresolved VM)

all in one netlink batch, so that FRR only ever sees a route to a VM that is
reachable behind its guarded port. Everything is checked
before anything changes; a failure midway undoes every change made so far.
The record (SQLite, state dir) is committed last, under the write lock that
serialises concurrent plugs. Re-plugging the same data changes nothing (it
repairs what drifted); re-plugging with other data moves the instance to it.
Unplug removes exactly what plug recorded (routes first, then neighbours).

Prepare does the port part alone (port settings, fdb, guard) and records the
instance as prepared: nothing is routed, so nothing is announced. Plugging a
prepared instance with the same data then costs one netlink batch (every
neighbour, then every route) and one UPDATE of the record: what a live
migration's destination does between its guest resuming and the announcement.
It trusts what prepare checked and set up (the agent's resync checks drift);
if the batch fails it falls back to the full plug.
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from frrctl.errors import FrrctlError, UsageError
from frrctl.host.netlink import (
    NUD_NOARP,
    NUD_PERMANENT,
    RTPROT_BOOT,
    BatchError,
    LinkInfo,
    Netlink,
    Op,
    RouteInfo,
)
from frrctl.host.nft import FAMILY as NFT_FAMILY
from frrctl.host.nft import TABLE as NFT_TABLE
from frrctl.host.nft import (
    Nft,
    NftError,
    PortTable,
    chain_matches,
    chain_name,
    plug_script,
    port_rules,
    rules_hash,
    unplug_script,
)
from frrctl.host.state import Instance, StateStore
from frrctl.host.validate import eui64_link_local
from frrctl.policy import FRR_PROTOCOLS
from frrctl.pools import IPAddress

NTF_MASTER = 0x04
PORT_FLAGS = {"isolated": 1, "learning": 0, "unicast_flood": 0}
_BRPORT_ATTR = {
    "isolated": "IFLA_BRPORT_ISOLATED",
    "learning": "IFLA_BRPORT_LEARNING",
    "unicast_flood": "IFLA_BRPORT_UNICAST_FLOOD",
}


@dataclass
class PlugResult:
    name: str
    changed: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    port: str | None = None
    # when the netlink batch that changed the routes ended (time.time()): what FRR
    # and so the fabric saw, before the port guard or the record were touched
    routes_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
            "repaired": self.repaired,
            "port": self.port,
        }


# -- pure planning -----------------------------------------------------------
def plan_plug(
    ifindex: int,
    mac: str,
    addresses: Sequence[IPAddress],
    removed: Sequence[IPAddress],
    routes: dict[IPAddress, bool],
    neighs: dict[IPAddress, tuple[str | None, int] | None],
) -> tuple[list[Op], list[str]]:
    """Ops that bring the kernel to `addresses` (and drop `removed`), plus what they repair.

    `routes[a]`: a correct host route on the bridge exists; `neighs[a]`: the
    current neighbour entry (mac, state) on the bridge, or None.
    """
    ops: list[Op] = _withdraw(ifindex, removed, routes, neighs)
    repaired: list[str] = []
    for addr in addresses:
        cur = neighs.get(addr)
        if cur is None or cur[0] != mac or not cur[1] & NUD_PERMANENT:
            ops.append(Op("neigh", "set", addr, ifindex, mac=mac))
            if cur is not None:
                repaired.append(f"neighbour {addr}")
    for addr in addresses:
        if not routes.get(addr):
            ops.append(Op("route", "set", addr, ifindex))
    return ops, repaired


def _withdraw(
    ifindex: int,
    addrs: Sequence[IPAddress],
    routes: dict[IPAddress, bool],
    neighs: dict[IPAddress, tuple[str | None, int] | None],
) -> list[Op]:
    """Routes first, then neighbours: only what is there (a delete of nothing fails)."""
    ops = [Op("route", "del", a, ifindex) for a in addrs if routes.get(a)]
    return ops + [Op("neigh", "del", a, ifindex) for a in addrs if neighs.get(a) is not None]


def plan_prepare(
    ifindex: int,
    addresses: Sequence[IPAddress],
    removed: Sequence[IPAddress],
    announced: Sequence[IPAddress],
    routes: dict[IPAddress, bool],
    neighs: dict[IPAddress, tuple[str | None, int] | None],
) -> list[Op]:
    """Ops that leave nothing routed for the instance: what `announced` (its addresses
    while it was plugged) still routes, and what `removed` had. Its port is set apart."""
    gone = [a for a in (*removed, *addresses) if a in announced or a in removed]
    return _withdraw(ifindex, list(dict.fromkeys(gone)), routes, neighs)


def resume_ops(ifindex: int, mac: str, addresses: Sequence[IPAddress]) -> list[Op]:
    """A prepared instance's plug: every neighbour, then every route (one batch)."""
    return [Op("neigh", "set", a, ifindex, mac=mac) for a in addresses] + [
        Op("route", "set", a, ifindex) for a in addresses
    ]


def inverse(op: Op, before_neigh: tuple[str | None, int] | None, route_before: bool) -> Op | None:
    """The op that undoes `op`, given what was there before it."""
    if op.kind == "route":
        if op.action == "set":
            return None if route_before else Op("route", "del", op.addr, op.ifindex)
        return Op("route", "set", op.addr, op.ifindex) if route_before else None
    if before_neigh is None:
        return Op("neigh", "del", op.addr, op.ifindex) if op.action == "set" else None
    mac, state = before_neigh
    if mac is None:
        return Op("neigh", "del", op.addr, op.ifindex)
    return Op("neigh", "set", op.addr, op.ifindex, mac=mac, state=state or NUD_PERMANENT)


# -- kernel side ---------------------------------------------------------------
class Host:
    """One command's view of the host: one netlink socket, the state, nft."""

    def __init__(self, state_dir: Path, bridge: str, nft: Nft | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.bridge = bridge
        self.nl = Netlink()
        self.nft = nft or Nft()
        self._store: StateStore | None = None
        self._bridge_link: LinkInfo | None = None

    @property
    def store(self) -> StateStore:
        if self._store is None:
            self._store = StateStore(self.state_dir)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        self.nl.close()

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bridge_link(self, cached: bool = False) -> LinkInfo:
        if cached and self._bridge_link is not None:
            return self._bridge_link
        link = self.nl.link(self.bridge)
        if link is None:
            raise FrrctlError(
                f"bridge {self.bridge} does not exist: run `frrctl host setup --bridge "
                f"{self.bridge}` first"
            )
        if link.kind != "bridge":
            raise FrrctlError(f"{self.bridge} is not a bridge ({link.kind or 'plain device'})")
        self._bridge_link = link
        return link

    def _route_ok(
        self, addr: IPAddress, route: RouteInfo | None, br: int, name: str, owned: bool
    ) -> bool:
        """True if the host route on the bridge exists; error on a foreign route."""
        if route is None or route.dst.prefixlen != addr.max_prefixlen:
            return False
        if route.proto in FRR_PROTOCOLS:
            # learned by FRR (e.g. the VM's route from its previous host during a
            # migration), or zebra's copy of the gRPC driver's static route (metric
            # 20, ahead of ours): ours is added next to it, it is not touched
            return False
        if route.oif == br and route.gateway is None and route.table == 254:
            return route.proto == RTPROT_BOOT or owned
        plen = addr.max_prefixlen
        via = f"via {route.gateway}" if route.gateway else f"ifindex {route.oif}"
        raise FrrctlError(
            f"{addr}/{plen} is already routed {via} (not by frrctl for {name}); "
            "remove that route first"
        )

    def plug(
        self,
        name: str,
        mac: str,
        addresses: tuple[IPAddress, ...],
        port: str | None = None,
        link_locals: tuple[IPAddress, ...] | None = None,
        any_link_local: bool = False,
    ) -> PlugResult:
        lls = tuple(link_locals) if link_locals else (eui64_link_local(mac),)
        if port is not None:
            with self.store.transaction():
                old = self.store.get(name)
                if (
                    old is not None
                    and old.prepared
                    and old.same_data(Instance(name, self.bridge, mac, addresses, port))
                    and old.port_setup.get("link_locals") == [str(a) for a in lls]
                    and bool(old.port_setup.get("any_link_local")) == any_link_local
                ):
                    done = self._resume(old)
                    if done is not None:
                        return done
        return self._bring(name, mac, addresses, port, lls, any_link_local, prepare=False)

    def prepare(
        self,
        name: str,
        mac: str,
        addresses: tuple[IPAddress, ...],
        port: str,
        link_locals: tuple[IPAddress, ...] | None = None,
        any_link_local: bool = False,
    ) -> PlugResult:
        """Everything of plug that announces nothing: port, guard, the record (prepared).

        What it had routed (a plugged instance prepared again) is withdrawn.
        """
        lls = tuple(link_locals) if link_locals else (eui64_link_local(mac),)
        return self._bring(name, mac, addresses, port, lls, any_link_local, prepare=True)

    def _resume(self, old: Instance) -> PlugResult | None:
        """Plug a prepared instance (in the caller's transaction); None: do the full plug."""
        br = self.bridge_link(cached=True)
        ops = resume_ops(br.index, old.mac, old.addresses)
        try:
            self.nl.apply(ops)
            routes_at = time.time()
            self.store.mark_plugged(old.name, routes_at)
        except BaseException as exc:
            undo = [Op(o.kind, "del", o.addr, o.ifindex) for o in reversed(ops)]
            with contextlib.suppress(BatchError):
                self.nl.apply(undo, ignore_missing=True)
            if isinstance(exc, BatchError):
                self._bridge_link = None
                return None  # the bridge or something else moved: look at everything
            raise
        plen = {4: 32, 6: 128}
        added = [f"{a}/{plen[a.version]}" for a in old.addresses]
        return PlugResult(old.name, True, added, port=old.port, routes_at=routes_at)

    def _bring(
        self,
        name: str,
        mac: str,
        addresses: tuple[IPAddress, ...],
        port: str | None,
        lls: tuple[IPAddress, ...],
        any_link_local: bool,
        prepare: bool,
    ) -> PlugResult:
        br = self.bridge_link()
        port_link: LinkInfo | None = None
        if port is not None:
            if port == self.bridge:
                raise UsageError("--port must be the VM's port, not the bridge itself")
            port_link = self.nl.link(port)
            if port_link is None:
                raise FrrctlError(f"port {port} does not exist")
            if port_link.master not in (None, br.index):
                raise FrrctlError(f"port {port} is enslaved to another device")

        store = self.store
        with store.transaction():
            old = store.get(name)
            owners = {a: o for a, o in store.owners(addresses).items() if o != name}
            if owners:
                addr, owner = next(iter(sorted(owners.items(), key=lambda i: str(i[0]))))
                raise FrrctlError(f"{addr} is already plugged for instance {owner}")
            if port is not None:
                holder = store.port_owner(self.bridge, port)
                if holder not in (None, name):
                    raise FrrctlError(f"port {port} is already used by instance {holder}")
            if old is not None and old.bridge != self.bridge:
                raise FrrctlError(
                    f"instance {name} is plugged on bridge {old.bridge}: unplug it there first"
                )
            removed = tuple(a for a in (old.addresses if old else ()) if a not in addresses)
            # what the record routes now (a prepared instance routes nothing)
            own_before = set(old.addresses) if old and not old.prepared else set()

            routes: dict[IPAddress, bool] = {}
            neighs: dict[IPAddress, tuple[str | None, int] | None] = {}
            found_routes, found_neighs = self.nl.lookup((*addresses, *removed), br.index)
            for addr in (*addresses, *removed):
                routes[addr] = self._route_ok(
                    addr, found_routes[addr], br.index, name, addr in own_before
                )
                n = found_neighs[addr]
                neighs[addr] = (n.mac, n.state) if n else None
                if (
                    n is not None
                    and n.permanent
                    and n.mac != mac
                    and addr not in own_before
                    and addr in addresses
                ):
                    raise FrrctlError(
                        f"{addr} has a permanent neighbour entry with MAC {n.mac} on "
                        f"{self.bridge} that frrctl did not record; remove it first"
                    )
            if prepare:
                ops = plan_prepare(br.index, addresses, removed, tuple(own_before), routes, neighs)
                repaired: list[str] = []
            else:
                ops, repaired = plan_plug(br.index, mac, addresses, removed, routes, neighs)

            new = Instance(name, self.bridge, mac, addresses, port)
            port_ops = self._port_plan(new, old, port_link, br, lls, any_link_local)
            if (
                old is not None
                and old.same_data(new)
                and old.prepared == prepare
                and not ops
                and not port_ops["needed"]
            ):
                return PlugResult(name, changed=False, port=port)

            undo: list[Op] = []
            for op in ops:
                inv = inverse(op, neighs.get(op.addr), routes.get(op.addr, False))
                if inv is not None:
                    undo.append(inv)
            undo.reverse()
            undo_port: list[Any] = []
            try:
                # Port first (attached, up, guarded), then neighbours and routes: when
                # FRR sees the route, the VM is already reachable behind a guarded port.
                port_setup = self._port_apply(new, old, port_ops, undo_port)
                self.nl.apply(ops)
                routes_at = time.time()
                inst = Instance(
                    name, self.bridge, mac, addresses, port,
                    port_setup=port_setup, plugged_at=routes_at, prepared=prepare,
                )  # fmt: skip
                store.put(inst)
            except BaseException as exc:
                self._rollback(undo, undo_port)
                if isinstance(exc, BatchError):
                    raise FrrctlError(f"plug {name} failed, nothing changed: {exc}") from None
                if isinstance(exc, FrrctlError):
                    raise FrrctlError(f"plug {name} failed, nothing changed: {exc}") from None
                raise
        plen = {4: 32, 6: 128}
        added = [] if prepare else [f"{a}/{plen[a.version]}" for a in addresses
                                    if a not in own_before]  # fmt: skip
        withdrawn = [a for a in addresses if a in own_before] if prepare else []
        gone = [f"{a}/{plen[a.version]}" for a in (*removed, *withdrawn)]
        fixed = repaired + [
            f"route {a}" for a in addresses if a in own_before and not routes.get(a) and not prepare
        ]
        return PlugResult(name, True, added, gone, fixed + port_ops["repairs"], port, routes_at)

    # -- port: bridge settings, fdb, nft -----------------------------------------
    def _brport(self, link: LinkInfo) -> dict[str, int | None]:
        msg = self.nl.ipr.link("get", index=link.index)[0]
        info = msg.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info else None
        return {k: (data.get_attr(a) if data else None) for k, a in _BRPORT_ATTR.items()}

    def _fdb_ok(self, port_index: int, mac: str) -> bool:
        for entry in self.nl.ipr.fdb("dump", ifindex=port_index):
            if int(entry["ifindex"]) != port_index:
                continue
            lladdr = (entry.get_attr("NDA_LLADDR") or "").lower()
            if lladdr == mac and entry["state"] & (NUD_NOARP | NUD_PERMANENT):
                return True
        return False

    def _port_plan(
        self,
        new: Instance,
        old: Instance | None,
        port_link: LinkInfo | None,
        br: LinkInfo,
        lls: tuple[IPAddress, ...],
        any_ll: bool,
    ) -> dict[str, Any]:
        plan: dict[str, Any] = {"needed": False, "repairs": []}
        old_port = old.port if old else None
        if old_port is not None and old_port != new.port:
            plan["needed"] = True
        if port_link is None or new.port is None:
            return plan
        rules = port_rules(new.mac, new.addresses, lls, any_ll)
        chain = chain_name(new.name)
        table: PortTable | None = None
        nft_ok = False
        if old is not None and old.port == new.port:
            # the record says the guard is there: one `nft list chain` confirms it
            mine = self.nft.chain_view(new.name)
            nft_ok = chain_matches(mine, chain, new.port, rules)
            table = mine if nft_ok else None
        if table is None:  # to write it: every chain, as another one may hook the port
            table = self.nft.instance_view(new.name)
            nft_ok = chain_matches(table, chain, new.port, rules)
        plan.update(rules=rules, table=table, chain=chain, link=port_link,
                    lls=[str(a) for a in lls], any_ll=any_ll)  # fmt: skip
        enslave = port_link.master != br.index
        flags = {} if enslave else self._brport(port_link)
        flags_needed = {k: v for k, v in PORT_FLAGS.items() if flags.get(k) != v}
        fdb_ok = not enslave and self._fdb_ok(port_link.index, new.mac)
        plan.update(nft_ok=nft_ok, enslave=enslave, flags_needed=flags_needed,
                    flags_before=flags, fdb_ok=fdb_ok, up=port_link.up)  # fmt: skip
        mac_changed = old is not None and old.mac != new.mac and old.port == new.port
        if not (nft_ok and not enslave and not flags_needed and fdb_ok and port_link.up):
            plan["needed"] = True
            if old is not None and old.same_data(new):
                plan["repairs"].append(f"port {new.port}")
        if mac_changed:
            plan["needed"] = True
        return plan

    def _port_apply(
        self, new: Instance, old: Instance | None, plan: dict[str, Any], undo: list[Any]
    ) -> dict[str, object]:
        ipr = self.nl.ipr
        old_port = old.port if old else None
        setup: dict[str, object] = dict(old.port_setup) if old and old.port == new.port else {}
        if old is not None and old_port is not None and old_port != new.port:
            self._port_release(old)  # the instance moved to another port
            if new.port is not None:
                plan["table"] = self.nft.instance_view(new.name)
                plan["nft_ok"] = False
        link: LinkInfo | None = plan.get("link")
        if link is None or new.port is None:
            return {}
        br = self.bridge_link()
        if plan["enslave"]:
            ipr.link("set", index=link.index, master=br.index)
            undo.append(("nomaster", link.index))
            setup["enslaved"] = True
        if plan["flags_needed"]:
            before = {k: v for k, v in plan["flags_before"].items() if k in plan["flags_needed"]}
            ipr.brport("set", index=link.index, **plan["flags_needed"])
            if not plan["enslave"]:
                undo.append(("brport", link.index, before))
                saved = setup.get("flags_before")
                prev = dict(saved) if isinstance(saved, dict) else {}
                for k, v in before.items():
                    prev.setdefault(k, v)
                setup["flags_before"] = prev
        if old is not None and old.port == new.port and old.mac != new.mac:
            self._fdb_del(link.index, old.mac)
        if not plan["fdb_ok"]:
            ipr.fdb("replace", ifindex=link.index, lladdr=new.mac, state=NUD_NOARP,
                    flags=NTF_MASTER)  # fmt: skip
            undo.append(("fdb", link.index, new.mac))
        if not link.up:
            ipr.link("set", index=link.index, state="up")
            undo.append(("down", link.index))
            setup["set_up"] = True
        if not plan["nft_ok"]:
            script = plug_script(new.name, new.port, plan["rules"], plan["table"])
            self.nft.run(script)
            # undo: the previous guard of this port back, or no guard at all
            previous = None
            if (
                old is not None
                and old.port == new.port
                and chain_name(new.name) in (plan["table"].chains)
            ):
                previous = self._rules(old)
            undo.append(("nft", new.name, new.port, previous))
        setup["link_locals"] = plan["lls"]
        setup["any_link_local"] = plan["any_ll"]
        return setup

    def _fdb_del(self, port_index: int, mac: str) -> None:
        try:
            self.nl.ipr.fdb("del", ifindex=port_index, lladdr=mac, state=NUD_NOARP,
                            flags=NTF_MASTER)  # fmt: skip
        except NetlinkError as exc:
            if exc.code not in (errno.ENOENT, errno.ENODEV, errno.EINVAL):
                raise

    def _port_release(self, inst: Instance) -> list[str]:
        """Undo what plug did to the instance's port; a port that is gone is fine."""
        done: list[str] = []
        if inst.port is None:
            return done
        try:  # the record says the port is guarded: delete the chain, one nft process
            self.nft.run(unplug_script(inst.name, have_chain=True))
        except NftError:  # not there (removed by hand?): look before deleting anything
            table = self.nft.instance_view(inst.name)
            self.nft.run(unplug_script(inst.name, have_chain=chain_name(inst.name) in table.chains))
        link = self.nl.link(inst.port)
        br = self.nl.link(self.bridge)
        if link is None or br is None or link.master != br.index:
            return done
        self._fdb_del(link.index, inst.mac)
        setup = inst.port_setup
        if setup.get("set_up"):
            self.nl.ipr.link("set", index=link.index, state="down")
        if setup.get("enslaved"):
            self.nl.ipr.link("set", index=link.index, master=0)
            done.append(f"port {inst.port} released from {self.bridge}")
        else:
            before = setup.get("flags_before")
            restore: dict[str, object] = {}
            if isinstance(before, dict):
                restore = {k: v for k, v in before.items() if v is not None}
            if restore:
                self.nl.ipr.brport("set", index=link.index, **restore)
        return done

    def _rollback(self, undo: list[Op], undo_port: list[Any]) -> None:
        ipr = self.nl.ipr
        for item in reversed(undo_port):
            try:
                if item[0] == "nft":
                    _, name, port, previous = item
                    view = self.nft.instance_view(name)
                    if previous is None:
                        chain = chain_name(name)
                        self.nft.run(unplug_script(name, chain in view.chains))
                        if set(view.chains) <= {chain}:  # the plug created the table too
                            self.nft.run(f"delete table {NFT_FAMILY} {NFT_TABLE}\n")
                    else:
                        self.nft.run(plug_script(name, port, previous, view))
                elif item[0] == "down":
                    ipr.link("set", index=item[1], state="down")
                elif item[0] == "nomaster":
                    ipr.link("set", index=item[1], master=0)
                elif item[0] == "brport":
                    restore = {k: v for k, v in item[2].items() if v is not None}
                    if restore:
                        ipr.brport("set", index=item[1], **restore)
                elif item[0] == "fdb":
                    self._fdb_del(item[1], item[2])
            except (NetlinkError, FrrctlError):
                pass
        with contextlib.suppress(BatchError):
            self.nl.apply(undo, ignore_missing=True)

    # -- unplug ----------------------------------------------------------------
    def unplug(self, name: str) -> PlugResult:
        store = self.store
        with store.transaction():
            inst = store.get(name)
            if inst is None:
                return PlugResult(name, changed=False)
            br = self.nl.link(inst.bridge)
            routes_at: float | None = None
            if br is not None:
                ops: list[Op] = []
                found_routes, found_neighs = self.nl.lookup(inst.addresses, br.index)
                for addr in inst.addresses:
                    route = found_routes[addr]
                    if (
                        route is not None
                        and route.dst.prefixlen == addr.max_prefixlen
                        and route.oif == br.index
                    ):
                        ops.append(Op("route", "del", addr, br.index))
                for addr in inst.addresses:
                    neigh = found_neighs[addr]
                    if neigh is not None and neigh.mac == inst.mac:
                        ops.append(Op("neigh", "del", addr, br.index))
                try:
                    self.nl.apply(ops, ignore_missing=True)
                except BatchError as exc:
                    raise FrrctlError(f"unplug {name} failed: {exc}") from None
                routes_at = time.time()
            self._port_release(inst)
            store.delete(name)
        plen = {4: 32, 6: 128}
        return PlugResult(
            name, True, removed=[f"{a}/{plen[a.version]}" for a in inst.addresses],
            port=inst.port, routes_at=routes_at,
        )  # fmt: skip

    @staticmethod
    def _rules(inst: Instance) -> list[str]:
        import ipaddress

        raw = inst.port_setup.get("link_locals")
        lls = [ipaddress.ip_address(str(a)) for a in raw] if isinstance(raw, list) else []
        if not lls:
            lls = [eui64_link_local(inst.mac)]
        return port_rules(
            inst.mac, inst.addresses, lls, bool(inst.port_setup.get("any_link_local"))
        )

    @classmethod
    def _digest(cls, inst: Instance) -> str:
        return rules_hash(cls._rules(inst), str(inst.port))

    # -- repair ------------------------------------------------------------------
    def repair(self, names: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Plug every recorded instance (or `names`) again with its recorded data.

        After a reboot (the kernel forgot every route and neighbour, the record
        did not) or any drift. One instance's failure does not stop the others.
        """
        import ipaddress

        out: list[dict[str, Any]] = []
        recorded = {i.name: i for i in self.store.all(self.bridge)}
        for name in names:
            if name not in recorded:
                out.append({"name": name, "error": f"instance {name} is not plugged"})
        for inst in recorded.values():
            if names and inst.name not in names:
                continue
            raw = inst.port_setup.get("link_locals")
            lls = (
                tuple(ipaddress.IPv6Address(str(a)) for a in raw) if isinstance(raw, list) else None
            )
            try:
                any_ll = bool(inst.port_setup.get("any_link_local"))
                if inst.prepared and inst.port:  # stays unannounced until its guest resumes
                    res = self.prepare(inst.name, inst.mac, inst.addresses, inst.port,
                                       link_locals=lls or None, any_link_local=any_ll)  # fmt: skip
                else:
                    res = self.plug(inst.name, inst.mac, inst.addresses, inst.port,
                                    link_locals=lls or None, any_link_local=any_ll)  # fmt: skip
                out.append(res.to_json())
            except FrrctlError as exc:
                out.append({"name": inst.name, "error": str(exc)})
        return out

    # -- list / drift ------------------------------------------------------------
    def listing(self, counters: bool = False) -> dict[str, Any]:
        insts = self.store.all(self.bridge)
        br = self.nl.link(self.bridge)
        routes = self.nl.host_routes(br.index) if br else {}
        neighs = self.nl.neighbours(br.index) if br else {}
        table = self.nft.port_table() if any(i.port for i in insts) else None
        recorded: set[IPAddress] = set()
        out = []
        for inst in insts:
            drift: list[dict[str, str]] = []
            if br is None:
                drift.append({"problem": "bridge missing", "bridge": self.bridge})
            for addr in inst.addresses:
                recorded.add(addr)
                if br is None:
                    continue
                if inst.prepared:  # nothing may be routed yet
                    if addr in routes and routes[addr].proto == RTPROT_BOOT:
                        drift.append({"address": str(addr), "problem": "routed while prepared"})
                    continue
                if addr not in routes:
                    drift.append({"address": str(addr), "problem": "route missing"})
                n = neighs.get(addr)
                if n is None:
                    drift.append({"address": str(addr), "problem": "neighbour missing"})
                elif n.mac != inst.mac:
                    drift.append({"address": str(addr), "problem": "neighbour has wrong MAC",
                                  "mac": n.mac or "", "expected": inst.mac})  # fmt: skip
                elif not n.permanent:
                    drift.append({"address": str(addr), "problem": "neighbour not permanent"})
            if inst.port and table is not None:
                chain = chain_name(inst.name)
                link = self.nl.link(inst.port)
                if link is None:
                    drift.append({"port": inst.port, "problem": "port missing"})
                elif br is not None and link.master != br.index:
                    drift.append({"port": inst.port, "problem": "port not on the bridge"})
                else:
                    flags = self._brport(link)
                    wrong = sorted(k for k, v in PORT_FLAGS.items() if flags.get(k) != v)
                    if wrong:
                        drift.append(
                            {
                                "port": inst.port,
                                "problem": "port settings differ: " + ", ".join(wrong),
                            }
                        )
                    if not self._fdb_ok(link.index, inst.mac):
                        drift.append({"port": inst.port, "problem": "static fdb entry missing"})
                if chain not in table.chains:
                    drift.append({"port": inst.port, "problem": "nftables chain missing"})
                elif table.chains[chain] != f"frrctl {self._digest(inst)}" or (
                    table.rule_counts.get(chain, 0) != len(self._rules(inst))
                ):
                    drift.append({"port": inst.port, "problem": "nftables rules differ"})
                elif not table.bound(chain, inst.port):
                    drift.append({"port": inst.port, "problem": "nftables guard on another port"})
            entry: dict[str, Any] = inst.to_json()
            entry["ok"] = not drift
            entry["drift"] = drift
            if counters and inst.port:
                entry["drops"] = self.nft.counters(inst.name)
            out.append(entry)
        unmanaged = sorted(
            (a for a, r in routes.items() if a not in recorded and r.proto == RTPROT_BOOT),
            key=lambda a: (a.version, int(a)),
        )
        listing: dict[str, Any] = {
            "bridge": self.bridge,
            "bridge_present": br is not None,
            "instances": out,
            "drift": sum(len(e["drift"]) for e in out),
            "unrecorded_routes": [str(a) for a in unmanaged],
        }
        if counters:  # what the host's own guard dropped from every VM of the bridge
            listing["host_drops"] = self.nft.host_counters(self.bridge)
        return listing
