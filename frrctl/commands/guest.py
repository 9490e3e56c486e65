"""`frrctl guest-config` and `frrctl configdrive`: what a routed guest needs to boot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from frrctl.errors import UsageError
from frrctl.guest.netconfig import FORMATS, GuestNet, render


def _flatten(values: list[list[str]] | None) -> list[str]:
    out: list[str] = []
    for group in values or []:
        for item in group:
            out.extend(x for x in item.replace(",", " ").split() if x)
    return out


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


def register(sub: argparse._SubParsersAction) -> None:
    gc = sub.add_parser(
        "guest-config",
        help="print a routed guest's network configuration",
        description="Print the guest network configuration: cloud-init network-config v2 "
        "(netplan), OpenStack network_data.json (network-data), Windows PowerShell "
        "(windows), iproute2 commands (ip) or a JSON summary (json). Addresses are /32 and "
        "/128; the gateways are 169.254.0.1 and fe80::1, on-link.",
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
