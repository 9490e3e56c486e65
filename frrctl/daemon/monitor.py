"""Idle vty sessions to FRR's daemons: a closed one means the daemon died."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from frrctl.frr.base import AnnounceDriver, DriverError, FrrUnavailable
from frrctl.frr.vty import VtyClient

MONITORED = ("zebra", "bgpd", "ospfd", "ospf6d")


def monitored(announcer: AnnounceDriver) -> tuple[str, ...]:
    """The daemons to watch: FRR's routing daemons, and those the announcer's
    routes live in (staticd for the staticd drivers: a restart loses them all,
    and only a re-apply brings them back)."""
    return MONITORED + tuple(d for d in announcer.monitored_daemons if d not in MONITORED)


@dataclass
class FrrMonitor:
    """Idle vty sessions to FRR's daemons: a closed one means the daemon died."""

    vty_dir: Path
    daemons: tuple[str, ...] = MONITORED
    clients: dict[str, VtyClient] = field(init=False)
    down: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.clients = {d: VtyClient(self.vty_dir / f"{d}.vty", timeout=10) for d in self.daemons}

    def present(self) -> list[str]:
        """Daemons whose vty socket exists (a host may run only some)."""
        return [d for d, c in self.clients.items() if c.connected or c.path.exists()]

    def all_connected(self) -> bool:
        return not self.down and all(c.connected for c in self.clients.values())

    def connected(self, name: str) -> VtyClient | None:
        client = self.clients.get(name)
        return client if client is not None and client.connected else None

    def connect_all(self) -> list[str]:
        """Try to (re)connect every absent session; return the daemons now back."""
        back = []
        for name, client in self.clients.items():
            if client.connected:
                continue
            try:
                client.connect()
            except (FrrUnavailable, DriverError):
                if client.path.exists() or name in self.down:
                    self.down.add(name)
                continue
            if name in self.down:
                back.append(name)
                self.down.discard(name)
        return back

    def close(self) -> None:
        for client in self.clients.values():
            client.close()
