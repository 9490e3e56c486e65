"""Controller mode in the lab: hosts whose announcements the frrctl daemon decides.

`switch_to_controller` re-renders a host with `mode: controller` and the
chosen driver, restarts its routing daemons with that config (and staticd
with the gRPC module for the gRPC driver) and starts `frrctl daemon` inside
the host's namespace, as the systemd unit would on a real hypervisor.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from frrctl.frr.sandbox import FrrInstall
from frrctl.inventory import parse_inventory
from frrctl.lab import netns
from frrctl.lab.frrproc import restart_daemon
from frrctl.lab.netns import LabError
from frrctl.lab.state import Lab
from frrctl.pipeline import publish

GRPC_PREFIX = Path("/var/cache/frrctl/frr-grpc")


def grpc_install() -> FrrInstall | None:
    import os

    install = FrrInstall.prefix(Path(os.environ.get("FRRCTL_FRR_GRPC", GRPC_PREFIX)))
    return install if install.has_grpc() and (install.sbin / "bgpd").exists() else None


def frr_sbin_for(drivers: tuple[str, ...]) -> Path:
    """The gRPC driver needs FRR built with the gRPC module; use it for every phase then."""
    if not any(d.startswith("grpc") for d in drivers):
        return netns.FRR_SBIN
    install = grpc_install()
    if install is None:
        raise LabError(
            "the gRPC driver needs FRR built with gRPC: run lab/build-frr-grpc.sh "
            "(or set FRRCTL_FRR_GRPC to its prefix)"
        )
    return install.sbin


def controller_inventory(
    raw: dict[str, Any], hostnames: set[str], driver: str, **settings: Any
) -> dict[str, Any]:
    """The inventory with `hostnames` switched to controller mode, `driver` and
    any other controller `settings` (inventory spelling, e.g. `import-check`)."""
    out = json.loads(json.dumps(raw))
    for host in out["hosts"]:
        if host["hostname"] in hostnames:
            host["mode"] = "controller"
            host["controller"] = {**(host.get("controller") or {}), "driver": driver, **settings}
    return out


@dataclass
class DaemonProcess:
    host: str
    pid: int
    proc: subprocess.Popen[bytes]
    inventory: Path
    state_dir: Path
    log: Path


def daemon_command(lab: Lab, hostname: str, inventory: Path) -> list[str]:
    return [
        sys.executable, "-m", "frrctl.cli", "daemon",
        "--inventory", str(inventory), "--host", hostname,
        "--vty-dir", str(lab.vty(hostname)),
        "--state-dir", str(lab.nsdir(hostname) / "daemon-state"),
    ]  # fmt: skip


def switch_to_controller(
    lab: Lab, hostname: str, driver: str, timeout: float = 60, **settings: Any
) -> DaemonProcess:
    raw = yaml.safe_load(lab.inventory.read_text())
    inventory = lab.nsdir(hostname) / f"fleet-controller-{driver}.yaml"
    inventory.write_text(
        yaml.safe_dump(controller_inventory(raw, {hostname}, driver, **settings), sort_keys=False)
    )
    fleet = parse_inventory(yaml.safe_load(inventory.read_text()))
    publish(fleet, lambda _host: lab.nsdir(hostname) / "etc", only=hostname)
    host = fleet.host(hostname)
    if driver == "grpc":  # its routes live in staticd, which needs the gRPC module
        restart_daemon(lab, hostname, "staticd")
    # what they redistribute changed (staticd hosts: static routes; else kernel)
    for daemon, runs in (("bgpd", host.runs_bgp), ("ospfd", host.runs_ospf),
                         ("ospf6d", host.runs_ospf6)):  # fmt: skip
        if runs:
            restart_daemon(lab, hostname, daemon)
    if host.runs_bgp:
        wait_established(lab, hostname, timeout)
    return start_daemon(lab, hostname, inventory)


def start_daemon(lab: Lab, hostname: str, inventory: Path) -> DaemonProcess:
    """`frrctl daemon` for one host, inside its namespace, logging to the host's lab dir."""
    ns = lab.plan.host_ns(hostname)
    log = lab.nsdir(hostname) / "frrctl-daemon.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *daemon_command(lab, hostname, inventory)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    time.sleep(0.3)
    if proc.poll() is not None:
        raise LabError(f"frrctl daemon on {hostname} exited: {log.read_text()[-1000:]}")
    return DaemonProcess(hostname, proc.pid, proc, inventory, lab.nsdir(hostname), log)


def stop_daemon(daemon: DaemonProcess) -> None:
    daemon.proc.terminate()
    try:
        daemon.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        daemon.proc.kill()
        daemon.proc.wait(timeout=10)


def wait_established(lab: Lab, hostname: str, timeout: float) -> None:
    """Until every BGP session of the host is Established."""
    deadline = time.monotonic() + timeout
    ns, vty = lab.plan.host_ns(hostname), lab.vty(hostname)
    while True:
        text = netns.vtysh(ns, vty, "show bgp summary json", check=False)
        try:
            summary = json.loads(text or "{}")
        except ValueError:
            summary = {}
        peers = [
            p
            for af in summary.values()
            if isinstance(af, dict)
            for p in (af.get("peers") or {}).values()
        ]
        if peers and all(p.get("state") == "Established" for p in peers):
            return
        if time.monotonic() > deadline:
            raise LabError(f"{hostname}: BGP sessions not established within {timeout:.0f} s")
        time.sleep(0.2)
