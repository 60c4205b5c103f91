"""File content: chunks that are staged locally or stored on Walrus (schema: `chunks`).

Reads come from staging, else from Walrus through `walrusfs.fs.stored` (its memory cache,
then the store's on-disk sliver cache, the network last). A write into a chunk that is on Walrus
first copies that chunk into staging ("materialises" it), then writes there; the uploader
later replaces the chunk's blob. A truncate never downloads anything.

Database rule (docs/mount.md): statements between two awaits are atomic with respect to
other requests, so every check-then-act below re-reads the row after its last await.

A full disk under the volume is ENOSPC for the writer: the database's "database or disk is
full" (SQLITE_FULL) leaves these methods as OSError(ENOSPC), as the staging area's own
failures do (a bare sqlite3 error became EIO in the handlers).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import trio
from cachetools import LRUCache

from cache import Key
from cache.diskfull import disk_full_is_enospc
from cache.staging import Staging
from chain import errors as chain_errors
from walrusfs.fs import blobs, crypto
from walrusfs.fs.rowcache import RowCache
from walrusfs.fs.stored import AHEAD_MAX, AHEAD_MIN, UNIT, BlobReader, StoredBytes
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

#: inodes per statement in `purge_inodes` (SQLite caps one statement's parameters, at 32,766
#: in most builds, and the mount purges every inode the kernel knew at unmount)
PURGE_BATCH = 500


def purge_inodes(db: sqlite3.Connection, staging: Staging, inodes: list[int]) -> list[Key]:
    """Delete those of `inodes` that have no link left, with all they hold: chunks (one blob
    reference each; a quilt may lose many at once), staged bytes, symlink target, xattrs; the
    chunk keys removed. The caller makes sure nothing else can reach them (the kernel forgot
    them, or no mount runs) and holds the transaction: the staged bytes go at once, which is
    harmless if it rolls back, since the inodes stay unlinked and the next attempt (at the
    latest the next mount's repair) deletes them again."""
    removed: list[Key] = []
    for start in range(0, len(inodes), PURGE_BATCH):
        part = inodes[start : start + PURGE_BATCH]
        marks = ", ".join("?" * len(part))
        gone = [
            int(i)
            for (i,) in db.execute(
                f"SELECT id FROM inodes WHERE id IN ({marks}) AND nlink <= 0", part
            )
        ]
        if not gone:
            continue
        marks = ", ".join("?" * len(gone))
        keys = []
        uses: Counter[int] = Counter()
        for inode, chunkno, blob in db.execute(
            f"SELECT inode, chunkno, blob FROM chunks WHERE inode IN ({marks})", gone
        ).fetchall():
            keys.append((int(inode), int(chunkno)))
            if blob is not None:
                uses[blob] += 1
        for blob, count in uses.items():
            blobs.decref(db, blob, count)
        staging.remove_all(keys)
        for table, column in (
            ("chunks", "inode"),
            ("symlinks", "inode"),
            ("xattrs", "inode"),
            ("inodes", "id"),
        ):
            db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", gone)
        removed += keys
    return removed


class ReadFailed(OSError):
    """Stored bytes of a file that cannot be read (EIO for the reader; the handler names the
    file in the log)."""

    def __init__(self, inode: int, chunkno: int, why: str) -> None:
        super().__init__(errno.EIO, f"chunk {chunkno} cannot be read: {why}")
        self.inode = inode


@dataclass(frozen=True)
class Chunk:
    staged: bool
    blob: int | None
    patch: str | None
    length: int


class Content:
    def __init__(
        self,
        db: sqlite3.Connection,
        staging: Staging,
        store: BlobReader,
        chunk_size: int,
        segment_cache_bytes: int = 256 << 20,
        *,
        keys: crypto.VolumeKeys | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: the monotonic seconds idle detection and upload back-offs are counted in
        (the uploader reads it too; tests pass trio's clock to drive them)."""
        self.db = db
        self.clock = clock
        self.staging = staging
        self.chunk_size = chunk_size
        #: Bumped on every change of a staged chunk, so the uploader knows whether the bytes
        #: it uploaded are still the chunk's bytes when the blob is certified.
        self.gen: dict[Key, int] = {}
        self._counter = itertools.count(1)
        #: monotonic time of the last change of each staged chunk (idle detection).
        self.last_write: dict[Key, float] = {}
        #: open file handles that may write, per inode (their chunks are not uploaded yet,
        #: unless full).
        self.writers: defaultdict[int, int] = defaultdict(int)
        self._locks: dict[Key, trio.Lock] = {}
        #: rows the read path asks for, valid until the database changes
        self.rows = RowCache(db)
        #: the read path of chunks on Walrus, with its memory cache
        self.stored = StoredBytes(db, store, keys, segment_cache_bytes, rows=self.rows)
        #: inode -> (where its last read ended, its read-ahead window in units, the offset up
        #: to which the read-ahead has asked)
        self._streams: LRUCache[int, tuple[int, int, int]] = LRUCache(maxsize=1024)
        #: blobs row -> its end epoch if it has expired (lifetime.Renewer.expired)
        self.expired: Callable[[int], int | None] = lambda row: None
        #: set when staged bytes shrink (an upload finished): writers waiting for room retry.
        self.space_freed = trio.Event()

    # -- rows -------------------------------------------------------------------------------

    def chunk(self, inode: int, chunkno: int) -> Chunk | None:
        return self.rows.get(("chunk", inode, chunkno), lambda: self._chunk(inode, chunkno))

    def _chunk(self, inode: int, chunkno: int) -> Chunk | None:
        row = self.db.execute(
            "SELECT staged, blob, patch, length FROM chunks WHERE inode = ? AND chunkno = ?",
            (inode, chunkno),
        ).fetchone()
        return None if row is None else Chunk(bool(row[0]), row[1], row[2], row[3])

    def generation(self, key: Key) -> int:
        """The chunk's current generation (unique across all chunks, changes on every write)."""
        gen = self.gen.get(key)
        if gen is None:
            gen = self.gen[key] = next(self._counter)
        return gen

    def _touch(self, key: Key) -> None:
        self.gen[key] = next(self._counter)
        self.last_write[key] = self.clock()

    def decref(self, blob: int | None, count: int = 1) -> None:
        if blob is not None:
            blobs.decref(self.db, blob, count)

    def _split(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(chunkno, offset in chunk, length) pieces of a file range."""
        end = offset + length
        while offset < end:
            chunkno, within = divmod(offset, self.chunk_size)
            n = min(end - offset, self.chunk_size - within)
            yield chunkno, within, n
            offset += n

    # -- read -------------------------------------------------------------------------------

    async def read(self, inode: int, offset: int, length: int) -> bytes:
        """File bytes [offset, offset+length), the caller having clamped to the file size.
        A read that continues the previous one of the file starts a read-ahead of what
        follows (`_read_ahead`)."""
        self._read_ahead(inode, offset, length)
        parts: list[bytes] = []
        for chunkno, within, n in self._split(offset, length):
            c = self.chunk(inode, chunkno)
            if c is None:
                parts.append(bytes(n))
            elif c.staged:
                data = self.staging.read((inode, chunkno), within, n)
                parts.append(data + bytes(n - len(data)))
            else:
                stored = max(0, min(n, c.length - within))
                try:
                    data = await self._stored(c, within, stored) if stored else b""
                except (StoreError, chain_errors.ChainError, OSError) as exc:
                    end = None if c.blob is None else self.expired(c.blob)
                    why = f"its blob expired at epoch {end}" if end is not None else str(exc)
                    raise ReadFailed(inode, chunkno, why) from exc
                parts.append(data + bytes(n - len(data)))
        return b"".join(parts)

    def _read_ahead(self, inode: int, offset: int, length: int) -> None:
        """Sequential reads of a file (each starting within a unit of where the last ended)
        fetch the stored bytes that follow in the background, in a window that doubles from
        AHEAD_MIN to AHEAD_MAX units and crosses chunk boundaries; a read elsewhere ends it.
        As the kernel's read-ahead does, the next part of the window is asked for only once
        less than half of it is left ahead of the reader, so the store is asked in runs of at
        least half a window, not a unit at a time."""
        end = offset + length
        previous = self._streams.get(inode)
        if previous is None or not previous[0] <= offset <= previous[0] + UNIT:
            self._streams[inode] = (end, 0, end)
            return
        window = min(AHEAD_MAX, max(AHEAD_MIN, previous[1] * 2))
        ahead_to = max(previous[2], end)
        if ahead_to - end >= window * UNIT // 2:
            self._streams[inode] = (end, window, ahead_to)
            return
        stop = end + window * UNIT
        self._streams[inode] = (end, window, stop)
        for chunkno, within, n in self._split(ahead_to, stop - ahead_to):
            c = self.chunk(inode, chunkno)
            if c is not None and not c.staged:
                self.stored.prefetch(c.blob, c.patch, within, min(n, c.length - within))

    async def _stored(self, c: Chunk, offset: int, length: int) -> bytes:
        return await self.stored.read(c.blob, c.patch, offset, length)

    # -- write ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self, key: Key) -> AsyncIterator[None]:
        """The chunk's lock (materialisation, the move of a small chunk to a file), created on
        demand and dropped when nobody waits for it."""
        lock = self._locks.setdefault(key, trio.Lock())
        async with lock:
            try:
                yield
            finally:
                if not lock.statistics().tasks_waiting:
                    self._locks.pop(key, None)

    async def stage(self, inode: int, chunkno: int) -> None:
        """Make the chunk staged, copying its bytes from Walrus if it has some."""
        with disk_full_is_enospc():
            await self._stage(inode, chunkno)

    async def _stage(self, inode: int, chunkno: int) -> None:
        key = (inode, chunkno)
        while True:
            c = self.chunk(inode, chunkno)
            if c is not None and c.staged:
                return
            if c is None:
                self.staging.create(key)
                self.db.execute(
                    "INSERT INTO chunks (inode, chunkno, staged, length) VALUES (?, ?, 1, 0)",
                    (inode, chunkno),
                )
                self._touch(key)
                return
            async with self._locked(key):
                if self.chunk(inode, chunkno) != c:
                    continue  # changed while we waited for the lock: look again
                data = await self._stored(c, 0, c.length) if c.length else b""
                placed = await trio.to_thread.run_sync(self.staging.put, key, data)
                if not placed or self.chunk(inode, chunkno) != c:
                    # truncated, rewritten or removed while we fetched: our copy is stale
                    if placed:
                        self.staging.discard_put(key)
                    continue
                self.staging.adopt(key, len(data))
                self.db.execute(
                    "UPDATE chunks SET staged = 1 WHERE inode = ? AND chunkno = ?",
                    (inode, chunkno),
                )
                self._touch(key)
                return

    async def write(self, inode: int, offset: int, data: bytes | memoryview) -> None:
        with disk_full_is_enospc():
            await self._write(inode, offset, data)

    async def _write(self, inode: int, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos = 0
        for chunkno, within, n in self._split(offset, len(view)):
            key = (inode, chunkno)
            while True:  # every await below may change the chunk: look again after it
                if not self._is_staged(key):
                    await self.stage(inode, chunkno)
                if not self.staging.outgrows(key, within + n):
                    break
                await self._to_file(key)
            self.staging.write(key, within, view[pos : pos + n])
            self._touch(key)
            pos += n

    async def _to_file(self, key: Key) -> None:
        """Move a small staged chunk that a write is about to grow past SMALL_MAX into a file:
        written and fsynced in a worker thread (cache/staging.py: its row may only go once the
        file is durable), adopted unless a write changed the chunk meanwhile."""
        async with self._locked(key):
            if not self.staging.is_small(key):
                return  # another write moved it, or the chunk is gone
            gen = self.generation(key)
            data = self.staging.small_bytes([key]).get(key, b"")
            placed = await trio.to_thread.run_sync(self.staging.put, key, data)
            if placed and self.gen.get(key) == gen and self.staging.is_small(key):
                self.staging.adopt(key, len(data))
            elif placed:
                self.staging.discard_put(key)  # stale: the caller tries again

    def _is_staged(self, key: Key) -> bool:
        c = self.chunk(*key)
        return c is not None and c.staged

    def truncate(self, inode: int, old_size: int, new_size: int) -> None:
        """Drop content past `new_size` (growing needs nothing: missing bytes read as zeros)."""
        with disk_full_is_enospc():
            self._truncate(inode, old_size, new_size)

    def _truncate(self, inode: int, old_size: int, new_size: int) -> None:
        if new_size >= old_size:
            return
        first_gone = -(-new_size // self.chunk_size)  # chunks entirely past the new end
        for chunkno, blob in self.db.execute(
            "SELECT chunkno, blob FROM chunks WHERE inode = ? AND chunkno >= ?",
            (inode, first_gone),
        ).fetchall():
            self.staging.remove((inode, chunkno))
            self.decref(blob)
            self._forget_key((inode, chunkno))
        self.db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno >= ?", (inode, first_gone))
        chunkno, within = divmod(new_size, self.chunk_size)
        if within:
            c = self.chunk(inode, chunkno)
            key = (inode, chunkno)
            if c is not None and c.staged:
                if self.staging.size(key) > within:
                    self.staging.truncate(key, within)
                self._touch(key)
            elif c is not None and c.length > within:
                self.db.execute(
                    "UPDATE chunks SET length = ? WHERE inode = ? AND chunkno = ?",
                    (within, inode, chunkno),
                )

    def _forget_key(self, key: Key) -> None:
        # no generation: an upload of this chunk that is in flight finds it changed
        self.gen.pop(key, None)
        self.last_write.pop(key, None)

    def purge(self, inodes: list[int]) -> None:
        """`purge_inodes`, and forget the removed chunks' in-memory state."""
        with disk_full_is_enospc():
            removed = purge_inodes(self.db, self.staging, inodes)
        for key in removed:
            self._forget_key(key)

    async def fsync(self, inode: int) -> None:
        """The file's staged bytes and names on disk (the fsyncs run in a worker thread on
        duplicated descriptors: the loop keeps using and evicting its own)."""
        keys = [
            (inode, chunkno)
            for (chunkno,) in self.db.execute(
                "SELECT chunkno FROM chunks WHERE inode = ? AND staged = 1", (inode,)
            )
        ]
        fds = self.staging.dup_for_fsync(keys)
        await trio.to_thread.run_sync(self.staging.fsync_fds, fds)
