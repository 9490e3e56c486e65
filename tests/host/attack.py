"""A tenant's tools: frames forged with scapy, sent and captured inside namespaces.

Frames are built with scapy in the test process and handed as hex to a small
raw-socket program run in the namespace (scapy's own import would cost a
second per call there). The capture program records every frame an interface
receives for a while, so a test can show what reached a victim.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from scapy.layers.l2 import Ether
from scapy.packet import Packet

SENDER = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for frame in sys.stdin.read().split():
    s.send(bytes.fromhex(frame))
"""

CAPTURE = r"""
import select, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[1], 0))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while (left := end - time.monotonic()) > 0:
    if select.select([s], [], [], left)[0]:
        data, addr = s.recvfrom(65535)
        if addr[2] != socket.PACKET_OUTGOING:
            print(data.hex(), flush=True)
"""


def send(ns: str, frames: Sequence[Packet | bytes], iface: str = "eth0") -> None:
    """Send raw frames out of `iface` inside namespace `ns`."""
    data = "\n".join(bytes(f).hex() for f in frames)
    subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", SENDER, iface],
        input=data, text=True, check=True, capture_output=True,
    )  # fmt: skip


class Capture:
    def __init__(self) -> None:
        self.frames: list[Ether] = []

    def matching(self, predicate: object) -> list[Ether]:
        assert callable(predicate)
        return [f for f in self.frames if predicate(f)]


@contextmanager
def capture(ns: str, iface: str = "eth0", seconds: float = 2.0) -> Iterator[Capture]:
    """Everything `iface` in `ns` receives while the block runs (and a little after)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CAPTURE, iface, str(seconds + 60)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    result = Capture()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield result
        time.sleep(seconds)  # replies to what the block sent have time to arrive
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
    result.frames = [Ether(bytes.fromhex(line)) for line in out.split() if line != "ready"]
