"""Thin side-effect layer of the lab: namespaces, links and daemons, via iproute2.

Every call raises LabError with the failing command and its stderr, so that
`lab up` can say what went wrong and clean up everything it made.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from frrctl.errors import FrrctlError

FRR_SBIN = Path("/usr/lib/frr")
EXABGP = Path(sys.executable).parent / "exabgp"  # installed with frrctl (PyPI exabgp)
VTYSH = "vtysh"


class LabError(FrrctlError):
    """The lab could not be built or inspected."""


def run(
    cmd: Sequence[str], check: bool = True, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, input=input
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(cmd)}: {exc}") from None
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {(result.stderr or result.stdout).strip()}")
    return result


def ns_run(
    ns: str, cmd: Sequence[str], check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return run(["ip", "netns", "exec", ns, *cmd], check=check, timeout=timeout)


def ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["ip", "-n", ns, *args], check=check)


def ip_batch(ns: str, lines: Sequence[str]) -> None:
    """Many iproute2 commands in one process (`ip -batch -`)."""
    if lines:
        run(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")


def sysctl(ns: str, *settings: str) -> None:
    ns_run(ns, ["sysctl", "-qw", *settings])


def add_namespace(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    ip(ns, "link", "set", "lo", "up")
    # Forwarding on; no DAD (addresses usable at once); never learn routes from RAs.
    sysctl(
        ns,
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv6.conf.default.accept_dad=0",
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_ra=0",
        "net.ipv6.conf.all.accept_ra=0",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    )


def existing_namespaces() -> set[str]:
    listed = run(["ip", "netns", "list"], check=False).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def delete_namespace(ns: str) -> None:
    """Kill every process in `ns`, then delete it; a missing namespace is fine."""
    if ns not in existing_namespaces():
        return
    for _ in range(3):
        pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    run(["ip", "netns", "del", ns], check=False)


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    ip(ns_a, "link", "add", name_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)


def chown_frr(path: Path) -> None:
    frr = pwd.getpwnam("frr")
    os.chown(path, frr.pw_uid, frr.pw_gid)


def start_frr_daemon(
    ns: str,
    hostname: str,
    daemon: str,
    workdir: Path,
    extra: Sequence[str] = (),
    sbin: Path = FRR_SBIN,
) -> None:
    """Start one FRR daemon in `ns` with its own UTS namespace (so `hostname` is right).

    The daemons start empty; the config is loaded afterwards with `vtysh -f`,
    the way `vtysh -b` applies an integrated frr.conf at boot.
    """
    vty = workdir / "vty"
    empty = workdir / "empty.conf"
    if not empty.exists():
        empty.write_text("")
    pidfile = vty / f"{daemon}.pid"
    sock = vty / f"{daemon}.vty"
    sock.unlink(missing_ok=True)  # a killed daemon leaves its socket behind
    cmd = [
        "ip", "netns", "exec", ns, "unshare", "--uts", "/bin/sh", "-c",
        'hostname "$0" && exec "$@"', hostname,
        str(sbin / daemon), "-d", "-N", ns, "-f", str(empty), "-i", str(pidfile),
        "--vty_socket", str(vty), "-z", str(vty / "zserv.api"), "-P", "0",
        "--log", f"file:{workdir / daemon}.log", *extra,
    ]  # fmt: skip
    result = run(cmd, check=False)
    if result.returncode != 0:
        raise LabError(f"{ns}: {daemon} failed to start: {result.stderr.strip()}")
    deadline = time.monotonic() + 15
    while not sock.exists():
        if time.monotonic() > deadline:
            raise LabError(f"{ns}: {daemon} did not open {sock}; see {workdir / daemon}.log")
        time.sleep(0.02)


def as_host(ns: str, hostname: str, cmd: Sequence[str]) -> list[str]:
    """`cmd` inside `ns` with its own UTS namespace named `hostname`.

    FRR tools take the hostname from uname: vtysh and frr-reload.py must see
    the host's name, as the daemons do, or they report a `hostname` change.
    """
    return [
        "ip",
        "netns",
        "exec",
        ns,
        "unshare",
        "--uts",
        "/bin/sh",
        "-c",
        'hostname "$0" && exec "$@"',
        hostname,
        *cmd,
    ]


FRR_RELOAD = "/usr/lib/frr/frr-reload.py"


def frr_reload_test(ns: str, hostname: str, vty: Path, config: Path) -> list[str]:
    """Lines `frr-reload.py --test` would change to make the running FRR equal `config`."""
    result = run(
        as_host(
            ns, hostname, [FRR_RELOAD, "--test", "--stdout", "--vty_socket", str(vty), str(config)]
        ),
        check=False,
    )
    if result.returncode != 0:
        raise LabError(f"{ns}: frr-reload.py --test failed: {result.stderr.strip()[-500:]}")
    return parse_reload_test(result.stdout)


def parse_reload_test(output: str) -> list[str]:
    """The lines under 'Lines To Delete' / 'Lines To Add', prefixed '-' / '+'."""
    changes, sign = [], ""
    for line in output.splitlines():
        if line.startswith("Lines To Delete"):
            sign = "-"
        elif line.startswith("Lines To Add"):
            sign = "+"
        elif sign and line.strip() and not set(line.strip()) <= {"="} and " INFO: " not in line:
            changes.append(sign + line.strip())
    return changes


def vtysh(ns: str, vty: Path, *commands: str, check: bool = True, timeout: float = 30) -> str:
    cmd = [VTYSH, "--vty_socket", str(vty)]
    for command in commands:
        cmd += ["-c", command]
    return ns_run(ns, cmd, check=check, timeout=timeout).stdout


def vtysh_load(ns: str, vty: Path, config: Path, daemon: str | None = None) -> None:
    """Apply a whole frr.conf (to `daemon` alone: `vtysh -d`, as watchfrr after a
    restart); vtysh names each line a daemon refused."""
    only = ["-d", daemon] if daemon else []
    result = ns_run(ns, [VTYSH, "--vty_socket", str(vty), *only, "-f", str(config)], check=False)
    if result.returncode != 0:
        raise LabError(f"{ns}: loading {config} failed:\n{(result.stdout + result.stderr).strip()}")


def recorder_command(record: Path) -> str:
    """The ExaBGP API process that appends every message to `record` (JSON lines)."""
    return f"{sys.executable} -m frrctl.lab.recorder {record}"


def start_exabgp(ns: str, config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    """ExaBGP in `ns`, in the foreground of its own session, logging into `workdir`."""
    env = {
        **os.environ,
        "exabgp.daemon.user": "root",  # namespaces need root; ExaBGP would drop to nobody
        "exabgp.daemon.daemonize": "false",
        "exabgp.log.destination": str(workdir / "exabgp.log"),
        "exabgp.log.level": "INFO",
    }
    with open(workdir / "exabgp.out", "wb") as out:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, str(EXABGP), "server", str(config)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
