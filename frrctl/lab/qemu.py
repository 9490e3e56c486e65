"""The lab's real VMs: a libvirtd per hypervisor namespace, frrctl's libvirt agent, TCG guests.

A host with a QEMU VM gets a private libvirtd (frrctl.libvirt.sandbox, its
files in the host's lab dir) and an `frrctl libvirt run` agent in its
namespace, logging to `HOST/libvirt-agent.log`. The lab defines each guest
with frrctl's metadata and starts it; the agent plugs it (nothing here calls
`instance plug`), the guest configures its /32 and /128 from its kernel command
line. Everything runs in the host's namespace, so `lab down` (which kills every
process of every namespace) also ends each QEMU, libvirtd and agent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from frrctl.guest import tinyvm
from frrctl.lab.netns import LabError
from frrctl.lab.state import Lab
from frrctl.lab.topology import VmPlan
from frrctl.libvirt import metadata
from frrctl.libvirt.metadata import Nic
from frrctl.libvirt.sandbox import Sandbox, uri_for

MEMORY_MB = 128
AGENT_LOG = "libvirt-agent.log"


def sandbox_dir(lab: Lab, host: str) -> Path:
    return lab.nsdir(host) / "libvirt"


def uri(lab: Lab, host: str) -> str:
    return uri_for(sandbox_dir(lab, host) / "run" / "libvirt-sock")


def agent_log(lab: Lab, host: str) -> Path:
    return lab.nsdir(host) / AGENT_LOG


def domain_name(lab: Lab, vm: VmPlan) -> str:
    return f"{lab.plan.prefix}-{vm.name}"


def instance_name(lab: Lab, vm: VmPlan) -> str:
    """The agent's name for the VM's plug (DOMAIN@MAC)."""
    return f"{domain_name(lab, vm)}@{vm.mac}"


def console(lab: Lab, vm: VmPlan) -> Path:
    """The guest's serial console, appended to by every QEMU that runs it (one log)."""
    return lab.nsdir("qemu") / f"{vm.name}.console"


def domain_xml(lab: Lab, vm: VmPlan, image: Path) -> str:
    ips = tuple(ipaddress.ip_address(str(ipaddress.ip_interface(a).ip)) for a in vm.addresses)
    meta = metadata.render([Nic(vm.mac, ips)])
    plain = [str(a) for a in ips]
    return tinyvm.domain_xml(
        domain_name(lab, vm), vm.mac, vm.host_port, plain, console(lab, vm), meta,
        None, MEMORY_MB, image,
    )  # fmt: skip


def libvirt_module() -> Any:
    import libvirt

    libvirt.registerErrorHandler(lambda *_: None, None)  # raised, not printed on stderr
    return libvirt


def host_running(lab: Lab, host: str) -> bool:
    """Whether the host's libvirtd answers (started by `up` or an earlier migration)."""
    sock = sandbox_dir(lab, host) / "run" / "libvirt-sock"
    if not sock.exists():
        return False
    r = subprocess.run(["virsh", "-q", "-c", uri(lab, host), "uri"], capture_output=True)
    return r.returncode == 0


def start_host(lab: Lab, host: str) -> None:
    """libvirtd and the agent in the host's namespace (the bridge must exist)."""
    ns = lab.plan.host_ns(host)
    Sandbox(ns, sandbox_dir(lab, host)).start()
    logf = agent_log(lab, host)
    with open(logf, "ab") as out:
        subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "frrctl.cli", "libvirt", "run",
             "--uri", uri(lab, host), "--state-dir", str(lab.host_state(host)),
             "--bridge", lab.plan.fleet.fabric.bridge, "--inventory", str(lab.inventory),
             "--host", host, "--log-format", "json"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not any(e.get("msg") == "connected" for e in agent_events(lab, host)):
        if time.monotonic() > deadline:
            raise LabError(f"the libvirt agent on {host} did not connect (see {logf})")
        time.sleep(0.05)


def agent_events(lab: Lab, host: str) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(OSError):
        for line in agent_log(lab, host).read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    out.append(entry)
    return out


def start_vms(lab: Lab, image: Path) -> None:
    """Every QEMU VM's host up (libvirtd, agent), each guest defined and started."""
    lv = libvirt_module()
    lab.nsdir("qemu").mkdir(parents=True, exist_ok=True)
    for host in lab.plan.qemu_hosts():
        if not host_running(lab, host):
            start_host(lab, host)
        conn = lv.open(uri(lab, host))
        try:
            for vm in lab.plan.vms:
                if vm.qemu and vm.host == host:
                    conn.defineXML(domain_xml(lab, vm, image)).create()
        finally:
            conn.close()


def ready(lab: Lab, vm: VmPlan) -> bool:
    path = console(lab, vm)
    return path.exists() and tinyvm.READY in path.read_text(errors="replace")


def wait_ready(lab: Lab, timeout: float = 60) -> None:
    """Every QEMU guest has printed READY (its addresses are configured)."""
    deadline = time.monotonic() + timeout
    for vm in lab.plan.vms:
        while vm.qemu and not ready(lab, vm):
            if time.monotonic() > deadline:
                raise LabError(f"QEMU VM {vm.name} did not boot in {timeout:.0f} s")
            time.sleep(0.1)


def guest_image() -> Path:
    """The tiny guest's kernel and initramfs (built once by lab/build-guest.sh), or exit."""
    try:
        import libvirt  # noqa: F401
    except ImportError:
        raise LabError("QEMU VMs need libvirt-python: run lab/setup.sh") from None
    return tinyvm.ensure_image()
