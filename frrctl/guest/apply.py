"""Configure a namespace as a real guest does: cloud-init's converter, then the guest's tool.

The Debian path (what the lab's VMs and the tests use): frrctl's network_data.json,
rendered by cloud-init's own ENI renderer (`cloud-init devel net-convert`), applied by
ifupdown's `ifup` with a private interfaces file and state directory, so nothing of the
machine's /etc/network or /run/network is read or written. `--no-scripts` skips the
machine's /etc/network/if-*.d hooks (resolved, ...), which are not the guest's.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from frrctl.errors import FrrctlError

# frrctl --format -> net-convert --kind
KINDS = {"network-data": "network_data.json", "netplan": "yaml"}
# the file each renderer writes, relative to the target root
MAIN_FILE = {
    "eni": "etc/network/interfaces.d/50-cloud-init",
    "netplan": "etc/netplan/50-cloud-init.yaml",
}


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"


def convert(
    text: str, fmt: str, renderer: str, mac: str, ifname: str = "eth0", distro: str = "debian"
) -> dict[str, str]:
    """Render frrctl's `fmt` output with cloud-init's `renderer`; return {relative path: text}."""
    if shutil.which("cloud-init") is None:
        raise FrrctlError("cloud-init not found: apt-get install cloud-init (its net-convert)")
    with tempfile.TemporaryDirectory(prefix="frrctl-guest-") as tmp:
        src, out = Path(tmp) / "source", Path(tmp) / "out"
        src.write_text(text)
        cmd = ["cloud-init", "devel", "net-convert", "-p", str(src), "-k", KINDS[fmt],
               "-d", str(out), "-D", distro, "-O", renderer]  # fmt: skip
        if fmt == "network-data":
            cmd += ["-m", f"{ifname},{mac}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or "Traceback" in proc.stderr:
            raise FrrctlError(f"cloud-init net-convert -O {renderer}: {_first_line(proc.stderr)}")
        return {str(p.relative_to(out)): p.read_text() for p in out.rglob("*") if p.is_file()}


def ifup(ns: str, interfaces: Path, ifname: str, state_dir: Path, dad: bool = True) -> None:
    """`ifup IFNAME` in namespace `ns` from a private interfaces file and state directory.

    `dad=False` is ifupdown's own `dad-attempts 0` (`nodad`, no wait for DAD): what
    a lab with one VM per address can afford, and ~1 s faster per VM.
    """
    if shutil.which("ifup") is None:
        raise FrrctlError("ifup not found: apt-get install ifupdown")
    state_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["ip", "netns", "exec", ns, "ifup", "--no-scripts", "-i", str(interfaces),
           "--state-dir", str(state_dir)]  # fmt: skip
    if not dad:
        cmd += ["-o", "dad-attempts=0"]
    cmd.append(ifname)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FrrctlError(f"ifup {ifname} in {ns}: {_first_line(proc.stderr)}")


def debian_guest_up(
    ns: str,
    network_data_json: str,
    mac: str,
    workdir: Path,
    ifname: str = "eth0",
    dad: bool = True,
) -> str:
    """Configure `ns` from network_data.json as a Debian guest does; return the ENI text.

    The interface must exist in `ns` with the VM's MAC (cloud-init matches it by MAC).
    """
    eni = convert(network_data_json, "network-data", "eni", mac, ifname)[MAIN_FILE["eni"]]
    workdir.mkdir(parents=True, exist_ok=True)
    interfaces = workdir / "interfaces"
    interfaces.write_text(eni)
    ifup(ns, interfaces, ifname, workdir / "ifstate", dad)
    return eni
