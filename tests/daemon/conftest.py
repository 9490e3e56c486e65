"""The daemon for real: FRR (zebra + bgpd) in a host namespace with cloudbr0, an
ExaBGP peer in a namespace of its own recording every update it receives, and
`frrctl daemon` started inside the host namespace as the lab and systemd do.

The host's bgpd config is written here (controller mode: no `redistribute
kernel` for the vtysh driver; `redistribute static route-map static-cloud[-v6]`
for the gRPC driver's staticd routes). It deliberately has no
`cloud-pool` out-filter towards the peer: what the peer receives is then
decided by the daemon's policy alone, which is what these tests check.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from frrctl.frr.sandbox import FrrInstall, FrrSandbox, run, wire_host
from frrctl.frr.staticd import StaticLayout
from frrctl.lab.netns import EXABGP, recorder_command, start_exabgp
from frrctl.policy import STATIC_MIN_METRIC
from frrctl.status import request

HOST_ASN = 64512
PEER_ASN = 64513
HOSTNAME = "hv1"
GRPC_PORT = 50051

POOLS_V4 = ["192.0.2.0/25", "198.18.100.0/24"]
POOLS_V6 = ["2001:db8:100::/64"]
MAX_PREFIXES = 30
GSHUT = [65535, 0]


def grpc_install() -> FrrInstall | None:
    """The build of lab/build-frr-grpc.sh (prefix in $FRRCTL_FRR_GRPC), if there is one."""
    prefix = Path(os.environ.get("FRRCTL_FRR_GRPC", "/var/cache/frrctl/frr-grpc"))
    install = FrrInstall.prefix(prefix)
    return install if install.has_grpc() and (install.sbin / "bgpd").exists() else None


def grpc_skip_reason() -> str | None:
    if grpc_install() is None:
        return "gRPC-enabled FRR not found: run lab/build-frr-grpc.sh or set FRRCTL_FRR_GRPC"
    return None


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not Path("/usr/lib/frr/bgpd").exists():
        return "needs Debian's frr package"
    if not EXABGP.exists():
        return f"needs ExaBGP at {EXABGP}"
    return None


needs_lab = pytest.mark.skipif(bool(skip_reason()), reason=skip_reason() or "")


def static_lines() -> list[str]:
    """grpc: the rendered pool lists and StaticLayout's route-maps."""
    pools = [f"ip prefix-list cloud-pool-v4 seq {10 * i + 10} permit {p} ge 32"
             for i, p in enumerate(POOLS_V4)]  # fmt: skip
    pools += [f"ipv6 prefix-list cloud-pool-v6 seq {10 * i + 10} permit {p} ge 128"
              for i, p in enumerate(POOLS_V6)]  # fmt: skip
    return pools + StaticLayout().config_lines({4: "cloud-pool-v4", 6: "cloud-pool-v6"})


def bgpd_config(driver: str) -> str:
    gate = ""
    red = {4: "", 6: ""}
    if driver == "native":  # FRR's own redistribution, no daemon: the baseline
        red = {4: "  redistribute kernel", 6: "  redistribute kernel"}
    elif driver == "grpc":
        gate = "\n".join(static_lines())
        red = {v: f"  redistribute static route-map {StaticLayout().route_map(v)}" for v in (4, 6)}
    return f"""frr defaults datacenter
hostname fg4-dhost
bgp route-map delay-timer 1
{gate}
router bgp {HOST_ASN}
 bgp router-id 198.18.0.2
 no bgp ebgp-requires-policy
 neighbor 198.18.0.3 remote-as {PEER_ASN}
 neighbor 198.18.0.3 timers connect 1
 address-family ipv4 unicast
{red[4]}
 exit-address-family
 address-family ipv6 unicast
  neighbor 198.18.0.3 activate
{red[6]}
 exit-address-family
"""


def inventory(max_prefixes: int, driver: str, require_neighbor: bool = False) -> dict[str, Any]:
    return {
        "fabric": {"bridge": "cloudbr0", "pools": {"ipv4": POOLS_V4, "ipv6": POOLS_V6}},
        "hosts": [
            {
                "hostname": HOSTNAME,
                "router-id": "198.18.0.2",
                "asn": HOST_ASN,
                "mode": "controller",
                "uplinks": [
                    {
                        "interface": "eth-peer",
                        "addresses": ["198.18.0.2/31"],
                        "bgp": {"neighbors": ["198.18.0.3"], "remote-as": PEER_ASN},
                    }
                ],
                "controller": {
                    "driver": driver,
                    "max-prefixes": max_prefixes,
                    "require-neighbor": require_neighbor,
                    "grpc-port": GRPC_PORT,
                    "metrics-port": 9342,
                },
            }
        ],
    }


# zebra as the rendered hypervisor config has it: only the default from BGP reaches the FIB.
ZEBRA_FIB_DEFAULT_ONLY = """hostname fg4-dhost
ip prefix-list default-only-v4 seq 10 permit 0.0.0.0/0
ipv6 prefix-list default-only-v6 seq 10 permit ::/0
route-map fib-default-only permit 10
 match ip address prefix-list default-only-v4
exit
route-map fib-default-only-v6 permit 10
 match ipv6 address prefix-list default-only-v6
exit
ip protocol bgp route-map fib-default-only
ipv6 protocol bgp route-map fib-default-only-v6
"""
ZEBRA_PLAIN = "hostname fg4-dhost\n"


def exabgp_config(recorder: str, defaults: bool = False) -> str:
    # The upstream's default routes (and one more route the FIB filter must keep out).
    static = (
        """    static {
        route 0.0.0.0/0 next-hop 198.18.0.3;
        route ::/0 next-hop 2001:db8:fffe::3;
        route 198.51.100.0/24 next-hop 198.18.0.3;
    }
"""
        if defaults
        else ""
    )
    return f"""process recorder {{
    run {recorder};
    encoder json;
}}
neighbor 198.18.0.2 {{
    router-id 198.18.0.3;
    local-address 198.18.0.3;
    local-as {PEER_ASN};
    peer-as {HOST_ASN};
    hold-time 30;
{static}    family {{
        ipv4 unicast;
        ipv6 unicast;
    }}
    api {{
        processes [ recorder ];
        receive {{
            parsed;
            update;
        }}
        neighbor-changes;
    }}
}}
"""


@dataclass
class Event:
    kind: str  # announce | withdraw | down
    prefix: str
    communities: tuple[tuple[int, int], ...] = ()
    time: float = 0.0  # when ExaBGP received it (epoch seconds)


def parse_record(lines: list[str]) -> list[Event]:
    """ExaBGP's JSON API lines -> announce/withdraw events, in order."""
    events: list[Event] = []
    for line in lines:
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        when = float(msg.get("time", 0.0))
        if msg.get("type") == "state":
            if msg.get("neighbor", {}).get("state") in ("down", "connected"):
                events.append(Event("down", "", (), when))
            continue
        if msg.get("type") != "update":
            continue
        update = msg.get("neighbor", {}).get("message", {}).get("update", {})
        attrs = update.get("attribute", {})
        communities = tuple(tuple(c) for c in attrs.get("community", []))
        for family in update.get("announce", {}).values():
            for routes in family.values():
                for route in routes:
                    nlri = route["nlri"] if isinstance(route, dict) else str(route)
                    events.append(Event("announce", nlri, communities, when))
        for routes in update.get("withdraw", {}).values():
            for route in routes:
                nlri = route["nlri"] if isinstance(route, dict) else str(route)
                events.append(Event("withdraw", nlri, (), when))
    return events


@dataclass
class DaemonProc:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_daemon_in(sandbox: FrrSandbox, inventory: Path, state_dir: Path) -> DaemonProc:
    """`frrctl daemon` for host hv1 inside the sandbox's namespace, returned once
    its control socket answers (the log is kept in the sandbox's workdir)."""
    log = sandbox.workdir / "daemon.log"
    cmd = ["ip", "netns", "exec", sandbox.name, sys.executable, "-m", "frrctl.cli",
           "daemon", "--inventory", str(inventory), "--host", "hv1",
           "--vty-dir", str(sandbox.vtydir), "--state-dir", str(state_dir)]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    daemon = DaemonProc(proc, log)
    deadline = time.monotonic() + 20
    while True:
        assert daemon.alive(), log.read_text()[-2000:]
        try:
            request(state_dir, {"cmd": "status", "peers": False}, timeout=5)
            return daemon
        except Exception:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.05)


@dataclass
class Lab:
    driver: str
    host: FrrSandbox
    peer_ns: str
    workdir: Path
    record: Path
    inventory: Path
    state_dir: Path
    exabgp: subprocess.Popen[bytes] | None = None
    zebra_config: str = "hostname fg4-dhost\n"
    daemons: list[DaemonProc] = field(default_factory=list)

    # -- kernel --------------------------------------------------------------
    def ip(self, *args: str, check: bool = True) -> None:
        self.host.ns_exec(["ip", *args], check=check)

    @property
    def metric(self) -> list[str]:
        """grpc: routes at the metric `frrctl instance plug` sets."""
        return ["metric", str(STATIC_MIN_METRIC)] if self.driver == "grpc" else []

    def add_route(self, prefix: str, dev: str = "cloudbr0") -> None:
        self.ip("route", "replace", prefix, "dev", dev, *self.metric)

    def del_route(self, prefix: str, dev: str = "cloudbr0") -> None:
        # with the metric: else the kernel may delete zebra's copy (grpc) first
        self.ip("route", "del", prefix, "dev", dev, *self.metric, check=False)

    def batch(self, lines: list[str]) -> None:
        path = self.workdir / f"batch-{secrets.token_hex(3)}"
        tail = " ".join(["", *self.metric])
        path.write_text(
            "".join(
                f"{line}{tail if line.startswith(('route replace', 'route del')) else ''}\n"
                for line in lines
            )
        )
        self.ip("-batch", str(path))

    # -- FRR -----------------------------------------------------------------
    def bgpd_args(self) -> tuple[str, ...]:
        return ()

    def restart_zebra(self) -> None:
        self.host.kill("zebra")
        self.host.start("zebra", self.zebra_config)

    def kernel_defaults(self) -> set[str]:
        """The families with a default route in the kernel's main table."""
        out = set()
        for family in ("-4", "-6"):
            text = self.host.ns_exec(["ip", family, "route", "show", "default"]).stdout
            if text.strip():
                out.add(family)
        return out

    def start_bgpd(self) -> None:
        self.host.start("bgpd", bgpd_config(self.driver), self.bgpd_args())

    def start_staticd(self) -> None:
        if self.driver == "grpc":
            self.host.start("staticd", "hostname fg4-dhost\n", ("-M", f"grpc:{GRPC_PORT}"))

    def networks(self) -> str:
        return self.host.vtysh("show running-config")

    def bgp_rib(self) -> set[str]:
        out = set()
        for afi in ("ipv4", "ipv6"):
            data = json.loads(self.host.vtysh(f"show bgp {afi} unicast json") or "{}")
            out |= set(data.get("routes", {}))
        return out

    def established(self) -> bool:
        data = json.loads(self.host.vtysh("show bgp summary json") or "{}")
        peers = data.get("ipv4Unicast", {}).get("peers", {})
        return any(p.get("state") == "Established" for p in peers.values())

    # -- peer ----------------------------------------------------------------
    def events(self) -> list[Event]:
        return parse_record(self.record.read_text().splitlines())

    def mark(self) -> int:
        return len(self.events())

    def peer_has(self, since: int = 0) -> dict[str, Event]:
        """What the peer holds now (announces minus withdraws, reset on session loss)."""
        held: dict[str, Event] = {}
        for event in self.events():
            if event.kind == "down":
                held.clear()
            elif event.kind == "announce":
                held[event.prefix] = event
            else:
                held.pop(event.prefix, None)
        return held

    def wait_peer(self, want: Callable[[dict[str, Event]], bool], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.peer_has()
            if want(got):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"peer never reached the wanted state; has {sorted(got)}")
            time.sleep(0.05)

    def wait_established(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.established():
            assert time.monotonic() < deadline, "BGP session to ExaBGP not established"
            time.sleep(0.1)

    # -- daemon --------------------------------------------------------------
    def start_daemon(self, *extra: str) -> DaemonProc:
        log = self.workdir / f"daemon-{len(self.daemons)}.log"
        cmd = [
            "ip", "netns", "exec", self.host.name,
            sys.executable, "-m", "frrctl.cli", "daemon",
            "--inventory", str(self.inventory), "--host", HOSTNAME,
            "--vty-dir", str(self.host.vtydir), "--state-dir", str(self.state_dir),
            "--verify-interval", "5", *extra,
        ]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        daemon = DaemonProc(proc, log)
        self.daemons.append(daemon)
        deadline = time.monotonic() + 20
        while True:  # ready when it answers on its control socket
            assert daemon.alive(), log.read_text()[-3000:]
            with contextlib.suppress(Exception):
                if request(self.state_dir, {"cmd": "status", "peers": False}, timeout=5):
                    return daemon
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)

    def status(self, peers: bool = True) -> dict[str, Any]:
        return request(self.state_dir, {"cmd": "status", "peers": peers})

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "frrctl.cli", *args, "--state-dir", str(self.state_dir),
               "--inventory", str(self.inventory), "--host", HOSTNAME,
               "--vty-dir", str(self.host.vtydir)]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{args}: {result.returncode}: {result.stderr}{result.stdout}")
        return result

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.stop(signal.SIGKILL)
        if self.exabgp is not None and self.exabgp.poll() is None:
            self.exabgp.kill()
            self.exabgp.wait(timeout=10)


def make_lab(
    driver: str,
    max_prefixes: int = MAX_PREFIXES,
    require_neighbor: bool = False,
    defaults: bool = False,
) -> Iterator[Lab]:
    """`defaults`: the peer announces default routes and zebra has the rendered
    FIB filter (`ip protocol bgp route-map fib-default-only`)."""
    tag = secrets.token_hex(3)
    install = FrrInstall.debian()
    if driver == "grpc":
        found = grpc_install()
        assert found is not None
        install = found
    host = FrrSandbox(f"fg4-{tag}-dh", install)
    peer_ns = f"fg4-{tag}-dx"
    lab: Lab | None = None
    try:
        run(["ip", "netns", "add", peer_ns])
        workdir = host.workdir
        lab = Lab(
            driver=driver,
            host=host,
            peer_ns=peer_ns,
            workdir=workdir,
            record=workdir / "exabgp.jsonl",
            inventory=workdir / "fleet.yaml",
            state_dir=workdir / "state",
            zebra_config=ZEBRA_FIB_DEFAULT_ONLY if defaults else ZEBRA_PLAIN,
        )
        lab.inventory.write_text(yaml.safe_dump(inventory(max_prefixes, driver, require_neighbor)))
        run(["ip", "netns", "exec", peer_ns, "ip", "link", "set", "lo", "up"])
        wire_host(
            host,
            peer_ns,
            uplink="eth-peer",
            host_addrs=("198.18.0.2/31", "2001:db8:fffe::2/127"),
            peer_addrs=("198.18.0.3/31", "2001:db8:fffe::3/127"),
        )
        # a second VM-facing veth that is not the bridge (for "other interface" routes)
        for cmd in (
            ["link", "add", "other0", "type", "veth", "peer", "name", "other0-p"],
            ["link", "set", "other0", "up"],
            ["link", "set", "other0-p", "up"],
        ):
            host.ns_exec(["ip", *cmd])
        host.start("zebra", lab.zebra_config)
        lab.start_bgpd()
        lab.start_staticd()
        # ExaBGP in its own namespace
        lab.record.touch()
        xconf = workdir / "exabgp.conf"
        xconf.write_text(exabgp_config(recorder_command(lab.record), defaults))
        lab.exabgp = start_exabgp(peer_ns, xconf, workdir)
        lab.wait_established()
        yield lab
    finally:
        if lab is not None:
            lab.close()
        listed = run(["ip", "netns", "pids", peer_ns], check=False)
        for pid in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", peer_ns], check=False)
        host.close()


def driver_params() -> list[Any]:
    reason = grpc_skip_reason()
    return [
        "vtysh",
        pytest.param("grpc", marks=pytest.mark.skipif(bool(reason), reason=reason or "")),
    ]


@pytest.fixture(scope="module", params=driver_params())
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from make_lab(request.param)
