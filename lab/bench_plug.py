#!/usr/bin/env python3
"""Plug N VMs (one IPv4 /32 + one IPv6 /128 each): frrctl vs `ip` per entry vs `ip -batch`.

Every VM is a host route and a permanent neighbour per address, i.e. four
kernel objects. Each method runs in its own throw-away network namespace
(prefix `fb-<hex>-`) with a bridge set up by `frrctl host setup`; the
namespaces are deleted at the end, also on failure or Ctrl-C.

    frrctl (in-process)  what `frrctl instance plug` does per VM, N times:
                         one netlink batch per VM, exact lookups, the SQLite
                         record committed per VM; no Python start-up per VM
    frrctl (CLI)         `ip netns exec NS frrctl instance plug ...` processes,
                         a sample of --cli-sample VMs, scaled to N
    ip per entry         4 x N `ip` processes (route add / neigh add)
    ip -batch            one `ip -batch` with the same 4 x N lines

With --ports K, the first K VMs also get a veth port and the nftables guard
(frrctl) -- reported separately, since the port guard costs one `nft` run.

Run as root:  /opt/frrctl-venv/bin/python lab/bench_plug.py [--count 1000]
Addresses come from 198.18.0.0/15 and 2001:db8::/32 only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NET4 = ipaddress.IPv4Network("198.18.0.0/15")
NET6 = ipaddress.IPv6Network("2001:db8:b::/64")


def vm(i: int) -> tuple[str, str, str, str]:
    """name, mac, ipv4, ipv6 of VM i."""
    mac = "52:54:{:02x}:{:02x}:{:02x}:{:02x}".format(*(i + 1).to_bytes(4, "big"))
    return f"vm{i}", mac, str(NET4[i + 1]), str(NET6[i + 1])


def sh(*argv: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:8])} failed: {proc.stderr.strip()}")
    return proc


def count_objects(ns: str) -> tuple[int, int]:
    routes = 0
    neighs = 0
    for fam in ("-4", "-6"):
        out = sh("ip", "-n", ns, fam, "route", "show", "dev", "cloudbr0").stdout
        routes += sum(1 for line in out.splitlines() if line.startswith(("198.1", "2001:db8:b:")))
        out = sh("ip", "-n", ns, fam, "neigh", "show", "dev", "cloudbr0", "nud", "permanent").stdout
        neighs += len(out.splitlines())
    return routes, neighs


def inner(args: argparse.Namespace) -> None:
    """Runs inside the namespace: frrctl's own code path, N plugs in one process."""
    from frrctl.host.instances import Host
    from frrctl.host.validate import parse_addresses, parse_mac

    state = Path(args.state_dir)
    started = time.perf_counter()
    with Host(state, "cloudbr0") as host:
        for i in range(args.count):
            name, mac, v4, v6 = vm(i)
            port = f"bp{i}" if i < args.ports else None
            host.plug(name, parse_mac(mac), parse_addresses([v4, v6]), port)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--count", type=int, default=1000, help="VMs to plug (default 1000)")
    ap.add_argument(
        "--cli-sample",
        type=int,
        default=50,
        help="VMs plugged through the CLI, scaled to --count (default 50)",
    )
    ap.add_argument(
        "--ports",
        type=int,
        default=100,
        help="VMs plugged with a veth port + nftables guard (default 100)",
    )
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--state-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        inner(args)
        return 0
    if os.geteuid() != 0:
        print("bench: run as root (network namespaces)", file=sys.stderr)
        return 2
    if args.count > 65000:
        print("bench: --count at most 65000", file=sys.stderr)
        return 2

    prefix = f"fb-{secrets.token_hex(3)}"
    made: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    frrctl = [sys.executable, "-m", "frrctl.cli"]
    n = args.count

    def fresh(tag: str) -> str:
        ns = f"{prefix}-{tag}"
        sh("ip", "netns", "add", ns)
        made.append(ns)
        sh("ip", "netns", "exec", ns, *frrctl, "host", "setup", "--state-dir", str(tmp / ns))
        return ns

    results: list[tuple[str, float, int, str]] = []
    try:
        # 1. frrctl in-process
        ns = fresh("lib")
        out = sh("ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--count", str(n),
                 "--ports", "0", "--state-dir", str(tmp / ns))  # fmt: skip
        sec = json.loads(out.stdout)["seconds"]
        assert count_objects(ns) == (2 * n, 2 * n), count_objects(ns)
        results.append(("frrctl plug (netlink batch, in-process)", sec, n, ""))

        # 2. frrctl CLI sample
        ns = fresh("cli")
        k = min(args.cli_sample, n)
        started = time.perf_counter()
        for i in range(k):
            name, mac, v4, v6 = vm(i)
            sh("ip", "netns", "exec", ns, *frrctl, "instance", "plug", name, "--mac", mac, "--ip",
               v4, v6, "--state-dir", str(tmp / ns))  # fmt: skip
        sec = time.perf_counter() - started
        assert count_objects(ns) == (2 * k, 2 * k)
        results.append(("frrctl instance plug (one CLI process per VM)", sec * n / k, n,
                        f"measured {k}, scaled"))  # fmt: skip

        # 3. one ip command per entry
        ns = fresh("ip")
        started = time.perf_counter()
        for i in range(n):
            _, mac, v4, v6 = vm(i)
            sh("ip", "-n", ns, "neigh", "add", v4, "lladdr", mac, "dev", "cloudbr0", "nud",
               "permanent")  # fmt: skip
            sh("ip", "-n", ns, "route", "add", f"{v4}/32", "dev", "cloudbr0")
            sh("ip", "-n", ns, "-6", "neigh", "add", v6, "lladdr", mac, "dev", "cloudbr0", "nud",
               "permanent")  # fmt: skip
            sh("ip", "-n", ns, "-6", "route", "add", f"{v6}/128", "dev", "cloudbr0")
        sec = time.perf_counter() - started
        assert count_objects(ns) == (2 * n, 2 * n)
        results.append(("ip, one process per entry", sec, n, f"{4 * n} processes"))

        # 4. ip -batch
        ns = fresh("batch")
        lines = []
        for i in range(n):
            _, mac, v4, v6 = vm(i)
            lines += [
                f"neigh add {v4} lladdr {mac} dev cloudbr0 nud permanent",
                f"route add {v4}/32 dev cloudbr0",
                f"neigh add {v6} lladdr {mac} dev cloudbr0 nud permanent",
                f"route add {v6}/128 dev cloudbr0",
            ]
        started = time.perf_counter()
        sh("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")
        sec = time.perf_counter() - started
        assert count_objects(ns) == (2 * n, 2 * n)
        results.append(("ip -batch (no record, no checks)", sec, n, "1 process"))

        # 5. frrctl with ports and the nftables guard
        if args.ports:
            ns = fresh("ports")
            p = min(args.ports, n)
            for i in range(p):
                sh("ip", "-n", ns, "link", "add", f"bp{i}", "type", "veth", "peer", "name",
                   f"bq{i}")  # fmt: skip
            out = sh("ip", "netns", "exec", ns, sys.executable, __file__, "--inner", "--count",
                     str(p), "--ports", str(p), "--state-dir", str(tmp / ns))  # fmt: skip
            sec = json.loads(out.stdout)["seconds"]
            results.append(("frrctl plug --port (+ port settings, nft guard)", sec, p,
                            "in-process"))  # fmt: skip
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["rm", "-rf", str(tmp)], capture_output=True)

    print(f"plugging VMs with 1 IPv4 /32 + 1 IPv6 /128 each (4 kernel objects per VM), "
          f"kernel {os.uname().release}")  # fmt: skip
    print(f"{'method':<50} {'VMs':>6} {'total s':>9} {'ms/VM':>8}  note")
    for label, sec, count, note in results:
        print(f"{label:<50} {count:>6} {sec:>9.2f} {1000 * sec / count:>8.3f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
