"""`frrctl pool add|remove|allocate|release|list`: the SQLite address allocator."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from frrctl.errors import UsageError
from frrctl.ipam import DEFAULT_DB, Ipam


def _db(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    if env := os.environ.get("FRRCTL_IPAM_DB"):
        return Path(env)
    if state := os.environ.get("FRRCTL_STATE_DIR"):
        return Path(state) / "ipam.db"
    return DEFAULT_DB


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", type=Path, default=None,
                   help="SQLite file (env FRRCTL_IPAM_DB, else $FRRCTL_STATE_DIR/ipam.db, "
                   "default /var/lib/frrctl/ipam.db)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def register(sub: argparse._SubParsersAction) -> None:
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
    _common(p)
    p.set_defaults(func=run_add)

    p = psub.add_parser("remove", help="remove pool entries (refused while addresses are used)")
    p.add_argument("entries", nargs="+", metavar="ENTRY")
    p.add_argument("--force", action="store_true", help="remove even with allocations inside")
    _common(p)
    p.set_defaults(func=run_remove)

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
    _common(p)
    p.set_defaults(func=run_allocate)

    p = psub.add_parser("release", help="release addresses, or all of --instance")
    p.add_argument("addresses", nargs="*", metavar="ADDR")
    p.add_argument("--instance", default=None)
    _common(p)
    p.set_defaults(func=run_release)

    p = psub.add_parser("list", help="pool entries with use counts, and allocations")
    p.add_argument("--pool", default=None)
    p.add_argument("--instance", default=None, help="only this instance's allocations")
    _common(p)
    p.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
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
    _out(args, {"pool": args.pool, "added": added},
         f"pool {args.pool}: added {', '.join(added)}" if added
         else f"pool {args.pool}: nothing to add")  # fmt: skip
    return 0


def run_remove(args: argparse.Namespace) -> int:
    with Ipam(_db(args)) as ipam:
        removed = ipam.remove(args.entries, force=args.force)
    _out(args, {"removed": removed}, f"removed {', '.join(removed)}")
    return 0


def run_allocate(args: argparse.Namespace) -> int:
    with Ipam(_db(args)) as ipam:
        addr = ipam.allocate(args.instance, args.version, args.address, args.pool)
    _out(args, {"instance": args.instance, "address": str(addr)}, str(addr))
    return 0


def run_release(args: argparse.Namespace) -> int:
    if not args.addresses and not args.instance:
        raise UsageError("give addresses to release, or --instance")
    with Ipam(_db(args)) as ipam:
        released = ipam.release(args.addresses, args.instance)
    _out(args, {"released": [a.to_json() for a in released]},
         "released " + (", ".join(str(a.address) for a in released) or "nothing"))  # fmt: skip
    return 0


def run_list(args: argparse.Namespace) -> int:
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
