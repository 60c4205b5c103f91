"""The block cache: blobs' bytes on disk, in 16 KiB blocks, each checked when read.

A random 4 KiB read of a file on Walrus must cost about one small disk read (and, on an
encrypted volume, the decryption of the 64 KiB AEAD segment that holds it), not the reading,
hashing and joining of the megabyte primary slivers (rows) that hold it. So the bytes of a
blob, once decoded from its rows (or written by an upload), are kept here at their own
offsets, and a read takes just the blocks it needs.

What is kept is what the blob holds on Walrus: the sealed (WFE1) bytes of an encrypted
volume, never its plaintext, so the cache gives someone who reads the disk nothing the storage
nodes do not already have. Slivers and metadata stay in `cache.slivers` (quilt patches are
read from columns, and metadata is verified against the blob ID on every load).

Layout under `<cache_dir>/blocks/`:

    index.db            SQLite, schema in `SCHEMA`: one row per blob, for eviction
    <blob id>.data      sparse file: the blob's bytes at their own offsets
    <blob id>.sums      16 bytes per block, block i at offset 16 * i: BLAKE2b-128 of block i
                        (the last block of a blob may be short); 16 zero bytes: not cached

Blocks are written before their sums, and nothing is fsynced: a crash can leave a sum whose
block did not reach the disk, which reads as a mismatch, that is a miss, and is cleared. A read
checks each block's sum unless the caller authenticates the bytes itself (`verify=False`: an
encrypted volume's AEAD does, and a failure there makes the caller `forget` the blob).

Two processes of one mount use the cache (the mount reads, its upload worker fills it with
what it uploaded): no state is kept in memory but the order of use, every read finds the sums
on disk, and a file that disappears under a reader is a miss.

Eviction: least recently used blob first (whole blobs), until the bytes are under the limit.
`atime` is a counter, not a clock; reads bump it in memory and write it with the next fill.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BLOCK = 16 << 10
SUM = 16
#: the share of the cache's filesystem a fill leaves free (as JuiceFS's --free-space-ratio)
FREE_RATIO = 0.1
_ABSENT = bytes(SUM)

log = logging.getLogger(__name__)

SCHEMA = """
-- One row per cached blob.
--   blob    the blob ID (base64url): the files are <blob>.data and <blob>.sums
--   bytes   bytes of the blob held (blocks with a sum)
--   atime   value of the use counter at the last read or fill (higher = more recent)
CREATE TABLE IF NOT EXISTS blobs (
    blob TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL,
    atime INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS blobs_by_atime ON blobs (atime);
"""


@dataclass(frozen=True)
class BlockCachePlace:
    """Where a block cache is and how large it may grow: what the mount hands its upload
    worker, which keeps there what it uploaded (a file just uploaded reads from the cache)."""

    root: Path
    limit: int

    def open(self) -> BlockCache:
        return BlockCache(self.root, self.limit)


def _sum(block: bytes | memoryview) -> bytes:
    return hashlib.blake2b(block, digest_size=SUM).digest()


class BlockCache:
    """Thread-safe. `get` is a few small preads (callers on the trio loop may call it for
    reads of up to a few blocks); `put` hashes what it writes and belongs in a worker thread.

    Args:
        root: the directory (created).
        limit_bytes: bytes of blobs held at most.
    """

    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root
        self.limit = limit_bytes
        root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(root / "index.db"), check_same_thread=False, isolation_level=None, timeout=30
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        (clock,) = self._db.execute("SELECT COALESCE(MAX(atime), 0) FROM blobs").fetchone()
        self._clock = int(clock)
        self._used: dict[str, int] = {}  # blob -> atime of its last read, not yet written
        self.hits = 0
        self.misses = 0
        self._sweep_unindexed()

    def close(self) -> None:
        with self._lock:
            self._flush_atimes_locked()
            self._db.close()

    def _paths(self, blob_id: str) -> tuple[Path, Path]:
        return self.root / f"{blob_id}.data", self.root / f"{blob_id}.sums"

    def _sweep_unindexed(self) -> None:
        """Files of blobs with no row: a crash (or an eviction) between the files and the
        index. The other process of the mount may be filling one right now; it finds its
        files gone at its next read, which is a miss."""
        known = {r[0] for r in self._db.execute("SELECT blob FROM blobs")}
        for path in self.root.iterdir():
            if path.suffix in (".data", ".sums") and path.stem not in known:
                path.unlink(missing_ok=True)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            (total,) = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM blobs").fetchone()
        return int(total)

    # -- access -----------------------------------------------------------------------------

    def get(
        self, blob_id: str, offset: int, length: int, blob_size: int, *, verify: bool = True
    ) -> bytes | None:
        """Blob bytes [offset, offset+length) (`length` > 0, within `blob_size`), or None when
        a block of them is not cached or does not match its sum (the sum is then cleared)."""
        first, last = offset // BLOCK, (offset + length - 1) // BLOCK
        # checked: whole blocks, to hash; unchecked: just the bytes asked for (a 64 KiB
        # segment spans five blocks, 80 KiB, and the disk read is most of a cache hit's cost)
        start, end = (
            (first * BLOCK, min(blob_size, (last + 1) * BLOCK))
            if verify
            else (
                offset,
                offset + length,
            )
        )
        data_path, sums_path = self._paths(blob_id)
        try:
            with _opened(sums_path, os.O_RDONLY) as fd:
                sums = os.pread(fd, SUM * (last - first + 1), SUM * first)
            with _opened(data_path, os.O_RDONLY) as fd:
                data = os.pread(fd, end - start, start)
        except FileNotFoundError:
            return self._miss()
        if len(sums) != SUM * (last - first + 1) or len(data) != end - start:
            return self._miss()
        view = memoryview(data)
        for i in range(last - first + 1):
            expected = sums[i * SUM : (i + 1) * SUM]
            if expected == _ABSENT:
                return self._miss()
            if verify and _sum(view[i * BLOCK : (i + 1) * BLOCK]) != expected:
                self._clear(blob_id, first + i)
                return self._miss()
        with self._lock:
            self._clock += 1
            self._used[blob_id] = self._clock
            self.hits += 1
        if not verify:
            return data
        return data[offset - start : offset - start + length]

    def _miss(self) -> bytes | None:
        with self._lock:
            self.misses += 1
        return None

    def _clear(self, blob_id: str, block: int) -> None:
        with (
            contextlib.suppress(FileNotFoundError),
            _opened(self._paths(blob_id)[1], os.O_WRONLY) as fd,
        ):
            os.pwrite(fd, _ABSENT, SUM * block)

    def put(self, blob_id: str, offset: int, data: bytes | memoryview, blob_size: int) -> None:
        """Keep blob bytes [offset, offset+len(data)): every whole block among them, and the
        blob's last (short) block if they reach the blob's end. A blob larger than the limit
        is not kept, nor anything that would leave less than FREE_RATIO of the disk free
        (least recently used blobs go first to make room). A cache that cannot write (a full
        disk, an I/O error) loses the blob, never the caller's operation: it is logged."""
        if blob_size > self.limit or not data:
            return
        view = memoryview(data)
        end = offset + len(view)
        first = -(-offset // BLOCK)  # blocks that start within the data
        last = end // BLOCK - 1 if end < blob_size else (blob_size - 1) // BLOCK
        if last < first:
            return
        try:
            if not self._room_for(len(view), blob_id):
                return
            self._write(blob_id, view, offset, range(first, last + 1), blob_size)
        except (OSError, sqlite3.Error) as exc:
            log.warning("block cache: blob %s not kept (%s)", blob_id, exc)
            with contextlib.suppress(OSError, sqlite3.Error):
                self.forget(blob_id)

    def _write(
        self, blob_id: str, view: memoryview, offset: int, blocks: range, blob_size: int
    ) -> None:
        first, last = blocks.start, blocks.stop - 1
        data_path, sums_path = self._paths(blob_id)
        added = 0
        with _opened(data_path) as dfd, _opened(sums_path) as sfd:
            old = os.pread(sfd, SUM * (last - first + 1), SUM * first)
            for i in range(first, last + 1):
                block = view[i * BLOCK - offset : min((i + 1) * BLOCK, blob_size) - offset]
                os.pwrite(dfd, block, i * BLOCK)
                os.pwrite(sfd, _sum(block), SUM * i)
                j = i - first
                if old[j * SUM : (j + 1) * SUM] in (b"", _ABSENT):
                    added += len(block)
        with self._lock:
            self._clock += 1
            self._db.execute(
                "INSERT INTO blobs VALUES (?, ?, ?) ON CONFLICT (blob) DO UPDATE "
                "SET bytes = bytes + excluded.bytes, atime = excluded.atime",
                (blob_id, added, self._clock),
            )
            self._used.pop(blob_id, None)
            self._flush_atimes_locked()
            self._evict_locked()

    def _room_for(self, nbytes: int, keep: str) -> bool:
        """Whether `nbytes` more leave FREE_RATIO of the cache's filesystem free, after
        evicting least recently used blobs (other than `keep`) as far as needed."""
        while True:
            st = os.statvfs(self.root)
            if st.f_bavail * st.f_frsize - nbytes >= FREE_RATIO * st.f_blocks * st.f_frsize:
                return True
            with self._lock:
                row = self._db.execute(
                    "SELECT blob FROM blobs WHERE blob != ? ORDER BY atime LIMIT 1", (keep,)
                ).fetchone()
                if row is None:
                    return False
                self._drop_locked(row[0])

    def _drop_locked(self, blob_id: str) -> None:
        self._db.execute("DELETE FROM blobs WHERE blob = ?", (blob_id,))
        self._used.pop(blob_id, None)
        for path in self._paths(blob_id):
            path.unlink(missing_ok=True)

    def forget(self, blob_id: str) -> None:
        """Drop what is kept of the blob (deleted, or its bytes failed the caller's check)."""
        with self._lock:
            self._drop_locked(blob_id)

    def _flush_atimes_locked(self) -> None:
        if self._used:
            self._db.executemany(
                "UPDATE blobs SET atime = ? WHERE blob = ?",
                [(atime, blob) for blob, atime in self._used.items()],
            )
            self._used.clear()

    def _evict_locked(self) -> None:
        (total,) = self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM blobs").fetchone()
        total = int(total)
        while total > self.limit:
            rows = self._db.execute(
                "SELECT blob, bytes FROM blobs ORDER BY atime LIMIT 16"
            ).fetchall()
            if not rows:
                break
            for blob, size in rows:
                self._db.execute("DELETE FROM blobs WHERE blob = ?", (blob,))
                for path in self._paths(blob):
                    path.unlink(missing_ok=True)
                total -= int(size)
                if total <= self.limit:
                    break


@contextlib.contextmanager
def _opened(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> Iterator[int]:
    fd = os.open(path, flags, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)
