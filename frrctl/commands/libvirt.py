"""`frrctl libvirt run | set-metadata | status`: frrctl follows libvirt's domains.

A command of its own, not part of `frrctl daemon`: every host with VMs needs
its ports plugged, including hosts in redistribute mode that run no
announcement daemon, and the two fail and restart independently (the
daemon only watches the routes that the agent's plugs create).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError, UsageError
from frrctl.host import DEFAULT_BRIDGE, state_dir_default
from frrctl.host.validate import parse_addresses, parse_mac

DEFAULT_URI = os.environ.get("FRRCTL_LIBVIRT_URI", "qemu:///system")
STATUS_FILE = "libvirt-agent.json"


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else state_dir_default()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--uri", "-c", default=DEFAULT_URI,
                   help=f"libvirt URI (default {DEFAULT_URI}, or $FRRCTL_LIBVIRT_URI)")  # fmt: skip


def _state(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir", type=Path, default=None,
        help="instance record and the agent's status (env FRRCTL_STATE_DIR, default "
        "/var/lib/frrctl)",
    )  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lv = sub.add_parser("libvirt", help="plug libvirt domains from their frrctl metadata")
    lsub = lv.add_subparsers(dest="libvirt_command", metavar="ACTION")
    lsub.required = True

    run = lsub.add_parser(
        "run",
        help="the agent: follow domain events, plug/unplug what runs on this host",
        description="Connect to libvirtd, reconcile every running domain with frrctl "
        "metadata against the instance record, then follow lifecycle, metadata and "
        "device events: plug on start and on resume (the destination of a live "
        "migration), unplug on stop, crash, destroy and when a migration pauses the "
        "guest here. Instances are named DOMAIN@MAC. Stopping the agent withdraws nothing.",
    )
    _common(run)
    _state(run)
    run.add_argument("--bridge", default=DEFAULT_BRIDGE, help="routed VM bridge (default cloudbr0)")
    run.add_argument(
        "--inventory", "-i", type=Path, default=None,
        help="fleet inventory: refuse addresses outside this host's pools",
    )  # fmt: skip
    run.add_argument("--host", default=None, help="this host in the inventory (default hostname)")
    run.add_argument("--resync", type=float, default=30.0,
                     help="full re-read every S seconds (default 30)")  # fmt: skip
    run.add_argument("--log-format", choices=("json", "text"), default="json")
    run.add_argument("--log-level", default="info")
    run.set_defaults(func=run_agent)

    sm = lsub.add_parser(
        "set-metadata",
        help="set the addresses of one of a domain's interfaces (live and persistent)",
        description="Write frrctl's <metadata> element of DOMAIN: interface MAC carries "
        "ADDR... (replacing what it had; --remove drops the interface). Applied to the "
        "running domain and to its persistent definition; idempotent.",
    )
    _common(sm)
    sm.add_argument("domain")
    sm.add_argument("--mac", required=True)
    sm.add_argument("--ip", action="append", default=[], metavar="ADDR", nargs="+",
                    help="host address (/32 or /128), repeatable")  # fmt: skip
    sm.add_argument("--remove", action="store_true", help="remove the interface's entry")
    sm.add_argument("--json", action="store_true")
    sm.set_defaults(func=run_set_metadata)

    st = lsub.add_parser(
        "status",
        help="what the agent plugged, and why not where it did not (exit 1: agent not running)",
    )
    _state(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)


def run_agent(args: argparse.Namespace) -> int:
    from frrctl.daemon import setup_logging
    from frrctl.host.instances import Host
    from frrctl.libvirt.agent import Agent

    setup_logging(args.log_format, args.log_level)
    pools = None
    if args.inventory is not None:
        from frrctl.inventory import load_inventory

        fleet = load_inventory(args.inventory)
        pools = fleet.pools_of(fleet.host(args.host or socket.gethostname().split(".")[0]))
    state_dir = _state_dir(args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with Host(state_dir, args.bridge) as host:
        agent = Agent(args.uri, host, pools, state_dir / STATUS_FILE, args.resync)
        agent.run(stop)
    return 0


def run_set_metadata(args: argparse.Namespace) -> int:
    from frrctl.libvirt.agent import set_metadata

    mac = parse_mac(args.mac)
    ips = [a for group in args.ip for a in group]
    if args.remove and ips:
        raise UsageError("give either --ip or --remove, not both")
    addrs = None if args.remove else parse_addresses(ips)
    changed = set_metadata(args.uri, args.domain, mac, addrs)
    if args.json:
        print(json.dumps({"domain": args.domain, "mac": mac, "changed": changed,
                          "addresses": [str(a) for a in addrs or ()]}))  # fmt: skip
    else:
        what = "removed" if addrs is None else " ".join(str(a) for a in addrs)
        print(f"{args.domain} {mac}: {what}{'' if changed else ' (unchanged)'}")
    return 0


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def run_status(args: argparse.Namespace) -> int:
    path = _state_dir(args) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise FrrctlError(f"no agent status at {path}: is `frrctl libvirt run` running?") from None
    data["running"] = _alive(data.get("pid"))
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0 if data["running"] else 1
    age = time.time() - float(data.get("updated") or 0)
    head = "running" if data["running"] else "NOT running"
    conn = "connected" if data.get("connected") else "NOT connected"
    print(f"agent {head}, {conn} to {data.get('uri')} (updated {age:.0f} s ago)")
    for name, d in sorted(data.get("domains", {}).items()):
        state = "running" if d.get("running") else "paused" if d.get("paused") else "not running"
        line = f"  {name}: {state}, plugged {', '.join(d.get('instances') or []) or 'nothing'}"
        if d.get("problem"):
            line += f"; NOT PLUGGED: {d['problem']}"
        if d.get("waiting"):
            line += f"; waiting for interface {', '.join(d['waiting'])}"
        print(line)
    if data.get("unowned_domains"):
        print(f"  without frrctl metadata (left alone): {', '.join(data['unowned_domains'])}")
    return 0 if data["running"] else 1
