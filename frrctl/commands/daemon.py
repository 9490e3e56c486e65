"""`frrctl daemon | status | drain | undrain | hold | release`.

All take `--inventory FILE --host NAME --vty-dir DIR --state-dir DIR`, so that
a lab runs one daemon per host namespace (`ip netns exec NS frrctl daemon
...`) and talks to each through its own state directory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

from frrctl.errors import UsageError
from frrctl.policy import Drain, prefix_key
from frrctl.status import (
    DaemonNotRunning,
    DaemonStatus,
    OperatorState,
    format_status,
    host_prefix,
    request,
    update_operator,
)

DEFAULT_INVENTORY = Path(os.environ.get("FRRCTL_INVENTORY", "/etc/frrctl/fleet.yaml"))
DEFAULT_VTY_DIR = Path("/var/run/frr")
DEFAULT_STATE_DIR = Path(os.environ.get("FRRCTL_DAEMON_STATE_DIR", "/var/lib/frrctl/daemon"))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inventory",
        "-i",
        type=Path,
        default=DEFAULT_INVENTORY,
        help=f"fleet inventory (default {DEFAULT_INVENTORY}, or $FRRCTL_INVENTORY)",
    )
    p.add_argument(
        "--host",
        default=None,
        help="this host's name in the inventory (default: the short hostname)",
    )
    p.add_argument(
        "--vty-dir",
        type=Path,
        default=DEFAULT_VTY_DIR,
        help=f"FRR's vty socket directory (default {DEFAULT_VTY_DIR})",
    )
    p.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                   help="daemon state: operator.json (drain, holds) and control.sock "
                   f"(default {DEFAULT_STATE_DIR}, or $FRRCTL_DAEMON_STATE_DIR)")  # fmt: skip


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "daemon",
        help="run the announcement daemon (watch -> policy -> FRR -> verify)",
        description="Watch the host routes on the bridge and make FRR announce exactly "
        "what the policy allows, with the driver from the host's inventory entry "
        "(controller: driver, max-prefixes, require-neighbor, grpc-port, metrics-port). "
        "Stopping it leaves FRR's announcements in place.",
    )
    _common(p)
    p.add_argument("--driver", choices=("vtysh", "grpc"), help="override the inventory's driver")
    p.add_argument("--grpc-target", help="gRPC target (default 127.0.0.1:<grpc-port>)")
    p.add_argument(
        "--no-grpc-guard",
        dest="grpc_guard",
        action="store_false",
        default=None,
        help="do not install the nftables rule that closes the gRPC port to everything "
        "but loopback (firewall it yourself)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="override the inventory's metrics-port (0: no metrics endpoint)",
    )
    p.add_argument(
        "--verify-interval",
        type=float,
        help="seconds between checks of FRR's state when idle (default 30)",
    )
    p.add_argument(
        "--liveness-interval",
        type=float,
        help="seconds between checks of the kernel's routes against the daemon's view (default 10)",
    )
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))  # fmt: skip
    p.set_defaults(func=run_daemon)

    p = sub.add_parser(
        "status",
        help="each candidate prefix: in kernel, verdict and reason, in FRR, advertised to",
    )
    _common(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the per-peer advertised-routes lookup (faster on big hosts)",
    )
    p.set_defaults(func=run_status)

    p = sub.add_parser(
        "drain",
        help="withdraw everything this host announces (or, with --graceful, keep it "
        "announced with the GRACEFUL_SHUTDOWN community)",
    )
    _common(p)
    p.add_argument(
        "--graceful",
        action="store_true",
        help="keep announcing, with GRACEFUL_SHUTDOWN, so the fabric moves first",
    )
    p.set_defaults(func=run_drain)

    p = sub.add_parser("undrain", help="announce again what the policy allows")
    _common(p)
    p.set_defaults(func=run_undrain)

    p = sub.add_parser("hold", help="hold prefixes back: never announce them")
    _common(p)
    p.add_argument("prefixes", nargs="+", metavar="PREFIX", help="address or /32, /128")
    p.set_defaults(func=run_hold)

    p = sub.add_parser("release", help="release held prefixes")
    _common(p)
    p.add_argument("prefixes", nargs="*", metavar="PREFIX", help="address or /32, /128")
    p.add_argument("--all", action="store_true", help="release every held prefix")
    p.set_defaults(func=run_release)


def _hostname(args: argparse.Namespace) -> str:
    return args.host or socket.gethostname().split(".")[0]


def run_daemon(args: argparse.Namespace) -> int:
    from frrctl.daemon import Daemon, DaemonSettings, setup_logging

    setup_logging(args.log_format, args.log_level)
    for flag in ("verify_interval", "liveness_interval"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    settings = DaemonSettings.from_inventory(
        args.inventory,
        _hostname(args),
        args.vty_dir,
        args.state_dir,
        driver=args.driver,
        grpc_target=args.grpc_target,
        metrics_port=args.metrics_port,
        verify_interval=args.verify_interval,
        liveness_interval=args.liveness_interval,
        grpc_guard=args.grpc_guard,
    )
    Daemon(settings).run()
    return 0


def run_status(args: argparse.Namespace) -> int:
    reply = request(args.state_dir, {"cmd": "status", "peers": not args.no_peers})
    status = DaemonStatus.from_json(reply)
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        print(format_status(status))
    return 0


def _apply(args: argparse.Namespace, state: OperatorState, what: str) -> int:
    """Tell a running daemon to apply the new operator state now; fine if none runs."""
    try:
        reply = request(args.state_dir, {"cmd": "reload"}, timeout=120)
    except DaemonNotRunning:
        print(f"{what}; the daemon is not running: applied when it starts")
        return 0
    if not reply.get("applied"):
        print(f"{what}; the daemon will apply it when FRR answers: {reply.get('last_error')}")
        return 1
    print(f"{what}; FRR now announces {reply.get('announced')} prefix(es)")
    return 0


def run_drain(args: argparse.Namespace) -> int:
    mode = Drain.GRACEFUL if args.graceful else Drain.WITHDRAW
    state = update_operator(args.state_dir, lambda s: OperatorState(mode, s.held))
    text = "graceful (GRACEFUL_SHUTDOWN)" if args.graceful else "withdraw everything"
    return _apply(args, state, f"drained: {text}")


def run_undrain(args: argparse.Namespace) -> int:
    state = update_operator(args.state_dir, lambda s: OperatorState(Drain.NONE, s.held))
    return _apply(args, state, "undrained")


def run_hold(args: argparse.Namespace) -> int:
    prefixes = {host_prefix(p) for p in args.prefixes}
    state = update_operator(args.state_dir, lambda s: OperatorState(s.drain, s.held | prefixes))
    names = ", ".join(str(p) for p in sorted(prefixes, key=prefix_key))
    return _apply(args, state, f"held: {names} ({len(state.held)} held in all)")


def run_release(args: argparse.Namespace) -> int:
    if not args.prefixes and not args.all:
        raise UsageError("name the prefixes to release, or --all")
    prefixes = {host_prefix(p) for p in args.prefixes}

    def change(s: OperatorState) -> OperatorState:
        return OperatorState(s.drain, frozenset() if args.all else s.held - prefixes)

    state = update_operator(args.state_dir, change)
    return _apply(args, state, f"released ({len(state.held)} still held)")
