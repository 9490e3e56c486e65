"""Host data plane commands: host setup, instance, guest-config, configdrive, pool.

Every host/instance command works in the network namespace it runs in
(`ip netns exec NS frrctl ...`), takes `--state-dir` (env FRRCTL_STATE_DIR,
default /var/lib/frrctl) and `--bridge` (default cloudbr0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from frrctl.errors import UsageError
from frrctl.host import DEFAULT_BRIDGE, state_dir_default
from frrctl.host.validate import (
    parse_addresses,
    parse_ifname,
    parse_mac,
    parse_name,
)

Sub = argparse._SubParsersAction


def _common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    p.add_argument(
        "--state-dir", type=Path, default=None,
        help="where the instance record lives (env FRRCTL_STATE_DIR, default /var/lib/frrctl)",
    )  # fmt: skip
    p.add_argument("--bridge", default=DEFAULT_BRIDGE, help="routed VM bridge (default cloudbr0)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print the result as JSON")


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else state_dir_default()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)


def register(sub: Sub) -> None:
    # host setup ----------------------------------------------------------------
    host = sub.add_parser("host", help="hypervisor bridge setup")
    host_sub = host.add_subparsers(dest="host_command", metavar="ACTION")
    host_sub.required = True
    setup = host_sub.add_parser(
        "setup",
        help="create or repair the routed VM bridge (idempotent)",
        description="Create or repair BRIDGE in the current network namespace: no ports, "
        "STP off, forward delay 0, 169.254.0.1/32 and fe80::1/64, up, forwarding on, "
        "ARP/NDP settings so that guests reach the on-link gateway, no redirects.",
    )
    _common(setup)
    setup.add_argument(
        "--mac",
        default=None,
        help="bridge (gateway) MAC, the same on every host (default 02:a9:fe:00:00:01)",
    )
    setup.set_defaults(func=run_host_setup)

    # instance ------------------------------------------------------------------
    inst = sub.add_parser("instance", help="plug/unplug VM addresses on the bridge")
    isub = inst.add_subparsers(dest="instance_command", metavar="ACTION")
    isub.required = True
    plug = isub.add_parser(
        "plug",
        help="install host routes + permanent neighbours (and with --port the port guard)",
        description="Plug instance NAME: per address a host route on the bridge and a "
        "permanent neighbour entry with MAC, all or nothing. Re-plugging the same data "
        "changes nothing; other data replaces the instance's previous data.",
    )
    plug.add_argument("name")
    plug.add_argument("--mac", required=True)
    plug.add_argument("--ip", action="append", required=True, metavar="ADDR",
                      help="VM address (IPv4 /32 or IPv6 /128); repeat or space-separate",
                      nargs="+")  # fmt: skip
    plug.add_argument(
        "--port",
        default=None,
        metavar="IFACE",
        help="the VM's tap/veth: attach to the bridge, isolate, nftables guard",
    )
    plug.add_argument(
        "--link-local",
        action="append",
        default=None,
        metavar="ADDR",
        help="the guest's IPv6 link-local address(es) allowed by the guard "
        "(default: the EUI-64 one of --mac; 'any' allows fe80::/64)",
    )
    _common(plug)
    plug.set_defaults(func=run_plug)

    unplug = isub.add_parser("unplug", help="remove exactly what plug installed")
    unplug.add_argument("name")
    _common(unplug)
    unplug.set_defaults(func=run_unplug)

    rep = isub.add_parser(
        "repair",
        help="plug recorded instances again (after a reboot, or to fix drift)",
        description="Re-apply every recorded instance of the bridge (or only NAMEs) from "
        "the record: routes, neighbours, port settings and guard. Exit 1 if any failed.",
    )
    rep.add_argument("names", nargs="*", metavar="NAME")
    _common(rep)
    rep.set_defaults(func=run_repair)

    lst = isub.add_parser("list", help="recorded instances, checked against the kernel")
    _common(lst)
    lst.add_argument("--counters", action="store_true", help="include nftables drop counters")
    lst.add_argument("--check", action="store_true", help="exit 1 when anything drifted")
    lst.set_defaults(func=run_list)

    from frrctl.commands import guest as guest_cmds
    from frrctl.commands import pool as pool_cmds

    guest_cmds.register(sub)
    pool_cmds.register(sub)


def _flatten(values: list[list[str]] | None) -> list[str]:
    out: list[str] = []
    for group in values or []:
        for item in group:
            out.extend(x for x in item.replace(",", " ").split() if x)
    return out


def run_host_setup(args: argparse.Namespace) -> int:
    from frrctl.host.bridge import GATEWAY_MAC, setup_bridge
    from frrctl.host.netlink import Netlink

    bridge = parse_ifname(args.bridge, "bridge")
    mac = parse_mac(args.mac) if args.mac else GATEWAY_MAC
    with Netlink() as nl:
        report = setup_bridge(nl, bridge, mac)
    data = report.to_json()
    text = f"{bridge}: " + ("; ".join(report.changes) if report.changes else "already set up")
    if report.extra_addresses:
        text += f" (other addresses left alone: {', '.join(report.extra_addresses)})"
    _print(args, data, text)
    return 0


def run_plug(args: argparse.Namespace) -> int:
    from frrctl.host.instances import Host

    name = parse_name(args.name)
    mac = parse_mac(args.mac)
    addresses = parse_addresses(_flatten(args.ip))
    bridge = parse_ifname(args.bridge, "bridge")
    port = parse_ifname(args.port, "port") if args.port else None
    lls = None
    any_ll = False
    if args.link_local:
        import ipaddress

        raw = [x for x in args.link_local if x != "any"]
        any_ll = len(raw) != len(args.link_local)
        try:
            parsed = tuple(ipaddress.IPv6Address(x) for x in raw)
        except ValueError as exc:
            raise UsageError(f"--link-local: {exc}") from None
        for a in parsed:
            if not a.is_link_local:
                raise UsageError(f"--link-local {a} is not a link-local address")
        lls = parsed or None
    with Host(_state_dir(args), bridge) as host:
        result = host.plug(name, mac, addresses, port, link_locals=lls, any_link_local=any_ll)
    if result.changed:
        text = (
            f"plugged {name}: "
            + ", ".join(
                [f"+{a}" for a in result.added]
                + [f"-{a}" for a in result.removed]
                + [f"repaired {r}" for r in result.repaired]
            )
            if (result.added or result.removed or result.repaired)
            else f"plugged {name}: updated"
        )
    else:
        text = f"{name}: already plugged, nothing changed"
    _print(args, result.to_json(), text)
    return 0


def run_unplug(args: argparse.Namespace) -> int:
    from frrctl.host.instances import Host

    name = parse_name(args.name)
    with Host(_state_dir(args), parse_ifname(args.bridge, "bridge")) as host:
        result = host.unplug(name)
    text = (
        f"unplugged {name}: " + ", ".join(result.removed)
        if result.changed
        else f"{name}: not plugged, nothing changed"
    )
    _print(args, result.to_json(), text)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from frrctl.host.instances import Host

    with Host(_state_dir(args), parse_ifname(args.bridge, "bridge")) as host:
        data = host.listing(counters=args.counters)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        rows = data["instances"]
        if not data["bridge_present"]:
            print(f"warning: bridge {data['bridge']} is missing", file=sys.stderr)
        for e in rows:
            status = (
                "ok"
                if e["ok"]
                else "DRIFT: " + "; ".join(" ".join(str(v) for v in d.values()) for d in e["drift"])
            )
            port = f" port {e['port']}" if e["port"] else ""
            print(f"{e['name']} {e['mac']}{port} {' '.join(e['addresses'])} {status}")
        if data["unrecorded_routes"]:
            print("host routes on the bridge not recorded by frrctl: "
                  + " ".join(data["unrecorded_routes"]))  # fmt: skip
        if not rows:
            print(f"no instances plugged on {data['bridge']}")
    return 1 if args.check and data["drift"] else 0


def run_repair(args: argparse.Namespace) -> int:
    from frrctl.host.instances import Host

    names = [parse_name(n) for n in args.names]
    with Host(_state_dir(args), parse_ifname(args.bridge, "bridge")) as host:
        results = host.repair(names)
    failed = [r for r in results if "error" in r]
    if args.json:
        print(json.dumps({"results": results, "failed": len(failed)}, indent=2, sort_keys=True))
    else:
        for r in results:
            if "error" in r:
                print(f"{r['name']}: FAILED: {r['error']}")
            elif r["changed"]:
                print(f"{r['name']}: repaired " + ", ".join(r["added"] + r["repaired"]))
            else:
                print(f"{r['name']}: ok")
        if not results:
            print("no instances recorded")
    return 1 if failed else 0
