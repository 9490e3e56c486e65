"""What frrctl's two SQLite files (instance record, address pools) share."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Self


class SqliteStore:
    """A store over one SQLite connection `db`; writers take the lock up front
    (BEGIN IMMEDIATE), so two processes never interleave a read-modify-write."""

    db: sqlite3.Connection

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
