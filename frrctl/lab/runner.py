"""`lab up` / `lab down`: build the fleet in namespaces, and remove all of it.

The state file is written before anything is created, so that a crashed run
(or a failed `up`) can always be removed by `down` or by the next `up`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from frrctl.frrcheck import check_config
from frrctl.inventory import Fleet, load_inventory
from frrctl.lab import netns
from frrctl.lab.configs import exabgp_config, upstream_config, upstream_daemons
from frrctl.lab.netns import LabError
from frrctl.lab.topology import PEER_IFACE, PEER_LINK6, LabPlan, plan_lab
from frrctl.render import render_fleet

log = logging.getLogger(__name__)
DEFAULT_STATE_DIR = Path(os.environ.get("FRRCTL_LAB_DIR", "/run/frrctl-lab"))
EXABGP = Path(sys.executable).parent / "exabgp"
STATE_FILE = "state.json"


@dataclass(frozen=True)
class Lab:
    """A running (or half-built) lab: its plan and where its files live."""

    plan: LabPlan
    state_dir: Path
    inventory: Path

    @property
    def workdir(self) -> Path:
        return self.state_dir / self.plan.prefix

    def nsdir(self, role: str) -> Path:
        return self.workdir / role

    def vty(self, role: str) -> Path:
        return self.nsdir(role) / "vty"

    @property
    def record(self) -> Path:
        return self.nsdir("xbgp") / "updates.jsonl"


def load_state(state_dir: Path) -> dict[str, object] | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"namespaces": [], "prefix": None}
    return data if isinstance(data, dict) else None


def attach(state_dir: Path) -> Lab:
    """The lab described by the state file (LabError when no lab is up)."""
    state = load_state(state_dir)
    if not state or not state.get("prefix"):
        raise LabError(f"no lab is up (no {state_dir / STATE_FILE}); run `frrctl lab up`")
    inventory = Path(str(state["inventory"]))
    fleet = load_inventory(inventory)
    return Lab(plan_lab(fleet, str(state["prefix"])), state_dir, inventory)


def down(state_dir: Path) -> list[str]:
    """Remove the lab of `state_dir`: processes, namespaces, files. Returns what went."""
    state = load_state(state_dir)
    if state is None:
        return []
    removed = []
    present = netns.existing_namespaces()
    for ns in state.get("namespaces", []) or []:  # type: ignore[union-attr]
        if ns in present:
            netns.delete_namespace(str(ns))
            removed.append(str(ns))
        shutil.rmtree(Path("/var/run/frr") / str(ns), ignore_errors=True)
    prefix = state.get("prefix")
    if prefix:
        shutil.rmtree(state_dir / str(prefix), ignore_errors=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return removed


def up(inventory: Path, state_dir: Path = DEFAULT_STATE_DIR, wait: float = 90) -> Lab:
    fleet = load_inventory(inventory)  # exit 2 before anything is touched
    rendered = render_fleet(fleet)
    for hostname, files in rendered.items():
        check_config(files["frr.conf"], f"{hostname}/frr.conf")
    leftovers = down(state_dir)
    if leftovers:
        log.warning("removed leftovers of an earlier lab run: %s", ", ".join(leftovers))
    prefix = "fl" + secrets.token_hex(3)
    lab = Lab(plan_lab(fleet, prefix), state_dir, inventory.resolve())
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # FRR (user frr) reads its config and sockets below it
    (state_dir / STATE_FILE).write_text(
        json.dumps(
            {
                "prefix": prefix,
                "inventory": str(inventory.resolve()),
                "namespaces": lab.plan.namespaces(),
                "started": time.time(),
            },
            indent=2,
        )
    )
    try:
        _build(lab, fleet, rendered)
        if wait > 0:
            _wait_converged(lab, wait)
    except BaseException:
        down(state_dir)
        raise
    return lab


def _prepare_dir(path: Path) -> None:
    (path / "vty").mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    netns.chown_frr(path)
    netns.chown_frr(path / "vty")


def _build(lab: Lab, fleet: Fleet, rendered: dict[str, dict[str, str]]) -> None:
    plan = lab.plan
    for ns in plan.namespaces():
        netns.add_namespace(ns)
    up_ns, peer_ns = plan.upstream_ns, plan.peer_ns
    upstream = fleet.lab.upstream
    netns.ip_batch(
        up_ns,
        [
            f"address add {upstream.loopback4}/32 dev lo",
            f"address add {upstream.loopback6}/128 dev lo",
        ],
    )
    # Upstream <-> ExaBGP
    peer = fleet.lab.exabgp
    netns.veth(up_ns, PEER_IFACE, peer_ns, PEER_IFACE)
    netns.ip_batch(
        up_ns,
        [
            f"address add {peer.upstream_address}/31 dev {PEER_IFACE}",
            f"address add {PEER_LINK6[0]} dev {PEER_IFACE} nodad",
            f"link set {PEER_IFACE} up",
        ],
    )
    netns.ip_batch(
        peer_ns,
        [
            f"address add {peer.address}/31 dev {PEER_IFACE}",
            f"address add {PEER_LINK6[1]} dev {PEER_IFACE} nodad",
            f"link set {PEER_IFACE} up",
        ],
    )
    # Host uplinks and bridges
    bridge = fleet.fabric.bridge
    for host in fleet.hosts:
        hns = plan.host_ns(host.hostname)
        for link in plan.links_of(host.hostname):
            netns.veth(hns, link.host_iface, up_ns, link.upstream_iface)
            netns.ip_batch(
                hns,
                [
                    *(
                        f"address add {a} dev {link.host_iface} nodad"
                        if ":" in a
                        else f"address add {a} dev {link.host_iface}"
                        for a in link.host_addresses
                    ),
                    f"link set {link.host_iface} up",
                ],
            )
            netns.ip_batch(
                up_ns,
                [
                    *(
                        f"address add {a} dev {link.upstream_iface} nodad"
                        if ":" in a
                        else f"address add {a} dev {link.upstream_iface}"
                        for a in link.upstream_addresses
                    ),
                    f"link set {link.upstream_iface} up",
                ],
            )
        _setup_bridge(hns, bridge, fleet)
    for vm in plan.vms:
        hns = plan.host_ns(vm.host)
        netns.veth(vm.namespace, "eth0", hns, vm.host_port)
        v4 = [a for a in vm.addresses if ":" not in a]
        v6 = [a for a in vm.addresses if ":" in a]
        # The guest, configured as cloud-init would: /32 and /128, on-link gateways.
        netns.ip_batch(
            vm.namespace,
            [
                f"link set eth0 address {vm.mac}",
                "link set eth0 up",
                *(f"address add {a}/32 dev eth0" for a in v4),
                *(f"address add {a}/128 dev eth0 nodad" for a in v6),
                *([f"route add default via {fleet.fabric.gateway4} dev eth0 onlink"] if v4 else []),
                *([f"route add ::/0 via {fleet.fabric.gateway6} dev eth0"] if v6 else []),
            ],
        )
        # The hypervisor: port on the bridge, host route + permanent neighbour per address.
        netns.ip_batch(
            hns,
            [
                f"link set {vm.host_port} master {bridge}",
                f"link set {vm.host_port} up",
                *(f"route add {a} dev {bridge}" for a in vm.addresses),
                *(
                    f"neigh replace {a} lladdr {vm.mac} dev {bridge} nud permanent"
                    for a in vm.addresses
                ),
            ],
        )
    # FRR on every host, from the rendered files
    for host in fleet.hosts:
        role = host.hostname
        workdir = lab.nsdir(role)
        _prepare_dir(workdir)
        files = rendered[host.hostname]
        for rel, content in files.items():
            target = workdir / "etc" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        daemons = ["zebra", *_enabled(files["daemons"])]
        _start_frr(
            plan.host_ns(host.hostname),
            host.hostname,
            workdir,
            daemons,
            workdir / "etc" / "frr.conf",
        )
    # The upstream router
    workdir = lab.nsdir("upstream")
    _prepare_dir(workdir)
    conf = workdir / "frr.conf"
    conf.write_text(upstream_config(plan))
    _start_frr(up_ns, "upstream", workdir, upstream_daemons(plan), conf)
    # The ExaBGP test peer
    xdir = lab.nsdir("xbgp")
    xdir.mkdir(parents=True, exist_ok=True)
    lab.record.touch()
    xconf = xdir / "exabgp.conf"
    xconf.write_text(exabgp_config(plan, lab.record))
    env = {
        **os.environ,
        "exabgp.daemon.user": "root",
        "exabgp.daemon.daemonize": "false",
        "exabgp.log.destination": str(xdir / "exabgp.log"),
        "exabgp.log.level": "INFO",
    }
    with open(xdir / "exabgp.out", "w") as out:
        subprocess.Popen(
            ["ip", "netns", "exec", peer_ns, str(EXABGP), "server", str(xconf)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _setup_bridge(ns: str, bridge: str, fleet: Fleet) -> None:
    """cloudbr0 as the rendered bridge config describes it (until `host setup` does it)."""
    netns.ip_batch(
        ns,
        [
            f"link add {bridge} type bridge stp_state 0 forward_delay 0",
            f"link set {bridge} addrgenmode none",
            f"address add {fleet.fabric.gateway4}/32 dev {bridge}",
            f"address add {fleet.fabric.gateway6}/64 dev {bridge} nodad",
            f"link set {bridge} up",
        ],
    )


def _enabled(daemons_file: str) -> list[str]:
    out = []
    for line in daemons_file.splitlines():
        name, sep, value = line.partition("=")
        if sep and value.strip() == "yes" and name.endswith("d") and "_" not in name:
            out.append(name.strip())
    return out


def _start_frr(ns: str, hostname: str, workdir: Path, daemons: list[str], conf: Path) -> None:
    for daemon in daemons:
        extra = ["-s", "90000000"] if daemon == "zebra" else []
        netns.start_frr_daemon(ns, hostname, daemon, workdir, extra)
    netns.vtysh_load(ns, workdir / "vty", conf)


def _wait_converged(lab: Lab, timeout: float) -> None:
    from frrctl.lab.verify import collect, control_plane_ok

    deadline = time.monotonic() + timeout
    while True:
        report = collect(lab, pings=False, reload_test=False)
        if control_plane_ok(report):
            return
        if time.monotonic() > deadline:
            log.warning(
                "lab did not converge within %.0f s; `frrctl lab verify` shows where", timeout
            )
            return
        time.sleep(0.5)
