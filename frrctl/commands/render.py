"""`frrctl render`: inventory -> per-host FRR and bridge configs, checked by FRR."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from frrctl.frrcheck import check_config, vtysh_path
from frrctl.fsutil import write_atomic
from frrctl.inventory import load_inventory
from frrctl.render import render_fleet


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
    rendered = render_fleet(fleet, args.host)
    do_check = args.check if args.check is not None else vtysh_path() is not None
    if do_check:
        for hostname, files in rendered.items():
            check_config(files["frr.conf"], f"{hostname}/frr.conf")
    report = []
    for hostname, files in rendered.items():
        for rel, content in sorted(files.items()):
            path = args.out / hostname / rel
            changed = not (path.is_file() and path.read_text() == content)
            if changed:
                write_atomic(path, content)
            report.append({"host": hostname, "path": str(path), "changed": changed})
    if args.json:
        print(json.dumps({"checked": do_check, "files": report}, indent=2))
    else:
        written = sum(1 for r in report if r["changed"])
        print(
            f"rendered {len(rendered)} host(s) into {args.out}: {written} file(s) written, "
            f"{len(report) - written} unchanged" + ("" if do_check else " (not checked)")
        )
    return 0
