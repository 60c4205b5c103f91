"""The read path's row cache: a value is read from the database once, and read again after
any change of the database through the connection, committed or rolled back."""

from __future__ import annotations

import sqlite3

import pytest

from walrusfs.fs.rowcache import RowCache
from walrusfs.fs.schema import transaction


def test_rows_are_kept_until_the_database_changes() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    db.execute("INSERT INTO t VALUES (1, 10), (2, 20)")
    cache = RowCache(db)
    loads: list[int] = []

    def value(row: int) -> int:
        loads.append(row)
        return int(db.execute("SELECT v FROM t WHERE id = ?", (row,)).fetchone()[0])

    assert cache.get(1, lambda: value(1)) == 10
    assert cache.get(1, lambda: value(1)) == 10 and loads == [1]
    db.execute("UPDATE t SET v = 11 WHERE id = 1")
    assert cache.get(1, lambda: value(1)) == 11 and loads == [1, 1]
    db.execute("UPDATE t SET v = 21 WHERE id = 2")  # another row: the cache drops all
    assert cache.get(1, lambda: value(1)) == 11 and loads == [1, 1, 1]
    with pytest.raises(RuntimeError), transaction(db):
        db.execute("UPDATE t SET v = 99 WHERE id = 1")
        raise RuntimeError("rolled back")
    assert cache.get(1, lambda: value(1)) == 11 and loads == [1, 1, 1, 1]
    db.execute("DELETE FROM t")
    assert cache.get(1, lambda: value(1) if db.execute("SELECT 1 FROM t").fetchone() else -1) == -1
