"""`lab up` / `lab down`: build the fleet in namespaces, and remove all of it.

The state file is written before anything is created, so that a crashed run
(or a failed `up`) can always be removed by `down` or by the next `up`.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from frrctl.errors import UsageError
from frrctl.inventory import Fleet, load_inventory
from frrctl.lab import netns
from frrctl.lab.configs import exabgp_config, upstream_config, upstream_daemons
from frrctl.lab.controller import controller_inventory, frr_sbin_for
from frrctl.lab.frrproc import (
    daemon_modules,
    enabled_daemons,
    prepare_dir,
    start_frr,
)
from frrctl.lab.state import DEFAULT_STATE_DIR, STATE_FILE, Lab, load_state
from frrctl.lab.topology import PEER_IFACE, PEER_LINK6, VmPlan, plan_lab
from frrctl.lab.verify import collect, control_plane_ok
from frrctl.pipeline import Rendered, render_checked, write_rendered

log = logging.getLogger(__name__)


def down(state_dir: Path) -> list[str]:
    """Remove the lab of `state_dir`: processes, namespaces, files. Returns what went."""
    state = load_state(state_dir)
    if state is None:
        return []
    removed = []
    present = netns.existing_namespaces()
    namespaces = state.get("namespaces") or []
    assert isinstance(namespaces, list)
    for ns in namespaces:
        if ns in present:
            netns.delete_namespace(str(ns))
            removed.append(str(ns))
        shutil.rmtree(Path("/var/run/frr") / str(ns), ignore_errors=True)
    prefix = state.get("prefix")
    if prefix:
        shutil.rmtree(state_dir / str(prefix), ignore_errors=True)
        for extra in state_dir.glob(f"{prefix}-fleet-*.yaml"):
            extra.unlink()
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return removed


def with_kinds(raw: dict[str, Any], qemu: Collection[str]) -> dict[str, Any]:
    """The inventory with exactly the VMs `qemu` as QEMU guests, the others namespaces."""
    out = json.loads(json.dumps(raw))
    vms = (out.get("lab") or {}).get("vms") or []
    unknown = set(qemu) - {vm.get("name") for vm in vms}
    if unknown:
        raise UsageError(f"--qemu: no VM {', '.join(sorted(unknown))} in the inventory's lab.vms")
    for vm in vms:
        vm["kind"] = "qemu" if vm.get("name") in qemu else "namespace"
    return out


def up(
    inventory: Path,
    state_dir: Path = DEFAULT_STATE_DIR,
    wait: float = 90,
    frr_sbin: Path = netns.FRR_SBIN,
    driver: str | None = None,
    qemu: Collection[str] | None = None,
) -> Lab:
    """Build the lab; with `driver`, every host runs in controller mode with that driver
    and its `frrctl daemon` decides what is announced. `qemu`: exactly these VMs run
    as real QEMU guests (None: as the inventory's `kind` says)."""
    fleet = load_inventory(inventory)  # exit 2 before anything is touched (gateways are fixed)
    prefix = "fl" + secrets.token_hex(3)
    if driver is not None or qemu is not None:
        raw = yaml.safe_load(inventory.read_text())
        tags = []
        if driver is not None:
            raw = controller_inventory(raw, {h.hostname for h in fleet.hosts}, driver)
            frr_sbin = frr_sbin_for((driver,))
            tags.append(driver)
        if qemu is not None:
            raw = with_kinds(raw, qemu)
            tags.append("qemu")
        inventory = state_dir / f"{prefix}-fleet-{'-'.join(tags)}.yaml"
        state_dir.mkdir(parents=True, exist_ok=True)
        inventory.write_text(yaml.safe_dump(raw, sort_keys=False))
        fleet = load_inventory(inventory)
    rendered = render_checked(fleet)  # refused by FRR: exit before anything is built
    image = None
    if any(vm.kind == "qemu" for vm in fleet.lab.vms):
        from frrctl.lab.qemu import guest_image

        image = guest_image()  # built and cached by lab/build-guest.sh on first use
    leftovers = down(state_dir)
    if leftovers:
        log.warning("removed leftovers of an earlier lab run: %s", ", ".join(leftovers))
    lab = Lab(plan_lab(fleet, prefix), state_dir, inventory.resolve(), frr_sbin)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)  # FRR (user frr) reads its config and sockets below it
    (state_dir / STATE_FILE).write_text(
        json.dumps(
            {
                "prefix": prefix,
                "inventory": str(inventory.resolve()),
                "namespaces": lab.plan.namespaces(),
                "started": time.time(),
                "frr_sbin": str(frr_sbin),
            },
            indent=2,
        )
    )
    try:
        _build(lab, fleet, rendered, image)
        if driver is not None:
            from frrctl.lab.controller import start_daemon

            for host in fleet.hosts:
                start_daemon(lab, host.hostname, lab.inventory)
        if wait > 0:
            _wait_converged(lab, wait)
        if image is not None:
            from frrctl.lab.qemu import wait_ready

            wait_ready(lab)
    except BaseException:
        down(state_dir)
        raise
    return lab


class _Background:
    """Run `fn` in a thread; `join()` re-raises what it raised."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:  # re-raised by join()
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _build(lab: Lab, fleet: Fleet, rendered: Rendered, image: Path | None = None) -> None:
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
    for host in fleet.hosts:
        hns = plan.host_ns(host.hostname)
        for link in plan.links_of(host.hostname):
            netns.veth(hns, link.host_iface, up_ns, link.upstream_iface)
            netns.ip_batch(
                hns,
                [
                    *_address_lines(link.host_iface, link.host_addresses),
                    f"link set {link.host_iface} up",
                ],
            )
            netns.ip_batch(
                up_ns,
                [
                    *_address_lines(link.upstream_iface, link.upstream_addresses),
                    f"link set {link.upstream_iface} up",
                ],
            )
        # The hypervisor's bridge, by frrctl itself, as on a real host.
        frrctl(
            hns,
            "host",
            "setup",
            "--bridge",
            fleet.fabric.bridge,
            "--state-dir",
            str(lab.host_state(host.hostname)),
        )
    # QEMU guests boot (TCG: seconds) while FRR starts and converges; their
    # hosts' libvirt agents plug them as they start.
    guests = None
    if image is not None:
        from frrctl.lab.qemu import start_vms

        guests = _Background(start_vms, lab, image)
    for vm in plan.vms:
        if vm.qemu:
            continue
        netns.veth(vm.namespace, "eth0", plan.host_ns(vm.host), vm.host_port)
        netns.ip(vm.namespace, "link", "set", "eth0", "address", vm.mac)
        configure_guest(lab, vm)
        plug(lab, vm, vm.host)
    # FRR on every host, from the rendered files
    for host in fleet.hosts:
        role = host.hostname
        workdir = lab.nsdir(role)
        prepare_dir(workdir)
        files = rendered[host.hostname]
        write_rendered({role: files}, {role: workdir / "etc"})
        daemons = ["zebra", *enabled_daemons(files["daemons"])]
        start_frr(
            plan.host_ns(host.hostname),
            host.hostname,
            workdir,
            daemons,
            workdir / "etc" / "frr.conf",
            lab.frr_sbin,
            daemon_modules(files["daemons"]),
        )
    # The upstream router
    workdir = lab.nsdir("upstream")
    prepare_dir(workdir)
    conf = workdir / "frr.conf"
    conf.write_text(upstream_config(plan))
    start_frr(up_ns, "upstream", workdir, upstream_daemons(plan), conf, lab.frr_sbin)
    # The ExaBGP test peer
    xdir = lab.nsdir("xbgp")
    xdir.mkdir(parents=True, exist_ok=True)
    lab.record.touch()
    xconf = xdir / "exabgp.conf"
    xconf.write_text(exabgp_config(plan, lab.record))
    netns.start_exabgp(peer_ns, xconf, xdir)
    if guests is not None:
        guests.join()


def _address_lines(iface: str, addresses: tuple[str, ...]) -> list[str]:
    return [f"address add {a} dev {iface}" + (" nodad" if ":" in a else "") for a in addresses]


def frrctl(ns: str, *args: str) -> str:
    """Run frrctl itself inside a namespace, as a libvirt or CloudStack hook would."""
    return netns.ns_run(ns, [sys.executable, "-m", "frrctl.cli", *args]).stdout


def configure_guest(lab: Lab, vm: VmPlan) -> None:
    """Configure the VM namespace as a Debian guest does: frrctl's network_data.json
    (what `guest-config --format network-data` prints), cloud-init's ENI renderer,
    ifupdown's ifup (the helper the guest tests use); no wait for DAD (ifupdown's
    dad-attempts 0), as the lab's guests always had."""
    from frrctl.guest.apply import debian_guest_up
    from frrctl.guest.netconfig import GuestNet, render

    data = render(GuestNet.parse(vm.mac, vm.addresses), "network-data")
    debian_guest_up(vm.namespace, data, vm.mac, lab.nsdir(f"guest-{vm.name}"), dad=False)


def plug(lab: Lab, vm: VmPlan, hostname: str) -> None:
    frrctl(
        lab.plan.host_ns(hostname),
        "instance",
        "plug",
        vm.name,
        "--mac",
        vm.mac,
        "--ip",
        *vm.addresses,
        "--port",
        vm.host_port,
        "--bridge",
        lab.plan.fleet.fabric.bridge,
        "--state-dir",
        str(lab.host_state(hostname)),
    )


def unplug(lab: Lab, vm: VmPlan, hostname: str) -> None:
    frrctl(
        lab.plan.host_ns(hostname),
        "instance",
        "unplug",
        vm.name,
        "--bridge",
        lab.plan.fleet.fabric.bridge,
        "--state-dir",
        str(lab.host_state(hostname)),
    )


def _wait_converged(lab: Lab, timeout: float) -> None:

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
