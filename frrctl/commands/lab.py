"""`frrctl lab up|verify|down`: the fleet in network namespaces, and its proof."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from frrctl.errors import UsageError
from frrctl.lab import runner, state
from frrctl.lab.bench import bench_drivers, default_drivers
from frrctl.lab.verify import collect, format_table

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "fleet.yaml"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser(
        "lab",
        help="build, verify and remove the example fabric in network namespaces (root)",
        description="A lab of network namespaces: every host of the inventory runs FRR with "
        "its rendered config, an upstream FRR router plays the fabric, an ExaBGP peer "
        "records what the upstream announces, VMs sit behind each host's bridge.",
    )
    lab.add_argument(
        "--state-dir",
        type=Path,
        default=state.DEFAULT_STATE_DIR,
        help="where the lab keeps its state and files (default %(default)s)",
    )
    labsub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    labsub.required = True

    p = labsub.add_parser("up", help="build the lab (removes leftovers of an earlier run)")
    p.add_argument(
        "--inventory",
        "-i",
        type=Path,
        default=EXAMPLE,
        help="fleet YAML file (default: the bundled examples/fleet.yaml)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=90,
        help="seconds to wait for the routing to converge (0: don't wait)",
    )
    p.add_argument(
        "--driver",
        choices=["vtysh", "grpc"],
        default=None,
        help="run every host in controller mode: `frrctl daemon` with this driver "
        "decides what FRR announces (grpc: FRR built by lab/build-frr-grpc.sh)",
    )
    kinds = p.add_mutually_exclusive_group()
    kinds.add_argument(
        "--qemu",
        nargs="+",
        metavar="VM",
        default=None,
        help="run exactly these VMs as real QEMU guests (a libvirtd and the frrctl libvirt "
        "agent on their hosts), the others as namespaces (default: each VM's `kind`)",
    )
    kinds.add_argument(
        "--no-qemu",
        action="store_const",
        const=[],
        dest="qemu",
        help="every VM a network namespace, whatever the inventory says",
    )
    p.set_defaults(func=cmd_up)

    p = labsub.add_parser("verify", help="compare announced prefixes, kernel tables, pings")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-ping", action="store_true", help="skip the data-plane pings")
    p.set_defaults(func=cmd_verify)

    p = labsub.add_parser(
        "migrate",
        help="live-migrate a VM to another host while the upstream pings it",
        description="A namespace VM: unplug it on its host, move its port to HOST, plug it "
        "there (frrctl instance unplug/plug). A QEMU VM: libvirt's live migration between the "
        "two hosts' libvirtds (virsh migrate --live); their frrctl agents hand the addresses "
        "over. Meanwhile the upstream pings every address of the VM every 10 ms; prints the "
        "pings lost, the time until the upstream routes the addresses to the new host, the "
        "routes per address at the upstream afterwards and, for QEMU, its downtime and the "
        "agents' unplug/plug moments.",
    )
    p.add_argument("vm", help="VM name (lab.vms in the inventory)")
    p.add_argument("--to", required=True, metavar="HOST", help="destination host")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_migrate)

    p = labsub.add_parser(
        "bench",
        help="FRR's native redistribution vs the frrctl daemon's drivers, in one run",
        description="Builds a bench lab (in STATE_DIR/bench: a BGP host and an OSPFv2+OSPFv3 "
        "host behind the upstream, and the ExaBGP peer) and measures, in turn, native "
        "`redistribute kernel` and the frrctl daemon with each driver: one prefix from the "
        "kernel to the ExaBGP peer and its withdrawal (p50/p90); bulk sets until the peer has "
        "them all; one more prefix on a host already holding N, with the NLRIs the upstream "
        "receives per change and the daemon's memory there; recovery after bgpd is killed; "
        "OSPFv2 and OSPFv3 announce and withdraw. Prints each figure with its ratio to "
        "native; --json keeps every sample.",
    )
    p.add_argument("--samples", type=int, default=50, help="single-prefix samples (default 50)")
    p.add_argument(
        "--bulk", type=int, nargs="*", default=[1000, 10000], help="bulk sizes (default 1000 10000)"
    )
    p.add_argument(
        "--bulk-repeat",
        type=int,
        default=7,
        metavar="N",
        help="runs per bulk size; the median is reported (default 7)",
    )
    drivers = bench_drivers()
    p.add_argument(
        "--drivers",
        nargs="*",
        default=default_drivers(),
        choices=list(drivers),
        help=f"daemon drivers to measure (default: {' '.join(default_drivers())}; none: native)",
    )
    p.add_argument(
        "--held",
        type=int,
        nargs="*",
        default=[1000, 10000],
        metavar="N",
        help="time one more prefix on a host already announcing N (default 1000 10000)",
    )
    p.add_argument(
        "--held-samples",
        type=int,
        default=10,
        metavar="N",
        help="changes timed (and their NLRIs counted) per --held size (default 10)",
    )
    p.add_argument(
        "--ospf-samples",
        type=int,
        default=10,
        metavar="N",
        help="OSPFv2 and OSPFv3 samples each (default 10; a withdrawal takes FRR 5-10 s)",
    )
    p.add_argument(
        "--no-ospf", action="store_true", help="skip the OSPFv2/OSPFv3 announce and withdraw"
    )
    p.add_argument(
        "--json", type=Path, default=None, metavar="FILE", help="write every sample as JSON to FILE"
    )
    p.set_defaults(func=cmd_bench)

    p = labsub.add_parser(
        "chaos", help="a seeded random soak of the lab (controller mode), with invariants"
    )
    p.add_argument("--seed", type=int, required=True, help="the schedule's seed")
    p.add_argument("--duration", type=float, default=60, help="seconds to run (default 60)")
    p.add_argument("--bound", type=float, default=60, help="convergence bound per event (s)")
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="KIND[@HOST]",
        help="never draw this event kind (on this host); repeatable",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_chaos)

    p = labsub.add_parser("down", help="remove every namespace, process and file of the lab")
    p.set_defaults(func=cmd_down)


def cmd_up(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="frrctl lab: %(message)s")
    started = time.monotonic()
    lab = runner.up(
        args.inventory, args.state_dir, wait=args.wait, driver=args.driver, qemu=args.qemu
    )
    plan = lab.plan
    real = [f"{vm.name}@{vm.host}" for vm in plan.vms if vm.qemu]
    print(
        f"lab {plan.prefix} up in {time.monotonic() - started:.1f} s: "
        f"{len(plan.fleet.hosts)} hosts, {len(plan.vms)} VMs"
        f"{f' ({len(real)} QEMU: ' + ', '.join(real) + ')' if real else ''}, upstream "
        f"{plan.upstream_ns}, ExaBGP peer {plan.peer_ns}"
    )
    print(f"  files: {lab.workdir}")
    print("  next: frrctl lab verify; frrctl lab down")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    lab = state.attach(args.state_dir)
    report = collect(lab, pings=not args.no_ping)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_table(report))
    return 0 if report.ok else 1


def cmd_migrate(args: argparse.Namespace) -> int:
    from frrctl.lab.migrate import migrate

    result = migrate(state.attach(args.state_dir), args.vm, args.to)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    if result.qemu is None:
        print(
            f"migrated {result.vm} {result.source} -> {result.destination}: port moved in "
            f"{result.move_seconds * 1000:.0f} ms, upstream routes it to {result.destination} "
            f"{result.converge_seconds * 1000:.0f} ms after the unplug"
        )
    else:
        q = result.qemu
        print(
            f"live-migrated QEMU guest {result.vm} {result.source} -> {result.destination} "
            f"(libvirt, unix socket) in {result.move_seconds:.2f} s; QEMU downtime "
            f"{q.get('downtime_ms')} ms"
        )
        print("  moments, ms from the source's pause (agents' logs, upstream's route monitor):")
        for what, ms in q["moments_ms"].items():
            print(f"    {'-' if ms is None else f'{ms:7.1f}'}  {what}")
        if "outage_beyond_downtime_ms" in q:
            print(f"  the handover added {q['outage_beyond_downtime_ms']} ms to QEMU's downtime")
    for ping in result.pings:
        print(
            f"  {ping.address}: {ping.sent} pings sent every 10 ms, {ping.lost} lost "
            f"(~{ping.lost * 10} ms), longest time without a reply {ping.gap_ms} ms"
        )
    doubles = {a: n for a, n in result.routes_at_upstream.items() if n != 1}
    print(
        "  after it settled: every address has one route at the upstream (no double announcement)"
        if not doubles
        else f"  after it settled: routes at the upstream per address {doubles} (expected 1)"
    )
    return 0 if not doubles else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from frrctl.lab.bench import format_table, run_bench

    if min(args.bulk_repeat, args.samples, args.held_samples, args.ospf_samples) < 1:
        raise UsageError(
            "--samples, --bulk-repeat, --held-samples and --ospf-samples must be at least 1"
        )
    if any(n < 1 for n in [*args.bulk, *args.held]):
        raise UsageError("--bulk and --held sizes must be at least 1")

    def progress(text: str) -> None:
        print(f"bench: {time.strftime('%H:%M:%S')} {text}", flush=True)

    results = run_bench(
        args.state_dir / "bench",
        args.samples,
        tuple(args.bulk),
        tuple(args.drivers),
        progress=progress,
        bulk_repeat=args.bulk_repeat,
        held=tuple(args.held),
        held_samples=args.held_samples,
        ospf=not args.no_ospf,
        ospf_samples=args.ospf_samples,
    )
    print(format_table(results))
    if args.json:
        args.json.write_text(json.dumps([r.summary() for r in results], indent=2))
        print(f"bench: results in {args.json}")
    return 0 if not any(r.errors for r in results) else 1


def cmd_down(args: argparse.Namespace) -> int:
    removed = runner.down(args.state_dir)
    print(
        f"lab down: removed {len(removed)} namespace(s)"
        if removed
        else "lab down: nothing to remove"
    )
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from frrctl.lab.chaos import format_summary, parse_exclude, run

    if not args.duration > 0 or not args.bound > 0:
        raise UsageError("--duration and --bound must be positive numbers of seconds")
    try:
        exclude = frozenset(parse_exclude(text) for text in args.exclude)
    except ValueError as exc:
        raise UsageError(f"--exclude: {exc}") from None

    def progress(text: str) -> None:
        if not args.json:
            print(f"chaos: {text}", flush=True)

    lab = state.attach(args.state_dir)
    if real := [vm.name for vm in lab.plan.vms if vm.qemu]:
        raise UsageError(
            f"chaos moves namespace VMs only; this lab runs {', '.join(real)} under QEMU: "
            "`frrctl lab up --no-qemu` first"
        )
    summary = run(lab, args.seed, args.duration, args.bound, progress, exclude)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0 if summary["ok"] else 1
