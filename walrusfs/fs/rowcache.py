"""Rows the read path asks for on every request, kept in memory while the database is
unchanged.

A 4 KiB read of a file on Walrus asked SQLite three times (the file's size, the chunk's row,
the blob's location): about a quarter of the daemon's time per request when the bytes are in
memory (py-spy of fio's random 4 KiB reads, docs/benchmarks.md). The mount is the only
writer of its database and writes through one connection, whose `total_changes` counts every
row an INSERT, UPDATE or DELETE touched (rolled back or not). So a row read while that count
stays the same is still the row: the cache is emptied whenever the count moves, and can never
answer with a row a write changed. Reads of a volume that is not being written are served
from memory; any write costs the next reads one query each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

#: rows kept at most (then all are dropped: the bound matters, not the policy)
MAX_ROWS = 65_536


class RowCache:
    """Values computed from the database by `get`, valid until its next change.

    Args:
        db: the connection every write of the database goes through.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._rows: dict[Hashable, object] = {}
        self._changes = db.total_changes

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        """The value of `key`: `load()` (a query that changes nothing) when the database has
        changed since it was kept, or it never was."""
        changes = self.db.total_changes
        if changes != self._changes:
            self._rows.clear()
            self._changes = changes
        try:
            return self._rows[key]  # type: ignore[return-value]
        except KeyError:
            value = load()
            if len(self._rows) >= MAX_ROWS:
                self._rows.clear()
            self._rows[key] = value
            return value
