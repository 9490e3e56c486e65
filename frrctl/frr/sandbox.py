"""Real FRR daemons in a throw-away network namespace, for tests and benchmarks.

Every name (namespace, run directory, FRR pathspace) carries the caller's
unique prefix, and `close()` removes all of it, also after a failed start.
Daemons are started the way DESIGN.md measured: `ip netns exec NS daemon -d
-N NS -f FILE -i PIDFILE --vty_socket DIR`, with the vty directory owned by
user frr, and zserv on a socket inside the run directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEBIAN_FRR = Path("/usr/lib/frr")


@dataclass(frozen=True)
class FrrInstall:
    """Where an FRR build keeps its daemons and vtysh."""

    sbin: Path
    vtysh: Path
    rundir: Path  # parent of per-pathspace directories (-N)

    @classmethod
    def debian(cls) -> FrrInstall:
        return cls(DEBIAN_FRR, Path("/usr/bin/vtysh"), Path("/var/run/frr"))

    @classmethod
    def prefix(cls, prefix: Path) -> FrrInstall:
        """A build installed by lab/build-frr-grpc.sh."""
        return cls(prefix / "sbin", prefix / "bin" / "vtysh", prefix / "var" / "run" / "frr")

    def has_grpc(self) -> bool:
        return (self.sbin.parent / "lib" / "frr" / "modules" / "grpc.so").is_file()


def run(
    cmd: list[str], check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class FrrSandbox:
    """One namespace with zebra and bgpd (and optionally more) running in it."""

    name: str
    install: FrrInstall = field(default_factory=FrrInstall.debian)
    workdir: Path = field(init=False)
    pids: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.workdir.chmod(0o755)
        self.vtydir.mkdir()
        frr = pwd.getpwnam("frr")
        os.chown(self.vtydir, frr.pw_uid, frr.pw_gid)
        try:
            run(["ip", "netns", "add", self.name])
            self.ns_exec(["ip", "link", "set", "lo", "up"])
            self.ns_exec(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
            self.ns_exec(["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
        except BaseException:
            self.close()
            raise

    @property
    def vtydir(self) -> Path:
        return self.workdir / "vty"

    def ns_exec(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *cmd], check=check)

    def start(self, daemon: str, config: str, extra: tuple[str, ...] = ()) -> int:
        """Start one daemon with `config`; wait for its vty socket; return its pid."""
        conf = self.workdir / f"{daemon}.conf"
        conf.write_text(config)
        pidfile = self.vtydir / f"{daemon}.pid"
        pidfile.unlink(missing_ok=True)
        cmd = [
            "ip", "netns", "exec", self.name, str(self.install.sbin / daemon),
            "-d", "-N", self.name, "-f", str(conf), "-i", str(pidfile),
            "--vty_socket", str(self.vtydir), "-z", str(self.vtydir / "zserv.api"),
            "--log", f"file:{self.workdir / daemon}.log", *extra,
        ]  # fmt: skip
        result = run(cmd, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{daemon} failed to start: {result.stderr.strip()}")
        sock = self.vtydir / f"{daemon}.vty"
        deadline = time.monotonic() + 10
        while not (sock.exists() and pidfile.exists() and pidfile.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{daemon} did not open {sock}; see {self.workdir}")
            time.sleep(0.02)
        pid = int(pidfile.read_text().strip())
        self.pids[daemon] = pid
        return pid

    def kill(self, daemon: str, sig: int = signal.SIGKILL) -> None:
        pid = self.pids.pop(daemon, None)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        (self.vtydir / f"{daemon}.vty").unlink(missing_ok=True)

    def vtysh(self, *commands: str) -> str:
        cmd = [str(self.install.vtysh), "--vty_socket", str(self.vtydir)]
        for command in commands:
            cmd += ["-c", command]
        return run(["ip", "netns", "exec", self.name, *cmd]).stdout

    def close(self) -> None:
        # Reverse start order: bgpd before zebra, so nothing reconnects.
        for daemon in reversed(list(self.pids)):
            self.kill(daemon, signal.SIGTERM)
        # Anything still in the namespace (a daemon we lost track of) goes too.
        listed = run(["ip", "netns", "pids", self.name], check=False)
        for text in listed.stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(text), signal.SIGKILL)
        run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)
        shutil.rmtree(self.install.rundir / self.name, ignore_errors=True)

    def __enter__(self) -> FrrSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wire_host(
    host: FrrSandbox,
    peer_ns: str,
    *,
    uplink: str = "eth-up",
    host_addrs: Sequence[str] = ("198.18.0.0/31",),
    peer_addrs: Sequence[str] = ("198.18.0.1/31",),
) -> None:
    """A test hypervisor's links: the veth pair `uplink` (in `host`) / eth-host
    (in the namespace `peer_ns`, the upstream's or peer's), each end with its
    addresses (IPv6 ones `nodad`) and up; and the bridge cloudbr0
    (169.254.0.1/32) with the veth port vm0 (peer vm0-guest, left in the host
    namespace), all up. The bridge needs a port with carrier (a veth: no dummy
    module here), else its routes are linkdown and bgpd's import-check refuses
    them."""

    def peer_exec(cmd: list[str]) -> None:
        run(["ip", "netns", "exec", peer_ns, *cmd])

    def addr(dev: str, prefix: str) -> list[str]:
        return ["ip", "addr", "add", prefix, "dev", dev, *(["nodad"] if ":" in prefix else [])]

    host.ns_exec(["ip", "link", "add", uplink, "type", "veth", "peer", "name", "eth-host",
                  "netns", peer_ns])  # fmt: skip
    for prefix in host_addrs:
        host.ns_exec(addr(uplink, prefix))
    host.ns_exec(["ip", "link", "set", uplink, "up"])
    for prefix in peer_addrs:
        peer_exec(addr("eth-host", prefix))
    peer_exec(["ip", "link", "set", "eth-host", "up"])
    for cmd in (
        ["link", "add", "cloudbr0", "type", "bridge"],
        ["link", "add", "vm0", "type", "veth", "peer", "name", "vm0-guest"],
        ["link", "set", "vm0", "master", "cloudbr0", "up"],
        ["link", "set", "vm0-guest", "up"],
        ["addr", "add", "169.254.0.1/32", "dev", "cloudbr0"],
        ["link", "set", "cloudbr0", "up"],
    ):
        host.ns_exec(["ip", *cmd])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours would count as alive; daemons are reparented (-d).
    return True
