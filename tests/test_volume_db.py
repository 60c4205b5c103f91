"""The volume database's settings and its checkpoint snapshot (no mount, no network)."""

from __future__ import annotations

import sqlite3
import threading
import zlib
from pathlib import Path

import pytest

from walrusfs.fs import checkpoint, schema


def _volume(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "meta.db"
    schema.open_volume(path, uid=0, gid=0, chunk_size=1 << 20).close()
    return schema.connect(path)


def test_one_process_holds_the_database(tmp_path: Path) -> None:
    """EXCLUSIVE locking: once the mount has written, nobody else can even read the file (the
    mount never takes per-statement locks, and no second opener sees a half state)."""
    db = _volume(tmp_path)
    db.execute("UPDATE params SET value = 'x' WHERE key = 'created'")
    other = sqlite3.connect(tmp_path / "meta.db", timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("SELECT count(*) FROM params").fetchone()
    other.close()
    assert not (tmp_path / "meta.db-shm").exists()  # the WAL index lives in memory
    db.close()


def test_snapshot_is_a_committed_state_while_the_loop_writes(tmp_path: Path) -> None:
    """The checkpoint copy is made in a thread through the mount's connection while the loop
    goes on committing: it must be some state between two transactions, never a torn one."""
    db = _volume(tmp_path)
    db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB)")
    db.execute("INSERT INTO params VALUES ('total', '0')")
    for i in range(2000):  # enough pages for many backup steps
        db.execute("INSERT INTO t VALUES (?, ?)", (i, bytes(2000)))
    out = tmp_path / "snap.wfc1"
    done = threading.Event()
    result: list[int] = []

    def snapshot() -> None:
        result.append(checkpoint._write_snapshot(db, out))
        done.set()

    thread = threading.Thread(target=snapshot)
    thread.start()
    i = 2000
    while not done.is_set() or i < 2200:  # transactions of two statements each
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?, ?)", (i, bytes(2000)))
        db.execute("UPDATE params SET value = ? WHERE key = 'total'", (str(i + 1),))
        db.execute("COMMIT")
        i += 1
    thread.join()
    raw = out.read_bytes()
    assert raw[:4] == checkpoint.MAGIC and result[0] > 2000 * 2000
    (tmp_path / "copy.db").write_bytes(zlib.decompress(raw[4:]))  # as restore() does
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = copy.execute("SELECT count(*) FROM t").fetchone()[0]
    total = int(copy.execute("SELECT value FROM params WHERE key = 'total'").fetchone()[0])
    assert rows >= 2000 and total in (0, rows)  # both statements of a transaction, or neither
    db.close()
