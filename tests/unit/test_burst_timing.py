"""The burst pipeline's pure timing decisions, and the vty exchange's reading
pattern over a real socket pair (a stand-in daemon that answers like bgpd)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from frrctl.daemon.memory import malloc_trim, trim_due
from frrctl.daemon.timing import gather_limit, step_timeout
from frrctl.frr.vty import CMD_SUCCESS, CMD_WARNING_CONFIG_FAILED, VtyClient, read_pause


def test_gather_limit_idle_worker_sends_the_first_part_soon() -> None:
    assert gather_limit(busy=False, window=0.01, max_window=0.1) == pytest.approx(0.02)
    assert gather_limit(busy=False, window=0.2, max_window=0.1) == pytest.approx(0.1)


def test_gather_limit_busy_worker_gathers_up_to_the_max() -> None:
    assert gather_limit(busy=True, window=0.01, max_window=0.1) == pytest.approx(0.1)


def test_step_timeout_does_not_spin_while_bgpd_is_gone() -> None:
    # a pass is due (0) but cannot run: wait for the next probe instead
    assert step_timeout(0.0, holder_down=True, probe_interval=0.1) == pytest.approx(0.1)
    assert step_timeout(5.0, holder_down=True, probe_interval=0.1) == pytest.approx(5.0)
    assert step_timeout(0.0, holder_down=False, probe_interval=0.1) == 0.0


def test_read_pause() -> None:
    assert read_pause(1) == 0.0
    assert read_pause(64) == 0.0
    assert read_pause(100) == pytest.approx(100 * 10e-6)
    assert read_pause(100_000) == pytest.approx(0.002)


class FakeBgpdVty:
    """A unix-socket server that answers each NUL-terminated command with its
    output, three NULs and a status byte, one write per answer (as bgpd does),
    reading 512 bytes at a time; `no network X` of a missing X fails."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.delay = delay
        self.writes = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        pending = b""
        with conn:
            while data := conn.recv(512):
                pending += data
                while b"\0" in pending:
                    command, _, pending = pending.partition(b"\0")
                    if self.delay:
                        time.sleep(self.delay)
                    if command.startswith(b"no network 203.0.113."):
                        conn.sendall(b"% Can't find static route specified\n\0\0\0\x0d")
                    else:
                        conn.sendall(b"\0\0\0\0")
                    self.writes += 1

    def close(self) -> None:
        self.server.close()


def test_exchange_answers_in_order_across_pauses(tmp_path: Path) -> None:
    path = f"{tmp_path}/bgpd.vty"
    server = FakeBgpdVty(path, delay=20e-6)
    client = VtyClient(Path(path), timeout=10)
    try:
        commands = [f"network 198.19.{i // 250}.{i % 250}/32" for i in range(3000)]
        commands[1500] = "no network 203.0.113.9/32"
        replies = client.run(commands)
        assert [r.command for r in replies] == commands
        assert replies[1500].status == CMD_WARNING_CONFIG_FAILED
        assert "Can't find" in replies[1500].output
        assert all(r.status == CMD_SUCCESS for i, r in enumerate(replies) if i != 1500)
        # the session stays in step: a short exchange right after
        (again,) = client.run(["network 198.19.99.1/32"])
        assert again.ok
    finally:
        client.close()
        server.close()


def test_trim_due_once_a_large_burst_is_read_back() -> None:
    assert trim_due(10_000, burst_over=True)
    assert not trim_due(10_000, burst_over=False)  # inside the burst: never
    assert not trim_due(3, burst_over=True)  # a single change: not worth it
    assert trim_due(1000, burst_over=True, threshold=1000)


def test_malloc_trim_runs() -> None:
    malloc_trim()  # glibc's, or a no-op elsewhere: must not raise
