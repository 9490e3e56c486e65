"""Which instance holds which addresses on this host: SQLite under the state dir.

The record survives restarts of the host tooling (the kernel state does not
survive a reboot; the record lets `instance list` show what is missing). The
address column is a primary key: one address can never belong to two
instances, even when two plugs race (`BEGIN IMMEDIATE` serialises writers).
An instance is either plugged (routes, neighbours and port) or only prepared
(port and guard ready, nothing routed: a guest arriving by migration, paused
until it resumes here); a prepared instance still holds its addresses.
"""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from frrctl.errors import FrrctlError
from frrctl.pools import IPAddress
from frrctl.sqlitedb import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS instance (
    name TEXT PRIMARY KEY,
    bridge TEXT NOT NULL,
    mac TEXT NOT NULL,
    port TEXT,
    port_setup TEXT NOT NULL DEFAULT '{}',
    plugged_at REAL NOT NULL,
    prepared INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS address (
    address TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    instance TEXT NOT NULL REFERENCES instance(name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS address_instance ON address(instance);
CREATE UNIQUE INDEX IF NOT EXISTS instance_port ON instance(bridge, port);
"""


@dataclass(frozen=True)
class Instance:
    name: str
    bridge: str
    mac: str
    addresses: tuple[IPAddress, ...]
    port: str | None = None
    # What plug changed on the port, so that unplug undoes exactly that.
    port_setup: dict[str, object] = field(default_factory=dict, compare=False)
    plugged_at: float = field(default=0.0, compare=False)
    # port and guard ready, no route or neighbour yet (announced once plugged)
    prepared: bool = field(default=False, compare=False)

    def same_data(self, other: Instance) -> bool:
        return (self.bridge, self.mac, self.addresses, self.port) == (
            other.bridge, other.mac, other.addresses, other.port,
        )  # fmt: skip

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "bridge": self.bridge,
            "mac": self.mac,
            "addresses": [str(a) for a in self.addresses],
            "port": self.port,
            "state": "prepared" if self.prepared else "plugged",
        }


class StateStore(SqliteStore):
    """Open with `StateStore(dir)`; `transaction()` holds the write lock."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "instances.db"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise FrrctlError(f"cannot open state {self.path}: {exc}") from None
        self.db.execute("PRAGMA foreign_keys = ON")
        # WAL + NORMAL: durable across a crash of the tool; the kernel state it
        # records does not survive a power loss either.
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(instance)")}
        if "prepared" not in columns:  # a record written before prepared instances
            self.db.execute("ALTER TABLE instance ADD COLUMN prepared INTEGER NOT NULL DEFAULT 0")

    def get(self, name: str) -> Instance | None:
        row = self.db.execute(
            "SELECT name, bridge, mac, port, port_setup, plugged_at, prepared FROM instance "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        return self._instance(row) if row else None

    def all(self, bridge: str | None = None) -> list[Instance]:
        rows = self.db.execute(
            "SELECT name, bridge, mac, port, port_setup, plugged_at, prepared FROM instance "
            "WHERE ? IS NULL OR bridge = ? ORDER BY name",
            (bridge, bridge),
        ).fetchall()
        return [self._instance(row) for row in rows]

    def owners(self, addresses: tuple[IPAddress, ...]) -> dict[IPAddress, str]:
        out: dict[IPAddress, str] = {}
        for addr in addresses:
            row = self.db.execute(
                "SELECT instance FROM address WHERE address = ?", (str(addr),)
            ).fetchone()
            if row:
                out[addr] = row[0]
        return out

    def port_owner(self, bridge: str, port: str) -> str | None:
        row = self.db.execute(
            "SELECT name FROM instance WHERE bridge = ? AND port = ?", (bridge, port)
        ).fetchone()
        return row[0] if row else None

    def put(self, inst: Instance) -> None:
        self.db.execute("DELETE FROM address WHERE instance = ?", (inst.name,))
        self.db.execute(
            "INSERT INTO instance (name, bridge, mac, port, port_setup, plugged_at, prepared) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET bridge = excluded.bridge,"
            " mac = excluded.mac, port = excluded.port, port_setup = excluded.port_setup,"
            " plugged_at = excluded.plugged_at, prepared = excluded.prepared",
            (
                inst.name,
                inst.bridge,
                inst.mac,
                inst.port,
                json.dumps(inst.port_setup, sort_keys=True),
                inst.plugged_at or time.time(),
                int(inst.prepared),
            ),
        )
        self.db.executemany(
            "INSERT INTO address (address, version, instance) VALUES (?, ?, ?)",
            [(str(a), a.version, inst.name) for a in inst.addresses],
        )

    def mark_plugged(self, name: str, at: float) -> None:
        """A prepared instance is now plugged (its data unchanged): one UPDATE."""
        self.db.execute(
            "UPDATE instance SET prepared = 0, plugged_at = ? WHERE name = ?", (at, name)
        )

    def delete(self, name: str) -> None:
        self.db.execute("DELETE FROM instance WHERE name = ?", (name,))

    def _instance(self, row: tuple[object, ...]) -> Instance:
        name = str(row[0])
        addrs = [
            ipaddress.ip_address(r[0])
            for r in self.db.execute("SELECT address FROM address WHERE instance = ?", (name,))
        ]
        return Instance(
            name=name,
            bridge=str(row[1]),
            mac=str(row[2]),
            addresses=tuple(sorted(addrs, key=lambda a: (a.version, int(a)))),
            port=str(row[3]) if row[3] is not None else None,
            port_setup=json.loads(str(row[4]) or "{}"),
            plugged_at=float(row[5]),  # type: ignore[arg-type]
            prepared=bool(row[6]),
        )
