"""The announcement gate the gRPC driver edits: prefix-lists behind a route-map.

bgpd redistributes kernel routes through route-map `frrctl-announce-v4`
(`-v6`); each of its entries permits what one prefix-list lists and only if
the route is on the bridge. The driver adds and removes one exact /32 or /128
permit entry per announced prefix; graceful drain adds
`set community graceful-shutdown additive` to every route-map entry, one
small commit whatever the number of prefixes.

FRR checks every new prefix-list entry against all entries of its list
(plist_is_dup in lib/filter_nb.c), so one list of n entries costs O(n^2) per
commit: 10,000 entries took 295 s. The prefixes are therefore spread over
`shards` lists by address (stable, no state), which divides that cost by the
number of shards.

An existing but empty prefix-list permits everything (lib/plist.c: count ==
0 -> PREFIX_PERMIT). Each gate list therefore always ends with the sentinel
`seq 4294967295 deny any`, created with the list and never removed, so that
withdrawing the last prefix of a shard cannot open the gate.

Everything here is pure: XPaths, parsing FRR's JSON, building one commit.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from frrctl.policy import Plan, prefix_key
from frrctl.pools import IPNetwork

GSHUT_COMMUNITY = "graceful-shutdown additive"
SENTINEL_SEQ = 4294967295  # highest sequence FRR accepts
_FAMILY = {4: "ipv4", 6: "ipv6"}
_SET_COMMUNITY = "frr-bgp-route-map:set-community"

PathValue = tuple[str, str]


class GateError(ValueError):
    """FRR's gate objects hold something the driver did not put there."""


@dataclass(frozen=True)
class Gate:
    """Names and layout of the gate; the rendered bgpd config must match it."""

    bridge: str = "cloudbr0"
    base: str = "frrctl-announce"
    shards: int = 64
    first_seq: int = 10  # route-map entry of shard i: first_seq + 10 * i

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= 1000:
            raise ValueError(f"shards must be 1..1000, not {self.shards}")

    def route_map(self, version: int) -> str:
        return f"{self.base}-v{version}"

    def shard(self, prefix: IPNetwork) -> int:
        return int(prefix.network_address) % self.shards

    def prefix_list(self, version: int, shard: int) -> str:
        width = len(str(self.shards - 1))
        return f"{self.base}-v{version}-{shard:0{width}d}"

    def rmap_seq(self, shard: int) -> int:
        return self.first_seq + 10 * shard

    # -- XPaths --------------------------------------------------------------
    def plist_xpath(self, version: int, shard: int) -> str:
        return (
            f"/frr-filter:lib/prefix-list[type='{_FAMILY[version]}']"
            f"[name='{self.prefix_list(version, shard)}']"
        )

    def rmap_xpath(self, version: int) -> str:
        return f"/frr-route-map:lib/route-map[name='{self.route_map(version)}']"

    def rmap_entry_xpath(self, version: int, shard: int) -> str:
        return f"{self.rmap_xpath(version)}/entry[sequence='{self.rmap_seq(shard)}']"

    def read_paths(self) -> list[str]:
        paths = [self.rmap_xpath(v) for v in (4, 6)]
        paths += [self.plist_xpath(v, s) for v in (4, 6) for s in range(self.shards)]
        return paths

    # -- what the renderer emits for bgpd ------------------------------------
    def config_lines(self) -> list[str]:
        """bgpd config (FRR's own spelling) for the route-maps; the prefix-lists
        start empty and belong to the driver. `router bgp` must add
        `redistribute kernel route-map <route_map(4|6)>` per address family,
        and `bgp route-map delay-timer 1` keeps list changes fast. The lists
        hold only their sentinel; the driver owns every other entry."""
        lines: list[str] = []
        for version in (4, 6):
            match = "ip" if version == 4 else "ipv6"
            for shard in range(self.shards):
                lines.append(
                    f"{match} prefix-list {self.prefix_list(version, shard)} "
                    f"seq {SENTINEL_SEQ} deny any"
                )
            for shard in range(self.shards):
                lines += [
                    f"route-map {self.route_map(version)} permit {self.rmap_seq(shard)}",
                    f" match interface {self.bridge}",
                    f" match {match} address prefix-list {self.prefix_list(version, shard)}",
                    "exit",
                ]
        return lines

    def rmap_entry_updates(self, version: int, shard: int) -> list[PathValue]:
        entry = self.rmap_entry_xpath(version, shard)
        family = "ipv4" if version == 4 else "ipv6"
        cond = f"{entry}/match-condition[condition='frr-route-map:{family}-prefix-list']"
        iface = f"{entry}/match-condition[condition='frr-route-map:interface']"
        return [
            (f"{entry}/action", "permit"),
            (f"{cond}/rmap-match-condition/list-name", self.prefix_list(version, shard)),
            (f"{iface}/rmap-match-condition/interface", self.bridge),
        ]

    def sentinel_updates(self, version: int, shard: int) -> list[PathValue]:
        entry = f"{self.plist_xpath(version, shard)}/entry[sequence='{SENTINEL_SEQ}']"
        return [(f"{entry}/action", "deny"), (f"{entry}/any", "")]

    def gshut_xpath(self, version: int, shard: int) -> str:
        return f"{self.rmap_entry_xpath(version, shard)}/set-action[action='{_SET_COMMUNITY}']"

    def gshut_update(self, version: int, shard: int) -> PathValue:
        return (
            f"{self.gshut_xpath(version, shard)}/rmap-set-action/"
            "frr-bgp-route-map:community-string",
            GSHUT_COMMUNITY,
        )


@dataclass
class GateState:
    """The gate as read back from bgpd."""

    # (version, shard) -> {sequence: prefix}
    entries: dict[tuple[int, int], dict[int, IPNetwork]] = field(default_factory=dict)
    # (version, shard) -> entry looks right; gshut set on it
    rmap_ok: dict[tuple[int, int], bool] = field(default_factory=dict)
    rmap_gshut: dict[tuple[int, int], bool] = field(default_factory=dict)
    # (version, shard) -> the list ends with the deny-any sentinel
    sentinel: dict[tuple[int, int], bool] = field(default_factory=dict)

    def graceful(self, version: int, shard: int) -> bool:
        return self.rmap_gshut.get((version, shard), False)

    def announced(self) -> dict[IPNetwork, bool]:
        out: dict[IPNetwork, bool] = {}
        for (version, shard), entries in self.entries.items():
            for prefix in entries.values():
                out[prefix] = self.graceful(version, shard)
        return out


def _items(data: Mapping[str, object], module: str, node: str) -> list[dict[str, object]]:
    """`node` list of `module` from a Get answer, at the top level or under lib."""
    direct = data.get(f"{module}:{node}")
    if isinstance(direct, list):
        return direct
    lib = data.get(f"{module}:lib")
    if isinstance(lib, dict) and isinstance(lib.get(node), list):
        return list(lib[node])
    return []


def parse_prefix_lists(
    data: Mapping[str, object], gate: Gate
) -> tuple[dict[tuple[int, int], dict[int, IPNetwork]], dict[tuple[int, int], bool]]:
    """The gate's prefix-lists: (version, shard) -> {sequence: exact host prefix},
    and which lists hold the sentinel.

    Anything else in those lists (deny, ge/le, a non-host prefix, a prefix of
    another shard) is not frrctl's doing and raises GateError.
    """
    names = {gate.prefix_list(v, s): (v, s) for v in (4, 6) for s in range(gate.shards)}
    found: dict[tuple[int, int], dict[int, IPNetwork]] = {}
    sentinel: dict[tuple[int, int], bool] = {}
    for plist in _items(data, "frr-filter", "prefix-list"):
        key = names.get(str(plist.get("name")))
        if key is None or plist.get("type") != _FAMILY[key[0]]:
            continue
        family = _FAMILY[key[0]]
        entries = found.setdefault(key, {})
        for entry in plist.get("entry", []):  # type: ignore[attr-defined]
            seq = int(entry["sequence"])
            if seq == SENTINEL_SEQ and entry.get("action") == "deny" and "any" in entry:
                sentinel[key] = True
                continue
            text_prefix = entry.get(f"{family}-prefix")
            extra = {k for k in entry if "greater" in k or "lesser" in k or k == "any"}
            if entry.get("action") != "permit" or text_prefix is None or extra:
                raise GateError(f"prefix-list {plist['name']} seq {seq} is not frrctl's: {entry}")
            prefix = ipaddress.ip_network(text_prefix)
            if prefix.prefixlen != prefix.max_prefixlen or gate.shard(prefix) != key[1]:
                raise GateError(f"prefix-list {plist['name']} seq {seq} holds unexpected {prefix}")
            entries[seq] = prefix
    return found, sentinel


def parse_route_maps(
    data: Mapping[str, object], gate: Gate
) -> tuple[dict[tuple[int, int], bool], dict[tuple[int, int], bool]]:
    """Per (version, shard): (entry has the gate's layout, entry sets GRACEFUL_SHUTDOWN)."""
    ok: dict[tuple[int, int], bool] = {}
    gshut: dict[tuple[int, int], bool] = {}
    want = {gate.rmap_seq(s): s for s in range(gate.shards)}
    versions = {gate.route_map(v): v for v in (4, 6)}
    for rmap in _items(data, "frr-route-map", "route-map"):
        version = versions.get(str(rmap.get("name")))
        if version is None:
            continue
        family = _FAMILY[version]
        for entry in rmap.get("entry", []):  # type: ignore[attr-defined]
            shard = want.get(int(entry["sequence"]))
            if shard is None:
                continue
            conds = {
                c.get("condition"): c.get("rmap-match-condition", {})
                for c in entry.get("match-condition", [])
            }
            ok[(version, shard)] = (
                entry.get("action") == "permit"
                and len(conds) == 2
                and conds.get(f"frr-route-map:{family}-prefix-list", {}).get("list-name")
                == gate.prefix_list(version, shard)
                and conds.get("frr-route-map:interface", {}).get("interface") == gate.bridge
            )
            gshut[(version, shard)] = any(
                a.get("action") == _SET_COMMUNITY
                and "graceful-shutdown"
                in str(a.get("rmap-set-action", {}).get("frr-bgp-route-map:community-string", ""))
                for a in entry.get("set-action", [])
            )
    return ok, gshut


def gate_state(gate: Gate, data: Mapping[str, object]) -> GateState:
    """The read-back state from FRR's merged JSON answers for filter and route-map lib."""
    ok, gshut = parse_route_maps(data, gate)
    entries, sentinel = parse_prefix_lists(data, gate)
    return GateState(entries, ok, gshut, sentinel)


@dataclass(frozen=True)
class Edit:
    """One candidate edit: all of it is committed, or none."""

    update: tuple[PathValue, ...] = ()
    delete: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.update or self.delete)


def _free_seqs(used: Iterable[int], count: int) -> list[int]:
    """The `count` lowest free sequence numbers (FRR's range starts at 1)."""
    taken = set(used)
    out: list[int] = []
    seq = 1
    while len(out) < count:
        if seq not in taken:
            out.append(seq)
        seq += 1
    return out


def graceful_target(plan: Plan) -> bool | None:
    """The gate's GRACEFUL_SHUTDOWN switch after `plan`: it is host-wide, never per prefix."""
    flags = {gshut for _, gshut in plan.announce}
    if len(flags) > 1:
        raise GateError("the gRPC gate marks all prefixes with GRACEFUL_SHUTDOWN or none")
    return flags.pop() if flags else None


def build_edit(gate: Gate, state: GateState, plan: Plan) -> Edit:
    """The one candidate edit that turns `state` into `state` + `plan`."""
    update: list[PathValue] = []
    delete: list[str] = []
    target = graceful_target(plan)
    withdraw = set(plan.withdraw)
    adds: dict[tuple[int, int], list[IPNetwork]] = {}
    present = {p for entries in state.entries.values() for p in entries.values()}
    for prefix, _ in plan.announce:
        if prefix not in present:
            adds.setdefault((prefix.version, gate.shard(prefix)), []).append(prefix)
    for key, entries in state.entries.items():
        version, shard = key
        for seq, prefix in entries.items():
            if prefix in withdraw:
                delete.append(f"{gate.plist_xpath(version, shard)}/entry[sequence='{seq}']")
    family = {4: "ipv4", 6: "ipv6"}
    for (version, shard), prefixes in sorted(adds.items()):
        entries = state.entries.get((version, shard), {})
        base = gate.plist_xpath(version, shard)
        for seq, prefix in zip(
            _free_seqs(entries, len(prefixes)), sorted(prefixes, key=prefix_key), strict=True
        ):
            entry = f"{base}/entry[sequence='{seq}']"
            update += [
                (f"{entry}/action", "permit"),
                (f"{entry}/{family[version]}-prefix", str(prefix)),
            ]
    # Sentinels and route-map entries are ensured on every commit that changes
    # anything, so a config that lost them (or never had them) heals; the
    # sentinels go in the same transaction as the entries they protect.
    if update or delete or target is not None:
        for version in (4, 6):
            for shard in range(gate.shards):
                key = (version, shard)
                if not state.sentinel.get(key, False):
                    update += gate.sentinel_updates(version, shard)
                if not state.rmap_ok.get(key, False):
                    update += gate.rmap_entry_updates(version, shard)
                on = state.graceful(version, shard)
                if target is True and not on:
                    update.append(gate.gshut_update(version, shard))
                elif target is False and on:
                    delete.append(gate.gshut_xpath(version, shard))
    return Edit(tuple(update), tuple(delete))


def nudge_edit(gate: Gate, state: GateState, prefixes: Iterable[IPNetwork]) -> Edit:
    """An edit that changes no announcement but makes bgpd ask zebra for the
    kernel routes again: per address family of `prefixes`, one of their
    entries moves to a free sequence number of its list.

    Any change to a gate list marks its route-map for update; once `bgp
    route-map delay-timer` fires, bgpd re-registers its `redistribute kernel`
    with zebra (bgp_redistribute_resend), and zebra sends every kernel route
    again. FRR 8.4's bgpd needs this after a zebra restart: it reconnects, but
    does not register its redistribution again, so kernel routes added since
    never reach it.
    """
    located = {
        prefix: (key, seq)
        for key, entries in state.entries.items()
        for seq, prefix in entries.items()
    }
    update: list[PathValue] = []
    delete: list[str] = []
    done: set[int] = set()
    for prefix in sorted(prefixes, key=prefix_key):
        if prefix.version in done or prefix not in located:
            continue
        (version, shard), seq = located[prefix]
        (free,) = _free_seqs(state.entries[(version, shard)], 1)
        base = gate.plist_xpath(version, shard)
        delete.append(f"{base}/entry[sequence='{seq}']")
        update += [
            (f"{base}/entry[sequence='{free}']/action", "permit"),
            (f"{base}/entry[sequence='{free}']/{_FAMILY[version]}-prefix", str(prefix)),
        ]
        done.add(version)
    return Edit(tuple(update), tuple(delete))
