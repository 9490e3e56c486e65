"""Real guest tools in a VM namespace: systemd-networkd with a private /run, netplan generate.

systemd-networkd 252 runs inside the guest's network namespace and a private mount
namespace (`unshare -m`): its /run is a directory of the test (so the test reads the
link's state file, and no host dbus or udev socket is visible), /etc/systemd/network
holds only the rendered files, and /sys is read-only, which networkd takes as "no udev"
(it then manages links without waiting for udev, as in a container). The process is
networkd itself (each wrapper execs), so terminating it ends everything it started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.host.conftest import hostns  # noqa: F401  (fixture, reused)

NETWORKD = "/lib/systemd/systemd-networkd"

_NETWORKD_SH = """
mount --bind "$1" /run
mount --bind "$2" /etc/systemd/network
mount -o remount,ro /sys
mkdir -p /run/systemd/netif /run/systemd/network
chown -R systemd-network:systemd-network /run/systemd/netif
export SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=debug
exec "$3"
"""


def networkd_skip_reason() -> str | None:
    if not os.access(NETWORKD, os.X_OK):
        return "needs systemd-networkd"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    return None


@dataclass
class Networkd:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    log: Path

    def admin_state(self, ifindex: int) -> str | None:
        state = self.run_dir / "systemd" / "netif" / "links" / str(ifindex)
        if not state.exists():
            return None
        for line in state.read_text().splitlines():
            if line.startswith("ADMIN_STATE="):
                return line.split("=", 1)[1]
        return None

    def wait_configured(self, ifindex: int, timeout: float = 25) -> float:
        """Seconds until the link is 'configured'; AssertionError with the log tail if not."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"networkd exited {self.proc.returncode}: {self.tail()}")
            if self.admin_state(ifindex) == "configured":
                return time.monotonic() - start
            time.sleep(0.2)
        raise AssertionError(
            f"link {ifindex} still {self.admin_state(ifindex)!r} after {timeout}s: {self.tail()}"
        )

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@contextmanager
def networkd(ns: str, files: dict[str, str], workdir: Path) -> Iterator[Networkd]:
    """systemd-networkd in namespace `ns` with only `files` (name -> text) as its config."""
    run_dir, conf = workdir / "run", workdir / "network"
    for d in (run_dir, conf):
        d.mkdir(parents=True)
        d.chmod(0o755)  # networkd drops to systemd-network; tmp_path is 0700
    for name, text in files.items():
        (conf / name).write_text(text)
        (conf / name).chmod(0o644)
    log = workdir / "networkd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "-m", "--propagation", "private",
             "sh", "-e", "-c", _NETWORKD_SH, "sh", str(run_dir), str(conf), NETWORKD],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield Networkd(proc, run_dir, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def netplan_generate(yaml_text: str, root: Path) -> dict[str, str]:
    """`netplan generate --root-dir ROOT`; return the .network files it wrote for networkd."""
    src = root / "etc" / "netplan" / "50-cloud-init.yaml"
    src.parent.mkdir(parents=True)
    src.write_text(yaml_text)
    src.chmod(0o600)  # netplan warns about anything more open
    proc = subprocess.run(["netplan", "generate", "--root-dir", str(root)], capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = root / "run" / "systemd" / "network"
    return {p.name: p.read_text() for p in sorted(out.glob("*.network"))}


def veth_match(network_file: str) -> str:
    """netplan matches a MAC with PermanentMACAddress=, which a virtio/tap NIC of a VM has
    and a veth has not (its permanent address is all zeros): match the same MAC as the
    current address instead, the only edit made to netplan's output."""
    return network_file.replace("\nPermanentMACAddress=", "\nMACAddress=")
