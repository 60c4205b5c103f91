"""The on-disk sliver cache: verified slivers and metadata of blobs read or written, LRU by bytes.

Layout under `<cache_dir>/slivers/`:

    index.db                   SQLite, schema in `SCHEMA`
    <blob id>/metadata         BlobMetadataWithId BCS (as a node serves it)
    <blob id>/p<index>         SliverData BCS of primary sliver <index>
    <blob id>/s<index>         SliverData BCS of secondary sliver <index>

Only verified data goes in (the caller verified it against the blob's metadata), and each
entry's BLAKE2b-256 is recorded; a read recomputes it and treats a mismatch (bit rot, a
truncated file, someone editing the cache) as a miss, removing the entry. Metadata is
re-verified against its blob ID by the caller on every load, so it carries no hash.

Eviction: least recently used first, until the total is under the byte limit. `atime` is a
counter, not a clock, so the order survives restarts and clock jumps. A file written but not
yet indexed (crash between the two) is unknown to the index and removed at open.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import threading
from pathlib import Path

SCHEMA = """
-- One row per cached file.
--   key     "<blob id>/metadata" | "<blob id>/p<index>" | "<blob id>/s<index>"
--   blob    the blob ID (base64url), for removing a blob's entries at once
--   size    bytes on disk
--   hash    BLAKE2b-256 of the content; empty for metadata (re-verified by the caller)
--   atime   value of the use counter at the last hit or write (higher = more recent)
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    hash BLOB NOT NULL,
    atime INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_atime ON entries (atime);
CREATE INDEX IF NOT EXISTS entries_by_blob ON entries (blob);
"""


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class SliverCache:
    """Thread-safe; every method does blocking I/O, so trio callers use `trio.to_thread`."""

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit = limit_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(root / "index.db"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        row = self._db.execute(
            "SELECT COALESCE(MAX(atime), 0), COALESCE(SUM(size), 0) FROM entries"
        )
        self._clock, self._total = (int(v) for v in row.fetchone())
        self.hits = 0
        self.misses = 0
        self._sweep_unindexed()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @property
    def total_bytes(self) -> int:
        return self._total

    def _sweep_unindexed(self) -> None:
        known = {r[0] for r in self._db.execute("SELECT key FROM entries")}
        for blob_dir in self.root.iterdir():
            if not blob_dir.is_dir():
                continue
            for path in blob_dir.iterdir():
                if f"{blob_dir.name}/{path.name}" not in known:
                    path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                blob_dir.rmdir()  # only if empty

    # -- access -----------------------------------------------------------------------------

    def get(self, blob_id: str, name: str) -> bytes | None:
        key = f"{blob_id}/{name}"
        with self._lock:
            row = self._db.execute("SELECT hash FROM entries WHERE key = ?", (key,)).fetchone()
            if row is None:
                self.misses += 1
                return None
            try:
                data = (self.root / key).read_bytes()
            except FileNotFoundError:
                data = None
            expected = bytes(row[0])
            if data is None or (expected and _hash(data) != expected):
                self._remove_locked(key)
                self.misses += 1
                return None
            self._clock += 1
            self._db.execute("UPDATE entries SET atime = ? WHERE key = ?", (self._clock, key))
            self.hits += 1
            return data

    def put(self, blob_id: str, name: str, data: bytes, *, hashed: bool = True) -> None:
        if len(data) > self.limit:
            return
        key = f"{blob_id}/{name}"
        path = self.root / key
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f".tmp-{name}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self._lock:
            old = self._db.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
            self._clock += 1
            self._db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)",
                (key, blob_id, len(data), _hash(data) if hashed else b"", self._clock),
            )
            self._total += len(data) - (int(old[0]) if old else 0)
            self._evict_locked()

    def remove_blob(self, blob_id: str) -> None:
        with self._lock:
            rows = self._db.execute("SELECT size FROM entries WHERE blob = ?", (blob_id,))
            self._total -= sum(int(r[0]) for r in rows)
            self._db.execute("DELETE FROM entries WHERE blob = ?", (blob_id,))
            shutil.rmtree(self.root / blob_id, ignore_errors=True)

    def _remove_locked(self, key: str) -> None:
        row = self._db.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self._total -= int(row[0])
            self._db.execute("DELETE FROM entries WHERE key = ?", (key,))
        (self.root / key).unlink(missing_ok=True)

    def _evict_locked(self) -> None:
        while self._total > self.limit:
            rows = self._db.execute("SELECT key FROM entries ORDER BY atime LIMIT 64").fetchall()
            if not rows:
                break
            for (key,) in rows:
                self._remove_locked(key)
                if self._total <= self.limit:
                    break
