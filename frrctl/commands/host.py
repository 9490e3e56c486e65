"""Host data plane commands: host setup, instance, guest-config, configdrive, pool.

Every host/instance command works in the network namespace it runs in
(`ip netns exec NS frrctl ...`), takes `--state-dir` (env FRRCTL_STATE_DIR,
default /var/lib/frrctl) and `--bridge` (default cloudbr0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from frrctl.errors import UsageError
from frrctl.guest.netconfig import FORMATS, GuestNet, render
from frrctl.host import DEFAULT_BRIDGE, state_dir_default
from frrctl.host.validate import (
    parse_addresses,
    parse_ifname,
    parse_mac,
    parse_name,
)
from frrctl.ipam import DEFAULT_DB, Ipam

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

    _register_guest(sub)
    _register_pool(sub)


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
        if not data["bridge_present"]:
            print(f"warning: bridge {data['bridge']} is missing", file=sys.stderr)
        for line in format_listing(data):
            print(line)
    return 1 if args.check and data["drift"] else 0


def format_listing(data: dict[str, Any]) -> list[str]:
    """The text view of `instance list`: one line per instance with its state
    (plugged, or prepared: a migration's destination, nothing routed yet)."""
    lines = []
    for e in data["instances"]:
        status = (
            "ok"
            if e["ok"]
            else "DRIFT: " + "; ".join(" ".join(str(v) for v in d.values()) for d in e["drift"])
        )
        port = f" port {e['port']}" if e["port"] else ""
        state = e.get("state", "plugged")
        if state == "prepared":
            state = "prepared (not routed yet)"
        lines.append(f"{e['name']} {e['mac']}{port} {' '.join(e['addresses'])} {state} {status}")
    if data["unrecorded_routes"]:
        lines.append("host routes on the bridge not recorded by frrctl: "
                     + " ".join(data["unrecorded_routes"]))  # fmt: skip
    if not data["instances"]:
        lines.append(f"no instances plugged on {data['bridge']}")
    return lines


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


# -- guest-config, configdrive ----------------------------------------------------
def _net_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mac", required=True, help="the VM's MAC (the guest matches its NIC by it)")
    p.add_argument(
        "--ip",
        action="append",
        nargs="+",
        required=True,
        metavar="ADDR",
        help="VM address(es): IPv4 /32, IPv6 /128; repeat or space-separate",
    )
    p.add_argument(
        "--dns", action="append", nargs="+", default=None, metavar="ADDR", help="name server(s)"
    )
    p.add_argument("--ifname", default="eth0", help="guest interface name (default eth0)")
    p.add_argument("--mtu", type=int, default=None, help="MTU (default: leave it)")


def _net(args: argparse.Namespace) -> GuestNet:
    return GuestNet.parse(args.mac, _flatten(args.ip), _flatten(args.dns), args.ifname, args.mtu)


def _register_guest(sub: Sub) -> None:
    from frrctl.guest.support import help_text

    gc = sub.add_parser(
        "guest-config",
        help="print a routed guest's network configuration",
        description="Print the guest network configuration: OpenStack network_data.json "
        "(network-data: Debian/ENI and systemd-networkd guests, and any ConfigDrive), "
        "cloud-init network-config v2 (netplan: netplan guests; ENI and networkd read it "
        "too), Windows PowerShell (windows), iproute2 commands (ip) or a JSON summary "
        "(json). Addresses are /32 and /128; the gateways are 169.254.0.1 and fe80::1, "
        "on-link.",
        epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _net_args(gc)
    gc.add_argument("--format", "-f", required=True, choices=FORMATS)
    gc.add_argument("--out", "-o", type=Path, default=None, help="write to FILE, not stdout")
    gc.set_defaults(func=run_guest_config)

    cd = sub.add_parser(
        "configdrive",
        help="build a ConfigDrive ISO (label config-2) for a routed guest",
        description="Build an OpenStack ConfigDrive ISO: openstack/latest/meta_data.json, "
        "network_data.json (routed /32 and /128), vendor_data.json, optional user_data.",
    )
    cd.add_argument("--out", "-o", type=Path, required=True, metavar="FILE.iso")
    _net_args(cd)
    cd.add_argument("--hostname", default="vm")
    cd.add_argument(
        "--instance-id",
        "--uuid",
        dest="instance_id",
        default=None,
        help="meta_data uuid (default: a random UUID)",
    )
    cd.add_argument(
        "--user-data",
        type=Path,
        default=None,
        metavar="FILE",
        help="user data file (cloud-config, script), copied verbatim",
    )
    cd.add_argument(
        "--ssh-key",
        action="append",
        default=None,
        metavar="KEY|FILE",
        help="SSH public key (text or a file), repeatable",
    )
    cd.add_argument("--json", action="store_true", help="print what was built as JSON")
    cd.set_defaults(func=run_configdrive)


def run_guest_config(args: argparse.Namespace) -> int:
    text = render(_net(args), args.format)
    if args.out:
        from frrctl.fsutil import write_atomic

        write_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    return 0


def run_configdrive(args: argparse.Namespace) -> int:
    from frrctl.guest.configdrive import DriveSpec, build_iso

    net = _net(args)
    user_data = None
    if args.user_data is not None:
        try:
            user_data = args.user_data.read_bytes()
        except OSError as exc:
            raise UsageError(f"--user-data {args.user_data}: {exc.strerror}") from None
    keys: dict[str, str] = {}
    for i, key in enumerate(args.ssh_key or []):
        path = Path(key)
        text = path.read_text().strip() if path.is_file() else key.strip()
        if not text.startswith(("ssh-", "ecdsa-", "sk-")):
            raise UsageError(f"--ssh-key {key!r} is not an SSH public key or a file holding one")
        keys[f"key-{i}"] = text
    spec = DriveSpec(net=net, hostname=args.hostname, user_data=user_data, public_keys=keys)
    if args.instance_id:
        spec.instance_id = args.instance_id
    report = build_iso(spec, args.out)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"wrote {report['iso']} (label {report['label']}, uuid {report['uuid']})")
    return 0


# -- pool ---------------------------------------------------------------------------
def _db(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    if env := os.environ.get("FRRCTL_IPAM_DB"):
        return Path(env)
    if state := os.environ.get("FRRCTL_STATE_DIR"):
        return Path(state) / "ipam.db"
    return DEFAULT_DB


def _pool_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=None,
                   help="SQLite file (env FRRCTL_IPAM_DB, else $FRRCTL_STATE_DIR/ipam.db, "
                   "default /var/lib/frrctl/ipam.db)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _pool_out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _register_pool(sub: Sub) -> None:
    pool = sub.add_parser("pool", help="address pools and allocations (SQLite)")
    psub = pool.add_subparsers(dest="pool_command", metavar="ACTION")
    psub.required = True

    p = psub.add_parser("add", help="add addresses, prefixes or ranges (a-b) to a pool",
                        description="Entries as in the inventory: 192.0.2.7, 192.0.2.0/24 "
                        "(every address usable), 192.0.2.100-192.0.2.120, IPv6 alike. "
                        "Already present: no-op. Overlap: error, nothing added.")  # fmt: skip
    p.add_argument("entries", nargs="*", metavar="ENTRY")
    p.add_argument("--pool", default="default", help="pool name (default: default)")
    p.add_argument(
        "--inventory",
        type=Path,
        default=None,
        help="also add the pools of this fleet inventory (fabric, or --host's)",
    )
    p.add_argument("--host", default=None, help="with --inventory: that host's pools")
    _pool_common(p)
    p.set_defaults(func=run_pool_add)

    p = psub.add_parser("remove", help="remove pool entries (refused while addresses are used)")
    p.add_argument("entries", nargs="+", metavar="ENTRY")
    p.add_argument("--force", action="store_true", help="remove even with allocations inside")
    _pool_common(p)
    p.set_defaults(func=run_pool_remove)

    p = psub.add_parser("allocate", help="give an instance the next free or a given address")
    p.add_argument("instance")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="version", action="store_const", const=4, help="IPv4 (default)")
    fam.add_argument("-6", dest="version", action="store_const", const=6, help="IPv6")
    fam.add_argument(
        "--ip",
        dest="address",
        default=None,
        metavar="ADDR",
        help="this address (idempotent for the same instance)",
    )
    p.add_argument("--pool", default=None, help="only from this pool")
    _pool_common(p)
    p.set_defaults(func=run_pool_allocate)

    p = psub.add_parser("release", help="release addresses, or all of --instance")
    p.add_argument("addresses", nargs="*", metavar="ADDR")
    p.add_argument("--instance", default=None)
    _pool_common(p)
    p.set_defaults(func=run_pool_release)

    p = psub.add_parser("list", help="pool entries with use counts, and allocations")
    p.add_argument("--pool", default=None)
    p.add_argument("--instance", default=None, help="only this instance's allocations")
    _pool_common(p)
    p.set_defaults(func=run_pool_list)


def run_pool_add(args: argparse.Namespace) -> int:
    entries = list(args.entries)
    if args.inventory is not None:
        from frrctl.inventory import load_inventory

        fleet = load_inventory(args.inventory)
        pools = fleet.pools_of(fleet.host(args.host)) if args.host else fleet.fabric.pools.build()
        entries += [e.text for e in (*pools.ipv4, *pools.ipv6)]
    elif args.host:
        raise UsageError("--host needs --inventory")
    if not entries:
        raise UsageError("give pool entries or --inventory")
    with Ipam(_db(args)) as ipam:
        added = ipam.add(entries, args.pool)
    _pool_out(args, {"pool": args.pool, "added": added},
         f"pool {args.pool}: added {', '.join(added)}" if added
         else f"pool {args.pool}: nothing to add")  # fmt: skip
    return 0


def run_pool_remove(args: argparse.Namespace) -> int:
    with Ipam(_db(args)) as ipam:
        removed = ipam.remove(args.entries, force=args.force)
    _pool_out(args, {"removed": removed}, f"removed {', '.join(removed)}")
    return 0


def run_pool_allocate(args: argparse.Namespace) -> int:
    with Ipam(_db(args)) as ipam:
        addr = ipam.allocate(args.instance, args.version, args.address, args.pool)
    _pool_out(args, {"instance": args.instance, "address": str(addr)}, str(addr))
    return 0


def run_pool_release(args: argparse.Namespace) -> int:
    if not args.addresses and not args.instance:
        raise UsageError("give addresses to release, or --instance")
    with Ipam(_db(args)) as ipam:
        released = ipam.release(args.addresses, args.instance)
    _pool_out(args, {"released": [a.to_json() for a in released]},
         "released " + (", ".join(str(a.address) for a in released) or "nothing"))  # fmt: skip
    return 0


def run_pool_list(args: argparse.Namespace) -> int:
    with Ipam(_db(args)) as ipam:
        data = ipam.summary(args.pool)
        if args.instance:
            data["allocations"] = [a.to_json() for a in ipam.allocations(args.instance)]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for e in data["entries"]:
        print(f"{e['pool']:<12} {e['entry']:<40} used {e['used']}/{e['size']}")
    for a in data["allocations"]:
        print(f"  {a['address']:<40} {a['instance']}")
    if not data["entries"]:
        print("no pools")
    return 0
