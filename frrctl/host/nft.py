"""nftables: the anti-spoofing guard of VM ports and the host's own guard for the bridge.

Two tables, both owned by frrctl and touched by nothing else:

* `netdev frrctl`: one base chain per VM port, on the port's own ingress hook
  (`type filter hook ingress device PORT`). It sees every frame the VM sends,
  before the bridge: whatever the destination MAC (the bridge hands 802.1D
  reserved multicast such as 01:80:c2:00:00:0e straight to the host's stack
  without running bridge prerouting, so a bridge-family guard is bypassed
  that way), whatever the ethertype or VLAN tag. The chain accepts only ARP,
  IPv4 and IPv6 from the VM's MAC and addresses; ARP only Ethernet/IPv4 with
  the VM as sender; neighbour discovery only with the layout a real stack
  sends (no extension header, at most one option, and a link-layer option
  only with the VM's MAC: the kernel honours any option position, so one
  allowed layout is the only way to check them all); no RA, redirect or
  multicast query. Every drop rule has a counter and a comment naming the
  reason; the chain's policy is drop, so a chain caught without its rules
  (mid-transaction) fails closed. A chain's comment carries a hash of its
  rules and port: a re-plug with the same data sees the same hash and
  changes nothing (counters kept).
* `inet frrctl`: what the host itself does with the bridge. From the VMs the
  host's stack accepts only ICMP that its gateway role needs (neighbour
  discovery, echo, errors): no bgpd, bfdd, ssh, gRPC or metrics for tenants.
  Nothing to or from 169.254.0.0/16 or fe80::/10 is forwarded. The host
  sends no ICMP/ICMPv6 redirects out of the bridge (guests on isolated ports
  must keep routing through the gateway).

Every change is one `nft -f -` script, i.e. one kernel transaction: it all
applies or nothing does. Rendering and parsing are pure (unit-tested); `Nft`
runs nft.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from frrctl.errors import FrrctlError
from frrctl.pools import IPAddress

TABLE = "frrctl"
FAMILY = "netdev"
LEGACY_FAMILY = "bridge"  # frrctl before the netdev guard: removed by host setup
PRIO_INGRESS = -500
DROP_REASONS = ("mac", "ethertype", "arp-hw", "arp-op", "arp-mac", "arp-ip", "arp-other",
                "ip4-src", "ip4-redirect", "mcast-query", "ip6-src", "ip6-unspec",
                "ip6-ra-redirect", "nd-options", "nd-lladdr", "na-target")  # fmt: skip
HOST_DROP_REASONS = ("host-input", "link-local-forward", "host-redirect")
# ICMP a guest needs from its gateway; everything else a VM sends to the host's
# own stack is dropped (`host-input`). Echo is allowed both ways so operators and
# guests can test reachability; errors so path MTU discovery and traceroute work.
HOST_ICMP4 = ("echo-reply", "destination-unreachable", "echo-request", "time-exceeded",
              "parameter-problem")  # fmt: skip
HOST_ICMP6 = ("destination-unreachable", "packet-too-big", "time-exceeded",
              "parameter-problem", "echo-request", "echo-reply", "nd-neighbor-solicit",
              "nd-neighbor-advert")  # fmt: skip

_CHAIN_RE = re.compile(r"^\tchain (\S+) \{$")
_COMMENT_RE = re.compile(r'^\t\tcomment "([^"]*)"$')
_DEVICE_RE = re.compile(r'hook ingress device "([^"]+)"')
_TABLE_RE = re.compile(r"^table (\S+) (\S+) \{$")


class NftError(FrrctlError):
    """nft refused a script or is not installed."""


def chain_name(instance: str) -> str:
    """A valid nft identifier for an instance, unique even after sanitising."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", instance)[:40]
    digest = hashlib.sha256(instance.encode()).hexdigest()[:8]
    return f"vm_{safe}_{digest}"


def _hex128(addr: IPAddress) -> str:
    return f"0x{int(addr):032x}"


def _set(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _drop(match: str, reason: str) -> str:
    return f'{match} counter drop comment "{reason}"'


def port_rules(
    mac: str,
    addresses: Sequence[IPAddress],
    link_locals: Sequence[IPAddress],
    any_link_local: bool = False,
) -> list[str]:
    """The rules of one VM port's chain, in order; the chain ends in a counted drop."""
    v4 = [str(a) for a in addresses if a.version == 4]
    v6 = [a for a in addresses if a.version == 6]
    ll = list(link_locals)
    hexmac = "0x" + mac.replace(":", "")
    # A tagged frame shows its tag's ethertype here, so it ends at the second rule.
    rules = [_drop(f"ether saddr != {mac}", "mac"),
             _drop("ether type != { arp, ip, ip6 }", "ethertype")]  # fmt: skip
    if v4:
        rules += [
            # hardware type 1 (Ethernet), protocol IPv4, lengths 6 and 4: the only
            # layout the MAC and address checks below read correctly (the kernel
            # also accepts IEEE 802, type 6)
            _drop("arp htype != 1", "arp-hw"),
            _drop("arp ptype != ip", "arp-hw"),
            _drop("arp hlen != 6", "arp-hw"),
            _drop("arp plen != 4", "arp-hw"),
            _drop("arp operation != { request, reply }", "arp-op"),
            _drop(f"arp saddr ether != {mac}", "arp-mac"),
            # Sender 0.0.0.0 only for requests: RFC 5227 probes claim nothing.
            _drop(f"arp saddr ip != {_set(v4)} arp operation != request", "arp-ip"),
            _drop(f"arp saddr ip != {_set([*v4, '0.0.0.0'])}", "arp-ip"),
            "ether type arp accept",
            _drop(f"ip saddr != {_set(v4)}", "ip4-src"),
            _drop("icmp type redirect", "ip4-redirect"),
            _drop("igmp type membership-query", "mcast-query"),
            "ether type ip accept",
        ]
    else:
        rules.append(_drop("ether type arp", "arp-other"))
    own6 = [str(a) for a in v6] + [str(a) for a in ll]
    if any_link_local:
        src6 = f"ip6 saddr != {_set([*(str(a) for a in v6), 'fe80::/64', '::'])}"
    else:
        src6 = f"ip6 saddr != {_set([*own6, '::'])}"
    nd = "{ nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert }"
    rules += [
        _drop(src6, "ip6-src"),
        # The unspecified source only for DAD and MLD, and only as ICMPv6 (a UDP
        # packet from :: would otherwise be forwarded).
        _drop("ip6 saddr :: meta l4proto != ipv6-icmp", "ip6-unspec"),
        _drop(
            "ip6 saddr :: icmpv6 type != { nd-neighbor-solicit, mld2-listener-report }",
            "ip6-unspec",
        ),
        _drop("icmpv6 type { nd-router-advert, nd-redirect }", "ip6-ra-redirect"),
        _drop("icmpv6 type mld-listener-query", "mcast-query"),
        # Neighbour discovery: no extension header, so `ip6 length` is the
        # ICMPv6 length; a message of the fixed part plus at most one option.
        _drop(f"icmpv6 type {nd} ip6 nexthdr != ipv6-icmp", "nd-options"),
        _drop("icmpv6 type nd-router-solicit ip6 length != { 8, 16 }", "nd-options"),
        _drop("icmpv6 type nd-router-solicit ip6 length 16 @th,64,16 != 0x0101", "nd-options"),
        _drop(f"icmpv6 type nd-router-solicit ip6 length 16 @th,80,48 != {hexmac}", "nd-lladdr"),
        _drop(
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 length != { 24, 32 }",
            "nd-options",
        ),
        # NS: source link-layer address (1) or a DAD nonce (14); NA: target (2).
        _drop(
            "icmpv6 type nd-neighbor-solicit ip6 length 32 @th,192,16 != { 0x0101, 0x0e01 }",
            "nd-options",
        ),
        _drop(
            f"icmpv6 type nd-neighbor-solicit ip6 length 32 @th,192,16 0x0101 "
            f"@th,208,48 != {hexmac}",
            "nd-lladdr",
        ),
        _drop("icmpv6 type nd-neighbor-advert ip6 length 32 @th,192,16 != 0x0201", "nd-options"),
        _drop(f"icmpv6 type nd-neighbor-advert ip6 length 32 @th,208,48 != {hexmac}", "nd-lladdr"),
    ]
    # Neighbour advertisements: the target (bytes 8-23 of the ICMPv6 message)
    # must be the VM's own. nft 1.0.6 has no `icmpv6 taraddr`: raw payload.
    targets = [_hex128(a) for a in v6] + [_hex128(a) for a in ll]
    if any_link_local:
        rules.append(_drop(
            "icmpv6 type nd-neighbor-advert @th,64,64 != 0xfe80000000000000"
            + (f" @th,64,128 != {_set(targets)}" if targets else ""), "na-target"
        ))  # fmt: skip
    else:
        rules.append(_drop(f"icmpv6 type nd-neighbor-advert @th,64,128 != {_set(targets)}",
                           "na-target"))  # fmt: skip
    rules += ["ether type ip6 accept", 'counter drop comment "ethertype"']
    return rules


def rules_hash(rules: Sequence[str], port: str) -> str:
    return hashlib.sha256(("\n".join(rules) + "\n" + port).encode()).hexdigest()[:16]


def _chain_spec(port: str, digest: str) -> str:
    return (f'{{ type filter hook ingress device "{port}" priority {PRIO_INGRESS}; '
            f'policy drop; comment "frrctl {digest}"; }}')  # fmt: skip


def _delete_chain(chain: str) -> list[str]:
    return [f"flush chain {FAMILY} {TABLE} {chain}", f"delete chain {FAMILY} {TABLE} {chain}"]


def plug_script(instance: str, port: str, rules: Sequence[str], table: PortTable) -> str:
    """One transaction: (re)create the instance's chain on the port's ingress hook.

    The chain is deleted and created again (not flushed) so that its comment,
    the digest of its rules, is always the current one. Any other chain bound
    to the same port goes too: a port has exactly one guard, its instance's.
    """
    chain = chain_name(instance)
    lines = [f"add table {FAMILY} {TABLE}"]
    for other, device in sorted(table.devices.items()):
        if other != chain and device == port:
            lines += _delete_chain(other)
    if chain in table.chains:
        lines += _delete_chain(chain)
    lines.append(f"add chain {FAMILY} {TABLE} {chain} {_chain_spec(port, rules_hash(rules, port))}")
    lines += [f"add rule {FAMILY} {TABLE} {chain} {rule}" for rule in rules]
    return "\n".join(lines) + "\n"


def unplug_script(instance: str, have_chain: bool) -> str:
    return "\n".join(_delete_chain(chain_name(instance))) + "\n" if have_chain else ""


def _host_chains(bridge: str) -> dict[str, tuple[str, list[str]]]:
    """The host guard's chains: name -> (hook, rules)."""
    suffix = re.sub(r"[^A-Za-z0-9_]", "_", bridge)
    br = f'"{bridge}"'
    icmp4, icmp6 = ", ".join(HOST_ICMP4), ", ".join(HOST_ICMP6)
    return {
        f"in_{suffix}": ("input", [
            f"iifname != {br} accept",
            f"icmp type {{ {icmp4} }} accept",
            f"icmpv6 type {{ {icmp6} }} accept",
            'counter drop comment "host-input"',
        ]),
        f"fwd_{suffix}": ("forward", [
            _drop("ip daddr 169.254.0.0/16", "link-local-forward"),
            _drop("ip saddr 169.254.0.0/16", "link-local-forward"),
            _drop("ip6 daddr fe80::/10", "link-local-forward"),
            _drop("ip6 saddr fe80::/10", "link-local-forward"),
        ]),
        f"out_{suffix}": ("output", [
            _drop(f"oifname {br} icmp type redirect", "host-redirect"),
            _drop(f"oifname {br} icmpv6 type nd-redirect", "host-redirect"),
        ]),
    }  # fmt: skip


def host_script(bridge: str) -> str:
    """The host's guard for the bridge (table inet frrctl), and no legacy bridge table."""
    lines = [f"add table {LEGACY_FAMILY} {TABLE}", f"delete table {LEGACY_FAMILY} {TABLE}",
             f"add table inet {TABLE}"]  # fmt: skip
    for chain, (hook, rules) in _host_chains(bridge).items():
        lines += [
            f"add chain inet {TABLE} {chain} {{ type filter hook {hook} priority 0; "
            "policy accept; }",
            f"flush chain inet {TABLE} {chain}",
            *(f"add rule inet {TABLE} {chain} {rule}" for rule in rules),
        ]
    return "\n".join(lines) + "\n"


@dataclass
class PortTable:
    """What the kernel's `netdev frrctl` table holds, per chain: comment, device, rules."""

    chains: dict[str, str]  # chain -> comment
    devices: dict[str, str]  # chain -> the port whose ingress it hooks
    rule_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> PortTable:
        return cls({}, {})

    def bound(self, chain: str, port: str) -> bool:
        return self.devices.get(chain) == port


def chain_matches(table: PortTable, chain: str, port: str, rules: Sequence[str]) -> bool:
    """The chain carries the digest of `rules` on `port`, is bound to it, has every rule."""
    return (
        table.chains.get(chain) == f"frrctl {rules_hash(rules, port)}"
        and table.bound(chain, port)
        and table.rule_counts.get(chain, 0) == len(rules)
    )


def parse_table(text: str) -> PortTable:
    """`nft list chains|table|chain` text -> the `netdev frrctl` part (pure).

    The text form, because nft 1.0's JSON leaves out chain comments, and the
    device once it is gone (kernels from 6.16 keep such a hook, by name).
    """
    table = PortTable.empty()
    inside = False
    chain: str | None = None
    for line in text.splitlines():
        if m := _TABLE_RE.match(line):
            inside = (m[1], m[2]) == (FAMILY, TABLE)
            continue
        if not inside:
            continue
        if m := _CHAIN_RE.match(line):
            chain = m[1]
            table.chains[chain] = ""
            table.rule_counts[chain] = 0
        elif chain is None or not line.startswith("\t\t"):
            continue
        elif m := _COMMENT_RE.match(line):
            table.chains[chain] = m[1]
        elif line.startswith("\t\ttype "):
            if d := _DEVICE_RE.search(line):
                table.devices[chain] = d[1]
        else:
            table.rule_counts[chain] += 1
    return table


class Nft:
    """Runs `nft`; one process per read or per transaction."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("nft") or "/usr/sbin/nft"
        self.binary = found

    def _proc(
        self, argv: Sequence[str], script: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.binary, *argv], input=script, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise NftError("nft not found: install the nftables package") from None

    def run(self, script: str) -> None:
        if not script.strip():
            return
        proc = self._proc(["-f", "-"], script)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["failed"])[0]
            raise NftError(f"nft refused the ruleset: {first}")

    def list_json(self, *what: str) -> list[dict[str, Any]] | None:
        proc = self._proc(["-j", "list", *what])
        if proc.returncode != 0:
            return None  # no such table/chain
        return list(json.loads(proc.stdout).get("nftables", []))

    def _text(self, *what: str) -> str:
        proc = self._proc(["list", *what])
        return proc.stdout if proc.returncode == 0 else ""

    def instance_view(self, instance: str) -> PortTable:
        """Every chain's hook and comment, the rules of this instance's only.

        `list chains` prints no rules, so the cost barely grows with other VMs.
        """
        table = parse_table(self._text("chains", FAMILY))
        chain = chain_name(instance)
        if chain in table.chains:
            mine = parse_table(self._text("chain", FAMILY, TABLE, chain))
            table.rule_counts[chain] = mine.rule_counts.get(chain, 0)
        return table

    def chain_view(self, instance: str) -> PortTable:
        """One `nft list chain`: the instance's chain alone (empty if it is not there).

        The cheap check of a re-plug whose record says the guard is in place;
        when it does not match, the caller reads the whole view (`instance_view`).
        """
        return parse_table(self._text("chain", FAMILY, TABLE, chain_name(instance)))

    def port_table(self) -> PortTable:
        return parse_table(self._text("table", FAMILY, TABLE))

    def counters(self, instance: str) -> dict[str, dict[str, int]]:
        """Drop counters of an instance chain, summed per reason (comment)."""
        return _counters(self.list_json("chain", FAMILY, TABLE, chain_name(instance)) or [])

    def host_counters(self, bridge: str) -> dict[str, dict[str, int]]:
        """Drop counters of the host's guard for the bridge, summed per reason."""
        out: dict[str, dict[str, int]] = {}
        for chain in _host_chains(bridge):
            for reason, c in _counters(self.list_json("chain", "inet", TABLE, chain) or []).items():
                slot = out.setdefault(reason, {"packets": 0, "bytes": 0})
                slot["packets"] += c["packets"]
                slot["bytes"] += c["bytes"]
        return out

    def host_ok(self, bridge: str) -> bool:
        """The host guard is there with exactly the rules host_script writes."""
        if self.list_json("table", LEGACY_FAMILY, TABLE) is not None:
            return False
        for chain, (_hook, rules) in _host_chains(bridge).items():
            items = self.list_json("chain", "inet", TABLE, chain)
            if items is None or sum(1 for i in items if "rule" in i) != len(rules):
                return False
            comments = [i["rule"].get("comment") for i in items if "rule" in i]
            wanted = [m[1] if (m := re.search(r'comment "([^"]+)"', r)) else None for r in rules]
            if comments != wanted:
                return False
        return True


def _counters(items: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in items:
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                slot = out.setdefault(rule["comment"], {"packets": 0, "bytes": 0})
                slot["packets"] += int(expr["counter"]["packets"])
                slot["bytes"] += int(expr["counter"]["bytes"])
    return out
