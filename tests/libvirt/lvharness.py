"""Harness: a real libvirtd per host namespace, real QEMU (TCG) guests, the real agent.

Every namespace, libvirtd, QEMU, agent and file carries a unique `lv-<hex>`
prefix and is removed at the end of the module, also when a test fails
(the sandbox destroys every domain and kills every QEMU of its namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frrctl.guest import tinyvm
from frrctl.libvirt import metadata
from frrctl.libvirt.metadata import Nic
from frrctl.libvirt.sandbox import Sandbox
from tests.conftest import ROOT

MEMORY_MB = 128


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (namespaces)"
    for prog in ("/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/usr/bin/virsh"):
        if not Path(prog).exists():
            return f"needs {prog} (lab/setup.sh)"
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "needs libvirt-python (lab/setup.sh)"
    return None


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(argv), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {r.returncode}: {r.stderr.strip()}")
    return r


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def meta_for(*nics: tuple[str, list[str]]) -> str:
    import ipaddress

    return metadata.render([Nic(m, tuple(ipaddress.ip_address(a) for a in ips)) for m, ips in nics])


@dataclass
class LvHost:
    """One hypervisor: a namespace with cloudbr0, its libvirtd, its frrctl agent."""

    prefix: str
    ns: str
    dir: Path
    image: Path
    sandbox: Sandbox
    agent: subprocess.Popen[bytes] | None = None
    agent_logs: list[Path] = field(default_factory=list)
    _conn: Any = None

    @property
    def state_dir(self) -> Path:
        return self.dir / "state"

    @property
    def conn(self) -> Any:
        import libvirt

        if self._conn is None or not self._conn.isAlive():
            libvirt.registerErrorHandler(lambda *_: None, None)  # raised, not printed
            self._conn = libvirt.open(self.sandbox.uri)
        return self._conn

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check)

    def frrctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "frrctl.cli", *argv, check=check)

    # agent -------------------------------------------------------------------
    def start_agent(self, *extra: str) -> None:
        assert self.agent is None or self.agent.poll() is not None
        logf = self.dir / f"agent-{len(self.agent_logs)}.log"
        self.agent_logs.append(logf)
        with open(logf, "wb") as out:
            self.agent = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, sys.executable, "-m", "frrctl.cli", "libvirt",
                 "run", "--uri", self.sandbox.uri, "--state-dir", str(self.state_dir),
                 "--log-format", "json", *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            )  # fmt: skip
        wait_for(lambda: any(e["msg"] == "connected" for e in self.log()), 20, "agent connect")

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait(5)
        self.agent = None

    def log(self, index: int = -1) -> list[dict[str, Any]]:
        if not self.agent_logs:
            return []
        out = []
        for line in self.agent_logs[index].read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def status(self) -> dict[str, Any]:
        return json.loads(
            self.frrctl("libvirt", "status", "--json", "--state-dir", str(self.state_dir)).stdout
        )

    # domains -------------------------------------------------------------------
    def console(self, name: str) -> Path:
        return self.dir / f"{name}.console"

    def start(self, tag: str, mac: str, addrs: list[str], meta: str | None = "auto",
              persistent: bool = False, bridge: bool = False) -> Any:  # fmt: skip
        name = f"{self.prefix}-{tag}"
        if meta == "auto":
            meta = meta_for((mac, addrs))
        xml = tinyvm.domain_xml(name, mac, self.tap(tag), addrs, self.console(name), meta,
                                "cloudbr0" if bridge else None, MEMORY_MB, self.image)  # fmt: skip
        if persistent:
            dom = self.conn.defineXML(xml)
            dom.create()
            return dom
        return self.conn.createXML(xml, 0)

    def tap(self, tag: str) -> str:
        return f"{self.prefix[-6:]}{tag}"[:15]

    def wait_booted(self, name: str, timeout: float = 60) -> float:
        t0 = time.monotonic()
        wait_for(lambda: tinyvm.READY in self.console(name).read_text(errors="replace")
                 if self.console(name).exists() else False, timeout, f"{name} to boot")  # fmt: skip
        return time.monotonic() - t0

    def routes(self) -> set[str]:
        """Host routes on cloudbr0 (`dst` only), both families."""
        out: set[str] = set()
        for fam in ("-4", "-6"):
            r = self.run("ip", "-j", fam, "route", "show", "dev", "cloudbr0", check=False)
            for e in json.loads(r.stdout or "[]"):
                if "/" not in e["dst"] and e["dst"] not in ("fe80::1",):
                    out.add(e["dst"])
        return out

    def neighbours(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for fam in ("-4", "-6"):
            r = self.run("ip", "-j", fam, "neigh", "show", "dev", "cloudbr0", "nud", "permanent")
            for e in json.loads(r.stdout or "[]"):
                out[e["dst"]] = e.get("lladdr", "")
        return out

    def record(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.frrctl("instance", "list", "--json", "--state-dir",
                                      str(self.state_dir)).stdout)  # fmt: skip
        return {i["name"]: i for i in data["instances"]}

    def ping(self, addr: str, tries: int = 5) -> bool:
        return any(
            self.run("ping", "-n", "-c", "1", "-W", "1", addr, check=False).returncode == 0
            for _ in range(tries)
        )

    def qemu_pid(self, name: str) -> int:
        return int((self.sandbox.root / "run" / "qemu" / f"{name}.pid").read_text().strip())

    def close(self) -> None:
        self.stop_agent()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self.sandbox.stop()


@contextlib.contextmanager
def lv_hosts(image: Path, tmp: Path, count: int) -> Iterator[list[LvHost]]:
    prefix = f"lv-{secrets.token_hex(3)}"
    hosts: list[LvHost] = []
    try:
        for i in range(count):
            ns = f"{prefix}-hv{i}"
            sh("ip", "netns", "add", ns)
            d = tmp / f"hv{i}"
            d.mkdir(parents=True)
            h = LvHost(prefix, ns, d, image, Sandbox(ns, Path(f"/run/{prefix}-hv{i}")))
            hosts.append(h)
            h.run("ip", "link", "set", "lo", "up")
            h.frrctl("host", "setup", "--state-dir", str(h.state_dir))
            h.sandbox.start()
        yield hosts
    finally:
        for h in hosts:
            with contextlib.suppress(Exception):
                h.close()
        for h in hosts:
            subprocess.run(["ip", "netns", "del", h.ns], capture_output=True)
            shutil.rmtree(h.sandbox.root, ignore_errors=True)
