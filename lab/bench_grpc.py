#!/usr/bin/env python3
"""What a northbound gRPC commit costs at 100, 1,000 and 10,000 prefixes.

Starts zebra and bgpd (the gRPC build from lab/build-frr-grpc.sh, `-M grpc`)
in a throw-away namespace, adds the kernel routes on cloudbr0, and times the
GrpcDriver: one commit announcing N prefixes, the read-back, one more prefix
on top of N, the time until bgpd's table holds all N (route-map delay-timer
1 s included), and withdrawing all N. Prints a table (and JSON with --json);
asserts nothing about timings.

    sudo python3 lab/bench_grpc.py [--sizes 100,1000,10000] [--shards 64,1]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from frrctl.frr.base import RetryPolicy
from frrctl.frr.gate import Gate
from frrctl.frr.grpc import GrpcDriver
from frrctl.frr.netns import NetnsPortForwarder
from frrctl.frr.sandbox import FrrInstall, FrrSandbox
from frrctl.policy import parse_prefix

PORT = 50051


def bgpd_config(gate: Gate) -> str:
    return "\n".join(
        [
            "frr defaults datacenter",
            "hostname fg4-bench",
            "bgp route-map delay-timer 1",
            *gate.config_lines(),
            "router bgp 64512",
            " bgp router-id 198.18.0.0",
            " address-family ipv4 unicast",
            f"  redistribute kernel route-map {gate.route_map(4)}",
            " exit-address-family",
            "",
        ]
    )


def prefixes(n: int) -> list[str]:
    # 198.18.0.0/15 holds 131,072 addresses: enough for any size here.
    return [f"198.{18 + i // 65536}.{(i // 256) % 256}.{i % 256}/32" for i in range(1, n + 1)]


def bgp_count(sb: FrrSandbox) -> int:
    out = sb.vtysh("show bgp ipv4 unicast summary json")
    return int(json.loads(out).get("totalPrefixCounter", 0) or 0) if out.strip() else 0


def bgp_table_size(sb: FrrSandbox) -> int:
    return len(json.loads(sb.vtysh("show bgp ipv4 unicast json")).get("routes", {}))


def bench_one(install: FrrInstall, shards: int, n: int) -> dict[str, float | int]:
    gate = Gate(shards=shards)
    with FrrSandbox(f"fg4-{secrets.token_hex(3)}-bench", install) as sb:
        for cmd in (
            ["ip", "link", "add", "cloudbr0", "type", "bridge"],
            ["ip", "link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest"],
            ["ip", "link", "set", "vm0", "master", "cloudbr0", "up"],
            ["ip", "link", "set", "vm0-guest", "up"],
            ["ip", "link", "set", "cloudbr0", "up"],
        ):
            sb.ns_exec(cmd)
        sb.start("zebra", "hostname fg4-bench\n")
        sb.start("bgpd", bgpd_config(gate), ("-M", f"grpc:{PORT}"))
        nets = prefixes(n + 1)
        batch = sb.workdir / "routes.batch"
        batch.write_text("".join(f"route add {p} dev cloudbr0\n" for p in nets))
        sb.ns_exec(["ip", "-batch", str(batch)])
        with NetnsPortForwarder(sb.name, "127.0.0.1", PORT, "fg4-fwd-") as fwd:
            drv = GrpcDriver(fwd.target, gate=gate, retry=RetryPolicy(deadline=30))
            try:
                drv.capabilities()  # connect before timing
                desired = {parse_prefix(p): False for p in nets[:n]}
                t0 = time.perf_counter()
                drv.read()
                t_read_empty = time.perf_counter() - t0
                result = drv.reconcile(desired)
                t_total = time.perf_counter() - t0
                t1 = time.perf_counter()
                drv.read()
                t_read = time.perf_counter() - t1
                deadline = time.monotonic() + 600
                while bgp_table_size(sb) < n and time.monotonic() < deadline:
                    time.sleep(0.05)
                t_table = time.perf_counter() - t0
                one_more = dict(desired)
                one_more[parse_prefix(nets[n])] = False
                t2 = time.perf_counter()
                drv.reconcile(one_more)
                t_one = time.perf_counter() - t2
                t3 = time.perf_counter()
                drv.reconcile({})
                t_withdraw = time.perf_counter() - t3
            finally:
                drv.close()
    return {
        "shards": shards,
        "prefixes": n,
        "commit_s": round(result.apply_seconds, 3),
        "reconcile_s": round(t_total, 3),
        "read_empty_s": round(t_read_empty, 3),
        "read_s": round(t_read, 3),
        "in_bgp_table_s": round(t_table, 3),
        "one_more_s": round(t_one, 3),
        "withdraw_all_s": round(t_withdraw, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--shards", default="64", help="comma list; 1 = one list per family")
    parser.add_argument(
        "--max-unsharded",
        type=int,
        default=2000,
        help="skip shards=1 above this size (it is quadratic: 10,000 took ~295 s)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    prefix = Path(os.environ.get("FRRCTL_FRR_GRPC", "/var/cache/frrctl/frr-grpc"))
    install = FrrInstall.prefix(prefix)
    if not install.has_grpc():
        print(f"no gRPC FRR build at {prefix}: run lab/build-frr-grpc.sh", file=sys.stderr)
        return 2
    rows = []
    cols = [
        "shards",
        "prefixes",
        "commit_s",
        "reconcile_s",
        "read_s",
        "in_bgp_table_s",
        "one_more_s",
        "withdraw_all_s",
    ]
    print("  ".join(f"{c:>14}" for c in cols), flush=True)
    for shards in (int(s) for s in args.shards.split(",")):
        for n in (int(s) for s in args.sizes.split(",")):
            if shards == 1 and n > args.max_unsharded:
                continue
            row = bench_one(install, shards, n)
            rows.append(row)
            print("  ".join(f"{row[c]:>14}" for c in cols), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
