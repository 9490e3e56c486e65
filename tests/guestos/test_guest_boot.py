"""End-to-end: a real Debian guest configures itself from `frrctl configdrive` alone.

Each cell boots an image (lab/build-images.sh: no network configuration baked in,
cloud-init's ConfigDrive datasource only) under QEMU with its tap plugged by
`frrctl instance plug --port`, then pings every address from the host namespace:
an answer needs the guest's /32 or /128 and its default route via 169.254.0.1 or
fe80::1, which only cloud-init can have set. The guest's own view (serial console)
then shows that cloud-init read this ConfigDrive and which renderer applied it.

All six cells run by default (CI too: ~9 min measured on 2 shared cores);
FRRCTL_GUESTOS=quick runs only the two dual-stack cells.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.guestos.conftest import IMAGES, new_vm
from tests.guestos.vm import Vm
from tests.host.conftest import HostNs, sh

pytestmark = [pytest.mark.slow, pytest.mark.lab]

FAMILIES = {
    "dual": ("192.0.2.61", "2001:db8:61::61"),
    "v4only": ("192.0.2.62",),
    "v6only": ("2001:db8:62::62",),
}
QUICK_CELLS = {("debian-eni", "dual"), ("debian-netplan", "dual")}
BOOT_TIMEOUT = 300.0  # s of TCG boot until every address answers
# What each image's renderer writes, and what the other renderer would have.
ENI = "/etc/network/interfaces.d/50-cloud-init"
NETPLAN = "/etc/netplan/50-cloud-init.yaml"
RENDERED = {"debian-eni": (ENI, NETPLAN), "debian-netplan": (NETPLAN, ENI)}


def cells() -> list[object]:
    quick = os.environ.get("FRRCTL_GUESTOS") == "quick"
    out = []
    for img in IMAGES:
        for fam in FAMILIES:
            marks = []
            if quick and (img, fam) not in QUICK_CELLS:
                marks.append(pytest.mark.skip(reason="FRRCTL_GUESTOS=quick: dual-stack cells only"))
            out.append(pytest.param(img, fam, id=f"{img}-{fam}", marks=marks))
    return out


def wait_for_pings(host: HostNs, vm: Vm, addrs: tuple[str, ...]) -> dict[str, float]:
    """Seconds from QEMU start to each address's first answer."""
    first: dict[str, float] = {}
    deadline = vm.started + BOOT_TIMEOUT
    while len(first) < len(addrs):
        if not vm.alive():
            raise AssertionError(f"QEMU exited:\n{tail(vm)}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no answer from {sorted(set(addrs) - set(first))} after {BOOT_TIMEOUT:.0f} s"
                f" (answered: {first}); guest console:\n{tail(vm)}"
            )
        for a in addrs:
            if a in first:
                continue
            if host.run("ping", "-n", "-c1", "-W1", a, check=False).returncode == 0:
                first[a] = round(time.monotonic() - vm.started, 1)
        time.sleep(0.5)
    return first


def tail(vm: Vm, lines: int = 60) -> str:
    return "\n".join(vm.console().splitlines()[-lines:])


@pytest.mark.parametrize(("image", "family"), cells(), indirect=["image"])
def test_guest_configures_itself_from_configdrive(
    hostns: HostNs,
    image: Path,
    family: str,
    vm_factory: list[Vm],
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    addrs = FAMILIES[family]
    v4 = [a for a in addrs if ":" not in a]
    v6 = [a for a in addrs if ":" in a]
    vm = new_vm(hostns, image, tmp_path, vm_factory)
    hostns.frrctl("host", "setup")
    hostns.frrctl("instance", "plug", "vm1", "--mac", vm.mac, "--ip", *addrs, "--port", vm.tap)
    iid = str(uuid.uuid4())
    iso = tmp_path / "configdrive.iso"
    sh("frrctl", "configdrive", "--out", str(iso), "--mac", vm.mac, "--ip", *addrs,
       "--hostname", "guestos", "--instance-id", iid)  # fmt: skip

    vm.start(iso)
    first = wait_for_pings(hostns, vm, addrs)
    record_property("guestos", f"first ping (s) {first}")

    # The guest's own view, through its serial console.
    assert vm.shell("cat /var/lib/cloud/data/instance-id", timeout=120) == iid
    log = vm.shell("grep -E 'found local data from DataSourceConfigDrive|Applying network "
                   "configuration from ds' /var/log/cloud-init.log | cut -c1-200")  # fmt: skip
    assert "found local data from DataSourceConfigDrive" in log, log
    assert "Applying network configuration from ds" in log, log
    ours, other = RENDERED[image.name]
    assert vm.shell(f"test -s {ours} && ! test -e {other} && echo rendered") == "rendered"
    # ENI renders `pointopoint 169.254.0.1`: "inet A peer 169.254.0.1/32", still a /32
    out = vm.shell("ip -j addr show scope global")
    addr = sorted(f"{i['local']}/{i['prefixlen']}" for link in json.loads(out)
                  for i in link["addr_info"] if "local" in i)  # fmt: skip
    assert addr == sorted([f"{a}/32" for a in v4] + [f"{a}/128" for a in v6]), out
    r4 = vm.shell("ip -4 route show default")
    r6 = vm.shell("ip -6 route show default")
    assert ("default via 169.254.0.1" in r4) == bool(v4), r4
    assert ("default via fe80::1" in r6) == bool(v6), r6
    # every stage done, no module failed (a warning-free lab image: see build-images.sh)
    status = vm.shell("cloud-init status --wait --long; echo rc=$?", timeout=240)
    assert "status: done" in status and "rc=0" in status, status
    assert "DataSourceConfigDrive" in status, status
    record_property("guestos", f"cloud-init done after {time.monotonic() - vm.started:.0f} s")
