"""IP address allocation for routed VMs: loose pools in SQLite.

A pool is a set of entries exactly as the inventory writes them (an address,
a prefix or an inclusive range, parsed by `frrctl.pools.parse_entry`, so the
inventory, the FRR guards and the allocator agree on what is in a pool).
There is no subnet: every address of a /24, .0 and .255 included, can be
given to a VM. IPv4 and IPv6 are independent; entries need not be contiguous.

Writers take SQLite's write lock up front (`BEGIN IMMEDIATE`): two allocations
running at the same time, in any number of processes, never get the same
address; the address column is the primary key as a second guard.
Addresses are stored as fixed-width hex so that IPv6 sorts and compares
correctly in SQLite (whose integers stop at 64 bits).
"""

from __future__ import annotations

import ipaddress
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frrctl.errors import FrrctlError, UsageError
from frrctl.pools import IPAddress, PoolEntry, parse_entry
from frrctl.sqlitedb import SqliteStore

DEFAULT_DB = Path("/var/lib/frrctl/ipam.db")
DEFAULT_POOL = "default"

SCHEMA = """
CREATE TABLE IF NOT EXISTS pool_range (
    text TEXT PRIMARY KEY,
    pool TEXT NOT NULL,
    version INTEGER NOT NULL,
    first TEXT NOT NULL,
    last TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS allocation (
    key TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    version INTEGER NOT NULL,
    instance TEXT NOT NULL,
    allocated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS allocation_instance ON allocation(instance);
"""


def key(version: int, value: int) -> str:
    """Sortable text form: version digit + 32 hex digits."""
    return f"{version}{value:032x}"


def _addr(version: int, value: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


@dataclass(frozen=True)
class Allocation:
    address: IPAddress
    instance: str

    def to_json(self) -> dict[str, Any]:
        return {"address": str(self.address), "instance": self.instance}


class Ipam(SqliteStore):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise FrrctlError(f"cannot open pool database {self.path}: {exc}") from None

    # -- pools -------------------------------------------------------------------
    def entries(self, pool: str | None = None) -> list[tuple[str, PoolEntry]]:
        rows = self.db.execute(
            "SELECT pool, text FROM pool_range WHERE ? IS NULL OR pool = ? ORDER BY version, first",
            (pool, pool),
        ).fetchall()
        return [(str(p), parse_entry(str(t))) for p, t in rows]

    def add(self, texts: Iterable[str], pool: str = DEFAULT_POOL) -> list[str]:
        """Add entries; an entry already in this pool is a no-op. Returns what was added."""
        new = [_parse(t) for t in texts]
        added: list[str] = []
        with self.transaction():
            existing = self.entries()
            for entry in new:
                same = [
                    (p, e) for p, e in existing
                    if (e.version, e.first, e.last) == (entry.version, entry.first, entry.last)
                ]  # fmt: skip
                if same and same[0][0] == pool:
                    continue
                for p, e in existing:
                    if e.overlaps(entry):
                        raise UsageError(
                            f"{entry.text!r} overlaps {e.text!r} (pool {p}); nothing added"
                        )
                self.db.execute(
                    "INSERT INTO pool_range (text, pool, version, first, last) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (entry.text, pool, entry.version, key(entry.version, entry.first),
                     key(entry.version, entry.last)),
                )  # fmt: skip
                existing.append((pool, entry))
                added.append(entry.text)
        return added

    def remove(self, texts: Iterable[str], force: bool = False) -> list[str]:
        """Remove entries (as added, or any equal range); refuse while addresses are in use."""
        wanted = [_parse(t) for t in texts]
        removed: list[str] = []
        with self.transaction():
            existing = self.entries()
            for entry in wanted:
                match = [
                    e for _, e in existing
                    if (e.version, e.first, e.last) == (entry.version, entry.first, entry.last)
                ]  # fmt: skip
                if not match:
                    raise UsageError(f"{entry.text!r} is not a pool entry; nothing removed")
                used = self._allocations_in(match[0])
                if used and not force:
                    shown = ", ".join(f"{a.address} ({a.instance})" for a in used[:5])
                    raise FrrctlError(
                        f"{entry.text!r} still has {len(used)} allocated address(es): {shown}; "
                        "release them or use --force; nothing removed"
                    )
                self.db.execute("DELETE FROM pool_range WHERE text = ?", (match[0].text,))
                removed.append(match[0].text)
        return removed

    def _allocations_in(self, entry: PoolEntry) -> list[Allocation]:
        rows = self.db.execute(
            "SELECT address, instance FROM allocation WHERE key BETWEEN ? AND ? ORDER BY key",
            (key(entry.version, entry.first), key(entry.version, entry.last)),
        ).fetchall()
        return [Allocation(ipaddress.ip_address(a), str(i)) for a, i in rows]

    # -- allocations ---------------------------------------------------------------
    def allocate(
        self,
        instance: str,
        version: int | None = None,
        address: str | None = None,
        pool: str | None = None,
    ) -> IPAddress:
        """The given address, or the lowest free one of `version` (4 by default)."""
        if not instance:
            raise UsageError("an allocation needs an instance name")
        with self.transaction():
            entries = self.entries(pool)
            if address is not None:
                try:
                    addr = ipaddress.ip_address(address)
                except ValueError:
                    raise UsageError(f"{address!r} is not an IP address") from None
                if not any(addr in e for _, e in entries):
                    where = f"pool {pool}" if pool else "any pool"
                    raise FrrctlError(f"{addr} is not in {where}")
                row = self.db.execute(
                    "SELECT instance FROM allocation WHERE key = ?",
                    (key(addr.version, int(addr)),),
                ).fetchone()
                if row:
                    if row[0] == instance:
                        return addr  # already this instance's: idempotent
                    raise FrrctlError(f"{addr} is already allocated to instance {row[0]}")
                self._insert(addr, instance)
                return addr
            want = version or 4
            for _, entry in entries:
                if entry.version != want:
                    continue
                free = self._first_free(entry)
                if free is not None:
                    self._insert(free, instance)
                    return free
            where = f"pool {pool}" if pool else "the pools"
            raise FrrctlError(f"no free IPv{want} address left in {where}")

    def _first_free(self, entry: PoolEntry) -> IPAddress | None:
        """Lowest unallocated address of the entry: walk the allocations in order."""
        expect = entry.first
        for (k,) in self.db.execute(
            "SELECT key FROM allocation WHERE key BETWEEN ? AND ? ORDER BY key",
            (key(entry.version, entry.first), key(entry.version, entry.last)),
        ):
            value = int(str(k)[1:], 16)
            if value != expect:
                break
            expect += 1
        return _addr(entry.version, expect) if expect <= entry.last else None

    def _insert(self, addr: IPAddress, instance: str) -> None:
        self.db.execute(
            "INSERT INTO allocation (key, address, version, instance, allocated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (key(addr.version, int(addr)), str(addr), addr.version, instance, time.time()),
        )

    def release(
        self, addresses: Iterable[str] = (), instance: str | None = None
    ) -> list[Allocation]:
        """Release addresses and/or every address of an instance; unknown ones are no-ops."""
        released: list[Allocation] = []
        parsed = []
        for text in addresses:
            try:
                parsed.append(ipaddress.ip_address(text))
            except ValueError:
                raise UsageError(f"{text!r} is not an IP address") from None
        with self.transaction():
            for addr in parsed:
                row = self.db.execute(
                    "SELECT instance FROM allocation WHERE key = ?",
                    (key(addr.version, int(addr)),),
                ).fetchone()
                if row is None:
                    continue
                if instance is not None and row[0] != instance:
                    raise FrrctlError(f"{addr} belongs to instance {row[0]}, not {instance}")
                self.db.execute(
                    "DELETE FROM allocation WHERE key = ?", (key(addr.version, int(addr)),)
                )
                released.append(Allocation(addr, str(row[0])))
            if instance is not None and not parsed:
                rows = self.db.execute(
                    "SELECT address FROM allocation WHERE instance = ? ORDER BY key", (instance,)
                ).fetchall()
                self.db.execute("DELETE FROM allocation WHERE instance = ?", (instance,))
                released += [Allocation(ipaddress.ip_address(r[0]), instance) for r in rows]
        return released

    def allocations(self, instance: str | None = None) -> list[Allocation]:
        rows = self.db.execute(
            "SELECT address, instance FROM allocation WHERE ? IS NULL OR instance = ? ORDER BY key",
            (instance, instance),
        ).fetchall()
        return [Allocation(ipaddress.ip_address(a), str(i)) for a, i in rows]

    def summary(self, pool: str | None = None) -> dict[str, Any]:
        pools: list[dict[str, Any]] = []
        for name, entry in self.entries(pool):
            used = self.db.execute(
                "SELECT COUNT(*) FROM allocation WHERE key BETWEEN ? AND ?",
                (key(entry.version, entry.first), key(entry.version, entry.last)),
            ).fetchone()[0]
            pools.append({
                "pool": name, "entry": entry.text, "version": entry.version,
                "first": str(_addr(entry.version, entry.first)),
                "last": str(_addr(entry.version, entry.last)),
                "size": entry.size, "used": int(used), "free": entry.size - int(used),
            })  # fmt: skip
        in_pool = {e for _, e in self.entries(pool)}
        allocs = [
            a.to_json() for a in self.allocations() if any(a.address in e for e in in_pool)
        ] if pool else [a.to_json() for a in self.allocations()]  # fmt: skip
        return {"db": str(self.path), "entries": pools, "allocations": allocs}


def _parse(text: str) -> PoolEntry:
    try:
        return parse_entry(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
