"""The tiny test guest of `lab/build-guest.sh`: where it is, and a libvirt domain for it.

Debian's cloud kernel with a busybox-static initramfs (cached under
/var/cache/frrctl/guest, or $FRRCTL_GUEST_CACHE). The guest reads its
addresses from the kernel command line (`frrctl.ip=ADDR`, matched to its NIC
by `frrctl.mac=MAC`), configures them as a routed guest does (/32, /128,
default via 169.254.0.1 onlink and via fe80::1), answers ping, powers off on
the ACPI button, and prints READY on its serial console. TCG only here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from frrctl.errors import FrrctlError

CACHE = Path(os.environ.get("FRRCTL_GUEST_CACHE") or "/var/cache/frrctl/guest")
READY = "tinyvm: ready"
EMULATOR = "/usr/bin/qemu-system-x86_64"


def ensure_image(checkout: Path | None = None) -> Path:
    """The cache directory, built first by the checkout's lab/build-guest.sh if needed."""
    if (CACHE / "vmlinuz").is_file() and (CACHE / "initrd.img").is_file() and checkout is None:
        return CACHE
    root = checkout or Path(__file__).resolve().parents[2]
    script = root / "lab" / "build-guest.sh"
    if not script.is_file():
        raise FrrctlError(f"no guest image in {CACHE} and no {script} to build it")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if r.returncode != 0:
        raise FrrctlError(f"lab/build-guest.sh failed: {r.stderr.strip().splitlines()[-1:]}")
    return Path(r.stdout.strip().splitlines()[-1])


def domain_xml(
    name: str,
    mac: str,
    tap: str,
    addresses: Sequence[str],
    console: Path,
    metadata: str | None = None,
    bridge: str | None = None,
    memory_mb: int = 128,
    image: Path = CACHE,
) -> str:
    """A TCG domain booting the tiny guest with one virtio NIC on tap `tap`.

    `bridge`: an `<interface type='bridge'>` on it (libvirt attaches the tap);
    otherwise `type='ethernet'` (whoever plugs the tap attaches it). `metadata`:
    extra elements inside `<metadata>` (e.g. frrctl's). The console file is
    appended to, so a migrated guest keeps one log.
    """
    ips = " ".join(f"frrctl.ip={a}" for a in addresses)
    md = f"<metadata>{metadata}</metadata>" if metadata else ""
    kind = "bridge" if bridge else "ethernet"
    source = f"<source bridge={quoteattr(bridge)}/>" if bridge else ""
    return f"""<domain type='qemu'>
  <name>{escape(name)}</name>{md}
  <memory unit='MiB'>{memory_mb}</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{escape(str(image / "vmlinuz"))}</kernel>
    <initrd>{escape(str(image / "initrd.img"))}</initrd>
    <cmdline>console=ttyS0 quiet frrctl.mac={mac} {escape(ips)}</cmdline></os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices><emulator>{EMULATOR}</emulator>
    <interface type='{kind}'><mac address={quoteattr(mac)}/>{source}
      <target dev={quoteattr(tap)} managed='yes'/><model type='virtio'/></interface>
    <serial type='file'><source path={quoteattr(str(console))} append='on'/>
      <target port='0'/></serial>
    <memballoon model='none'/></devices>
</domain>"""
