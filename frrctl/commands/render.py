"""`frrctl render`: inventory -> per-host FRR and bridge configs, checked by FRR."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from frrctl.frrcheck import vtysh_path
from frrctl.inventory import load_inventory
from frrctl.pipeline import publish


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render",
        help="render per-host FRR config, daemons file and bridge config",
        description="Render DIR/<host>/frr.conf, daemons, ifupdown/<bridge> and "
        "networkd/10-<bridge>.{netdev,network} for every host of the inventory. "
        "Nothing is written unless every host renders and (with --check) every "
        "frr.conf passes `vtysh -C`. Unchanged files are left untouched.",
    )
    p.add_argument("--inventory", "-i", required=True, type=Path, help="fleet YAML file")
    p.add_argument("--out", "-o", required=True, type=Path, help="output directory")
    p.add_argument("--host", help="render only this host")
    check = p.add_mutually_exclusive_group()
    check.add_argument(
        "--check",
        dest="check",
        action="store_true",
        default=None,
        help="check every frr.conf with `vtysh -C -f` (default when vtysh exists)",
    )
    check.add_argument(
        "--no-check", dest="check", action="store_false", help="skip the vtysh check"
    )
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fleet = load_inventory(args.inventory)
    do_check = args.check if args.check is not None else vtysh_path() is not None
    files = publish(fleet, lambda host: args.out / host, args.host, do_check)
    if args.json:
        report = [{"host": f.host, "path": str(f.path), "changed": f.changed} for f in files]
        print(json.dumps({"checked": do_check, "files": report}, indent=2))
    else:
        changed = sum(f.changed for f in files)
        print(
            f"rendered {len({f.host for f in files})} host(s) into {args.out}: {changed} file(s) "
            f"written, {len(files) - changed} unchanged" + ("" if do_check else " (not checked)")
        )
    return 0
