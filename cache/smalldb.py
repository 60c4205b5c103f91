"""small.db: the staging area's small chunks, one SQLite row each.

A chunk whose bytes end within the staging area's `SMALL_MAX` is a row `small(inode, chunkno,
data)`, rewritten whole on each write (the caller does the read-modify-write). Creating a file
on ext4 costs 150-1000 us here (a fresh inode), an SQLite row ~40 us, and most files people
copy (sources, documents, a backup tool's index files) are small: a file per small chunk would
make creating one cost more than everything else the mount does for it.

The database is in WAL mode with synchronous=NORMAL: a crash of the mount loses nothing
committed, and fsync of the WAL (`dup_wal_fd`) makes a commit durable. A full disk raises
OSError(ENOSPC) (`cache.diskfull`). The layout is in docs/formats.md (staging/).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from cache import Key
from cache.diskfull import disk_full_is_enospc

#: small.db's name in the staging directory (with its `-wal` and `-shm` beside it)
SMALL_DB = "small.db"


class SmallDb:
    """The rows of `<root>/small.db`. One connection, used from the loop's thread only."""

    def __init__(self, root: Path) -> None:
        self._db = _open(root / SMALL_DB)
        # the WAL's descriptor, duplicated for fsync (a committed write is in the WAL or,
        # after a checkpoint, synced into the database file)
        self._wal_fd = os.open(root / (SMALL_DB + "-wal"), os.O_RDONLY)

    def lengths(self) -> list[tuple[Key, int]]:
        """Every row's key and the length of its bytes."""
        rows = self._db.execute("SELECT inode, chunkno, length(data) FROM small")
        return [((int(inode), int(chunkno)), int(size)) for inode, chunkno, size in rows]

    def data(self, key: Key) -> bytes:
        """The chunk's bytes (empty if it has no row)."""
        row = self._db.execute(
            "SELECT data FROM small WHERE inode = ? AND chunkno = ?", key
        ).fetchone()
        return b"" if row is None else bytes(row[0])

    def store(self, key: Key, data: bytes) -> None:
        """Replace the chunk's bytes.

        Raises:
            OSError: ENOSPC if the disk is full.
        """
        with disk_full_is_enospc():
            self._db.execute("INSERT OR REPLACE INTO small VALUES (?, ?, ?)", (*key, data))

    def delete(self, key: Key) -> None:
        """Delete the chunk's row, if any.

        Raises:
            OSError: ENOSPC if the disk is full.
        """
        with disk_full_is_enospc():
            self._db.execute("DELETE FROM small WHERE inode = ? AND chunkno = ?", key)

    def delete_many(self, keys: Iterable[Key]) -> None:
        """Delete the chunks' rows in one transaction: all of them, or none.

        Raises:
            OSError: ENOSPC if the disk is full (nothing is deleted then).
        """
        try:
            with disk_full_is_enospc():
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM small WHERE inode = ? AND chunkno = ?", keys)
                self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def dup_wal_fd(self) -> int:
        """A descriptor of the WAL for a worker thread to fsync and close."""
        return os.dup(self._wal_fd)

    def close(self) -> None:
        os.close(self._wal_fd)
        self._db.close()


def _open(path: Path) -> sqlite3.Connection:
    """small.db: WAL, synchronous=NORMAL (a crash of the mount loses nothing committed; fsync
    of the WAL makes it durable), EXCLUSIVE like the volume database (one process)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS small (inode INTEGER NOT NULL, chunkno INTEGER NOT NULL, "
        "data BLOB NOT NULL, PRIMARY KEY (inode, chunkno))"
    )
    return db
