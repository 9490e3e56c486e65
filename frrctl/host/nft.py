"""nftables: the anti-spoofing guard of VM ports and the bridge's no-redirect rule.

Two tables, both owned by frrctl and touched by nothing else:

* `bridge frrctl`: a `prerouting` chain that sends every frame entering the
  bridge from a VM port to that instance's chain (`iifname vmap @ports`). The
  instance chain drops whatever does not carry the VM's MAC and addresses,
  ARP and neighbour advertisements that claim another address, router
  advertisements and redirects; every drop rule has a counter and a comment
  naming the reason. A chain's comment carries a hash of its rules: a re-plug
  with the same data sees the same hash and changes nothing (counters kept).
* `inet frrctl`: the host itself never sends ICMP/ICMPv6 redirects out of the
  bridge (guests on isolated ports must keep routing through the gateway).

Every change is one `nft -f -` script, i.e. one kernel transaction: it all
applies or nothing does. Rendering is pure (unit-tested); `Nft` runs nft.
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
PORT_MAP = "ports"
PRIO_BRIDGE = -200
CHAIN_COMMENT_RE = re.compile(r'chain (\S+) \{\n\s+comment "([^"]*)"')
RULE_LINE_RE = re.compile(r"\t\t[^\t ]")
DROP_REASONS = ("mac", "arp-mac", "arp-ip", "arp-other", "ip4-src", "ip4-redirect",
                "ip6-src", "ip6-unspec", "ip6-ra-redirect", "na-target", "nd-lladdr",
                "ethertype")  # fmt: skip


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


def port_rules(
    mac: str,
    addresses: Sequence[IPAddress],
    link_locals: Sequence[IPAddress],
    any_link_local: bool = False,
) -> list[str]:
    """The rules of one VM port's chain, in order; the chain ends in a drop."""
    v4 = [str(a) for a in addresses if a.version == 4]
    v6 = [a for a in addresses if a.version == 6]
    ll = list(link_locals)
    rules = [f'ether saddr != {mac} counter drop comment "mac"']
    if v4:
        rules += [
            f'arp htype 1 arp ptype ip arp saddr ether != {mac} counter drop comment "arp-mac"',
            # Sender 0.0.0.0 only for requests: RFC 5227 probes claim nothing.
            f'arp saddr ip != {_set(v4)} arp operation != request counter drop comment "arp-ip"',
            f'arp saddr ip != {_set([*v4, "0.0.0.0"])} counter drop comment "arp-ip"',
            "ether type arp accept",
            f'ip saddr != {_set(v4)} counter drop comment "ip4-src"',
            'icmp type redirect counter drop comment "ip4-redirect"',
            "ether type ip accept",
        ]
    own6 = [str(a) for a in v6] + [str(a) for a in ll]
    if any_link_local:
        src6 = f"ip6 saddr != {_set([*(str(a) for a in v6), 'fe80::/64', '::'])}"
    else:
        src6 = f"ip6 saddr != {_set([*own6, '::'])}"
    rules += [
        f'{src6} counter drop comment "ip6-src"',
        "ip6 saddr :: icmpv6 type != { nd-neighbor-solicit, mld2-listener-report } "
        'counter drop comment "ip6-unspec"',
        'icmpv6 type { nd-router-advert, nd-redirect } counter drop comment "ip6-ra-redirect"',
    ]
    # Neighbour advertisements: the target (bytes 8-23 of the ICMPv6 message)
    # must be the VM's own. nft 1.0.6 has no `icmpv6 taraddr`: raw payload.
    targets = [_hex128(a) for a in v6] + [_hex128(a) for a in ll]
    if any_link_local:
        rules.append(
            "icmpv6 type nd-neighbor-advert @th,64,64 != 0xfe80000000000000 "
            + (f"@th,64,128 != {_set(targets)} " if targets else "")
            + 'counter drop comment "na-target"'
        )
    else:
        rules.append(
            f"icmpv6 type nd-neighbor-advert @th,64,128 != {_set(targets)} "
            'counter drop comment "na-target"'
        )
    # The first option of an NS (source) or NA (target) link-layer address
    # starts at byte 24: type 1/2, length 1, then the MAC. It must be ours.
    hexmac = "0x" + mac.replace(":", "")
    rules += [
        f"icmpv6 type nd-neighbor-solicit @th,192,16 0x0101 @th,208,48 != {hexmac} "
        'counter drop comment "nd-lladdr"',
        f"icmpv6 type nd-neighbor-advert @th,192,16 0x0201 @th,208,48 != {hexmac} "
        'counter drop comment "nd-lladdr"',
        "ether type ip6 accept",
    ]
    if not v4:
        rules.insert(1, 'ether type arp counter drop comment "arp-other"')
    rules.append('counter drop comment "ethertype"')
    return rules


def rules_hash(rules: Sequence[str], port: str) -> str:
    return hashlib.sha256(("\n".join(rules) + "\n" + port).encode()).hexdigest()[:16]


def plug_script(instance: str, port: str, rules: Sequence[str], table: PortTable) -> str:
    """One transaction: (re)create the instance chain and point the port at it.

    The chain is deleted and created again (not flushed) so that its comment,
    the digest of its rules, is always the current one; map elements that
    point at it, or that name the port, are removed first and re-added.
    """
    chain = chain_name(instance)
    digest = rules_hash(rules, port)
    lines = [
        f"add table bridge {TABLE}",
        f"add map bridge {TABLE} {PORT_MAP} {{ type ifname : verdict; }}",
        f"add chain bridge {TABLE} prerouting {{ type filter hook prerouting "
        f"priority {PRIO_BRIDGE}; policy accept; }}",
        f"flush chain bridge {TABLE} prerouting",
        f"add rule bridge {TABLE} prerouting iifname vmap @{PORT_MAP}",
    ]
    for elem_port, target in sorted(table.elements.items()):
        if target == chain or elem_port == port:
            lines.append(f'delete element bridge {TABLE} {PORT_MAP} {{ "{elem_port}" }}')
    if chain in table.chains:
        lines += [f"flush chain bridge {TABLE} {chain}", f"delete chain bridge {TABLE} {chain}"]
    lines.append(f'add chain bridge {TABLE} {chain} {{ comment "frrctl {digest}"; }}')
    lines += [f"add rule bridge {TABLE} {chain} {rule}" for rule in rules]
    lines.append(f'add element bridge {TABLE} {PORT_MAP} {{ "{port}" : jump {chain} }}')
    return "\n".join(lines) + "\n"


def unplug_script(instance: str, port: str | None, have_element: bool, have_chain: bool) -> str:
    chain = chain_name(instance)
    lines: list[str] = []
    if have_element and port is not None:
        lines.append(f'delete element bridge {TABLE} {PORT_MAP} {{ "{port}" }}')
    if have_chain:
        lines += [f"flush chain bridge {TABLE} {chain}", f"delete chain bridge {TABLE} {chain}"]
    return "\n".join(lines) + ("\n" if lines else "")


def host_script(bridge: str) -> str:
    """The host never sends redirects out of the bridge (table inet frrctl)."""
    chain = "out_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)
    return (
        f"add table inet {TABLE}\n"
        f"add chain inet {TABLE} {chain} {{ type filter hook output priority 0; "
        "policy accept; }\n"
        f"flush chain inet {TABLE} {chain}\n"
        f'add rule inet {TABLE} {chain} oifname "{bridge}" icmp type redirect counter drop '
        'comment "host-redirect"\n'
        f'add rule inet {TABLE} {chain} oifname "{bridge}" icmpv6 type nd-redirect counter '
        'drop comment "host-redirect"\n'
    )


@dataclass
class PortTable:
    """What the kernel's `bridge frrctl` table holds: chains (with comments), map."""

    chains: dict[str, str]
    elements: dict[str, str]  # port -> chain it jumps to
    rule_counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> PortTable:
        return cls({}, {})


class Nft:
    """Runs `nft`; one process per read or per transaction."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or shutil.which("nft") or "/usr/sbin/nft"
        self.binary = found

    def run(self, script: str) -> None:
        if not script.strip():
            return
        try:
            proc = subprocess.run(
                [self.binary, "-f", "-"], input=script, capture_output=True, text=True
            )
        except FileNotFoundError:
            raise NftError("nft not found: install the nftables package") from None
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or ["failed"])[0]
            raise NftError(f"nft refused the ruleset: {first}")

    def list_json(self, *what: str) -> list[dict[str, Any]] | None:
        try:
            proc = subprocess.run(
                [self.binary, "-j", "list", *what], capture_output=True, text=True
            )
        except FileNotFoundError:
            raise NftError("nft not found: install the nftables package") from None
        if proc.returncode != 0:
            return None  # no such table/chain
        return list(json.loads(proc.stdout).get("nftables", []))

    def instance_view(self, instance: str) -> PortTable:
        """The port map and only this instance's chain: cost independent of other VMs'."""
        table = PortTable.empty()
        chain = chain_name(instance)
        items = self.list_json("map", "bridge", TABLE, PORT_MAP) or []
        for item in items:
            if "map" in item:
                for port, verdict in item["map"].get("elem", []):
                    target = (
                        verdict.get("jump", {}).get("target") if isinstance(verdict, dict) else None
                    )
                    table.elements[str(port)] = str(target)
        proc = subprocess.run(
            [self.binary, "list", "chain", "bridge", TABLE, chain], capture_output=True, text=True
        )
        if proc.returncode == 0:
            found = CHAIN_COMMENT_RE.findall(proc.stdout)
            table.chains[chain] = found[0][1] if found else ""
            table.rule_counts[chain] = sum(
                1 for line in proc.stdout.splitlines()
                if RULE_LINE_RE.match(line) and not line.strip().startswith("comment ")
            )  # fmt: skip
        return table

    def port_table(self) -> PortTable:
        items = self.list_json("table", "bridge", TABLE)
        table = PortTable.empty()
        if items is None:
            return table
        for item in items:
            if "chain" in item:
                table.chains[item["chain"]["name"]] = ""
            elif "rule" in item:
                name = item["rule"]["chain"]
                table.rule_counts[name] = table.rule_counts.get(name, 0) + 1
            elif "map" in item and item["map"]["name"] == PORT_MAP:
                for elem in item["map"].get("elem", []):
                    port, verdict = elem
                    target = None
                    if isinstance(verdict, dict):
                        target = verdict.get("jump", {}).get("target")
                    table.elements[str(port)] = str(target)
        # nft 1.0's JSON leaves chain comments out: read them from the text form.
        proc = subprocess.run(
            [self.binary, "list", "table", "bridge", TABLE], capture_output=True, text=True
        )
        for name, comment in CHAIN_COMMENT_RE.findall(proc.stdout):
            if name in table.chains:
                table.chains[name] = comment
        return table

    def counters(self, instance: str) -> dict[str, dict[str, int]]:
        """Drop counters of an instance chain, summed per reason (comment)."""
        items = self.list_json("chain", "bridge", TABLE, chain_name(instance)) or []
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

    def host_ok(self, bridge: str) -> bool:
        chain = "out_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)
        items = self.list_json("chain", "inet", TABLE, chain)
        if items is None:
            return False
        comments = [i["rule"].get("comment") for i in items if "rule" in i]
        return comments == ["host-redirect", "host-redirect"]
