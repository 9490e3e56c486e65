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
    # FRR always runs staticd (frrcommon.sh): the controller's routes live there
    # (the grpc driver, and either driver on an OSPF host)
    return [*out, "staticd"]


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
    only: str | None = None,
) -> None:
    """Start `daemons` and apply `conf`: to every running daemon, as `vtysh -b`
    at boot, or to `only` (a restarted one)."""
    for daemon in daemons:
        extra = ["-s", "90000000"] if daemon == "zebra" else []
        extra += (modules or {}).get(daemon, [])
        netns.start_frr_daemon(ns, hostname, daemon, workdir, extra, sbin)
    netns.vtysh_load(ns, workdir / "vty", conf, only)


def kill_daemon(vty_dir: Path, daemon: str, timeout: float = 5.0) -> None:
    """SIGKILL one FRR daemon (by its pid file in `vty_dir`) and wait until it is
    gone; nothing when it does not run."""
    pidfile = vty_dir / f"{daemon}.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def restart_in(
    ns: str, hostname: str, workdir: Path, daemon: str, conf: Path, daemons_file: str,
    sbin: Path = netns.FRR_SBIN,
) -> None:  # fmt: skip
    """Kill one FRR daemon of a namespace, start it again with its modules and
    apply `conf` to it alone, as watchfrr does (frrcommon.sh daemon_start:
    `vtysh -b -d DAEMON`). The whole file into every daemon would enter
    `ospf6 router-id` again in ospf6d, which resets its redistribution: after
    a zebra restart FRR 8.4.4's ospf6d then flushes its externals for good."""
    kill_daemon(workdir / "vty", daemon)
    start_frr(ns, hostname, workdir, [daemon], conf, sbin, daemon_modules(daemons_file), daemon)


def restart_daemon(lab: Lab, hostname: str, daemon: str) -> None:
    """restart_in for a lab host, with its rendered frr.conf and daemons file."""
    workdir = lab.nsdir(hostname)
    etc = workdir / "etc"
    restart_in(lab.plan.host_ns(hostname), hostname, workdir, daemon, etc / "frr.conf",
               (etc / "daemons").read_text(), lab.frr_sbin)  # fmt: skip
