"""A real Debian guest under QEMU (TCG), its NIC a tap in a host namespace.

QEMU runs inside the host namespace (`ip netns exec`), boots the cached image's
kernel and initrd with root=/dev/vda on a qcow2 overlay (the cache stays pristine)
and gets the ConfigDrive ISO as a second virtio disk: cloud-init's ConfigDrive
datasource finds it by its label config-2, as on OpenStack. The serial console is
a unix socket with a log file: root logs in there by itself (the image's getty
autologin), so a test can read the guest's own view of its network.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\r")
_NOISE = re.compile(r"^\[\s*\d+\.\d+\]|^ci-info: ")


def qemu_argv(image: Path, overlay: Path, iso: Path, tap: str, mac: str, run: Path) -> list[str]:
    """The QEMU command line (pure, so its choices are visible in one place)."""
    return [
        "qemu-system-x86_64",
        "-machine", "q35", "-accel", "tcg", "-m", "512", "-smp", "1",
        "-nodefaults", "-nographic", "-monitor", "none",
        "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
        "-append", "root=/dev/vda rw console=ttyS0",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-drive", f"file={iso},if=virtio,format=raw,readonly=on",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={mac}",
        "-chardev", f"socket,id=s0,path={run / 'serial.sock'},server=on,wait=off,"
                    f"logfile={run / 'console.log'}",
        "-serial", "chardev:s0",
        "-pidfile", str(run / "qemu.pid"),
    ]  # fmt: skip


@dataclass
class Vm:
    ns: str
    image: Path
    run: Path
    tap: str
    mac: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    _sock: socket.socket | None = field(default=None, repr=False)

    @property
    def console_log(self) -> Path:
        return self.run / "console.log"

    def start(self, iso: Path) -> None:
        overlay = self.run / "root.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
             "-b", str(self.image / "root.qcow2"), str(overlay)],
            check=True,
        )  # fmt: skip
        argv = qemu_argv(self.image, overlay, iso, self.tap, self.mac, self.run)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, *argv],
            stdin=subprocess.DEVNULL,
            stdout=(self.run / "qemu.out").open("wb"),
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console(self) -> str:
        """The serial console so far, without colour codes."""
        try:
            raw = self.console_log.read_bytes()
        except FileNotFoundError:
            return ""
        return _ANSI.sub(b"", raw).decode(errors="replace")

    def _connect(self, timeout: float = 10.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.run / "serial.sock"))
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline or not self.alive():
                    raise
                time.sleep(0.2)
                continue
            sock.settimeout(1.0)
            return sock

    def shell(self, command: str, timeout: float = 60.0) -> str:
        """Run COMMAND in the guest's autologin root shell on the serial console."""
        if self._sock is None:
            self._sock = self._connect()
        n = int(time.monotonic() * 1000) % 100000
        # The markers are computed by the guest's shell: the echoed command line
        # never contains them, only the command's output does.
        begin, end = f"@B{n + 1}@", f"@E{n + 1}@"
        quiet = "stty -echo cols 250; dmesg -n 1"  # no echo, no kernel lines in between
        line = f"{quiet}; echo @B$(({n}+1))@; {command}; echo @E$(({n}+1))@\n"
        buf = b""
        sent = 0.0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if begin.encode() not in buf and time.monotonic() - sent > 10:
                # again if the shell was not there yet (a getty still starting)
                self._sock.sendall(b"\n" + line.encode())
                sent = time.monotonic()
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                continue
            buf += chunk
            text = _ANSI.sub(b"", buf).decode(errors="replace")
            if end in text and begin in text:
                out = text.split(begin, 1)[1].split(end, 1)[0]
                # the console also carries the kernel's and systemd units' lines
                return "\n".join(x for x in out.splitlines() if x and not _NOISE.match(x))
        raise AssertionError(f"guest shell: no answer to {command!r} in {timeout:.0f} s")

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()  # QEMU on SIGTERM: the guest is powered off at once
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # the overlay holds the guest's writes (tens of MB); the console log stays
        (self.run / "root.qcow2").unlink(missing_ok=True)
