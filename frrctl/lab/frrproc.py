"""FRR daemons of one lab namespace: which to start, with which modules, and a restart."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from frrctl.lab import netns
from frrctl.lab.state import Lab


def prepare_dir(path: Path) -> None:
    (path / "vty").mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    netns.chown_frr(path)
    netns.chown_frr(path / "vty")


def enabled_daemons(daemons_file: str) -> list[str]:
    out = []
    for line in daemons_file.splitlines():
        name, sep, value = line.partition("=")
        if sep and value.strip() == "yes" and name.endswith("d") and "_" not in name:
            out.append(name.strip())
    # FRR always runs staticd; the lab starts it where it matters: with the
    # gRPC module (the grpc driver's routes)
    if daemon_modules(daemons_file).get("staticd"):
        out.append("staticd")
    return out


def daemon_modules(daemons_file: str) -> dict[str, list[str]]:
    """`-M module` options of each daemon in a daemons file (e.g. bgpd `-M grpc:50051`)."""
    out: dict[str, list[str]] = {}
    for line in daemons_file.splitlines():
        name, sep, value = line.partition("_options=")
        if not sep:
            continue
        words = value.strip().strip('"').split()
        out[name.strip()] = [
            w for i, w in enumerate(words) if w == "-M" or (i > 0 and words[i - 1] == "-M")
        ]
    return out


def start_frr(
    ns: str,
    hostname: str,
    workdir: Path,
    daemons: list[str],
    conf: Path,
    sbin: Path = netns.FRR_SBIN,
    modules: dict[str, list[str]] | None = None,
) -> None:
    for daemon in daemons:
        extra = ["-s", "90000000"] if daemon == "zebra" else []
        extra += (modules or {}).get(daemon, [])
        netns.start_frr_daemon(ns, hostname, daemon, workdir, extra, sbin)
    netns.vtysh_load(ns, workdir / "vty", conf)


def restart_daemon(lab: Lab, hostname: str, daemon: str) -> None:
    """Kill one FRR daemon of a host (SIGKILL), start it again and reload frr.conf,
    as watchfrr and `vtysh -b` would."""
    workdir = lab.nsdir(hostname)
    pidfile = workdir / "vty" / f"{daemon}.pid"
    if pidfile.exists():  # else not running yet (staticd, switched to grpc)
        pid = int(pidfile.read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    modules = daemon_modules((workdir / "etc" / "daemons").read_text())
    start_frr(
        lab.plan.host_ns(hostname),
        hostname,
        workdir,
        [daemon],
        workdir / "etc" / "frr.conf",
        lab.frr_sbin,
        modules,
    )
