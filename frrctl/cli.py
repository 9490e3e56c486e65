"""Command line entry point: `frrctl <command> ...`.

Each command group lives in its own module exposing `register(subparsers)`;
a handler returns an exit status. Errors derived from FrrctlError become one
clear line on stderr and their exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from collections.abc import Sequence

from frrctl import __version__
from frrctl.errors import FrrctlError

# Modules that add subcommands; a missing optional module is skipped so that a
# partial checkout still gives a working CLI.
COMMAND_MODULES = (
    "frrctl.commands.render",
    "frrctl.commands.lab",
    "frrctl.commands.host",
    "frrctl.commands.daemon",
    "frrctl.commands.libvirt",
)
# `frrctl daemon` runs for the host's lifetime: its parser gets its own module
# only. The others import the renderer, the lab, pyroute2 and gRPC: ~30 MB the
# daemon would otherwise carry all its life (measured: 60 MB for the parser).
OWN_MODULE = {"daemon": "frrctl.commands.daemon"}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="frrctl",
        description="FRRouting controller for pure Layer-3 routed VMs: "
        "fleet config rendering, host data plane, announcement daemon and lab.",
    )
    parser.add_argument("--version", action="version", version=f"frrctl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def _terminated(signum: int, _frame: object) -> None:
    # SIGTERM's default kills Python without running `finally`: a killed
    # `lab bench` or `lab migrate` would leave its namespaces and FRR behind.
    # The daemon and the libvirt agent install handlers of their own.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():  # tests call main() in threads
        signal.signal(signal.SIGTERM, _terminated)
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), "")
    parser = build_parser((OWN_MODULE[command],) if command in OWN_MODULE else COMMAND_MODULES)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FrrctlError as exc:
        print(f"frrctl: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
