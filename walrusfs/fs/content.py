"""File content: chunks that are staged locally or stored on Walrus (schema: `chunks`).

Reads come from staging, then the in-memory segment cache, then the store (which has its
own on-disk sliver cache and asks the network last). A write into a chunk that is on Walrus
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
from typing import Protocol

import trio
from cachetools import LRUCache

import codec
from cache import Key
from cache.diskfull import disk_full_is_enospc
from cache.staging import Staging
from chain import errors as chain_errors
from walrusfs.fs import blobs, crypto
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

SEGMENT = 4 << 20  # file bytes fetched at a time: a whole row or two at n=100 and 64 MiB chunks
CRYPTO_PER_SEGMENT = SEGMENT // crypto.SEGMENT  # encrypted segments in one fetch


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


class BlobReader(Protocol):
    """What Content needs of the store (walrusfs.store.client.WalrusStore): verified bytes of
    a blob and of a quilt patch. Raises StoreError or ChainError when they cannot be read."""

    async def read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
    ) -> bytes: ...

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent: ...


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
        self.keys = keys  # None: a public volume (plaintext blobs)
        self.clock = clock
        self.staging = staging
        self.store = store
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
        self._segments: LRUCache[tuple[str, int], bytes] = LRUCache(
            maxsize=segment_cache_bytes, getsizeof=len
        )
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._headers: LRUCache[str, bytes] = LRUCache(maxsize=4096)  # WFE1 headers by blob
        #: blobs row -> its end epoch if it has expired (lifetime.Renewer.expired)
        self.expired: Callable[[int], int | None] = lambda row: None
        #: set when staged bytes shrink (an upload finished): writers waiting for room retry.
        self.space_freed = trio.Event()

    # -- rows -------------------------------------------------------------------------------

    def chunk(self, inode: int, chunkno: int) -> Chunk | None:
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
        """File bytes [offset, offset+length), the caller having clamped to the file size."""
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

    async def _stored(self, c: Chunk, offset: int, length: int) -> bytes:
        if c.patch is not None:
            whole = await self._segment(c.patch, -1)
            return whole[offset : offset + length]
        assert c.blob is not None
        found = blobs.location(self.db, c.blob)
        if found is None:
            raise OSError(errno.EIO, f"chunk refers to blob row {c.blob}, which does not exist")
        blob_id, blob_size = found
        parts = []
        pos, end = offset, offset + length
        while pos < end:
            seg = pos // SEGMENT
            data = await self._segment(blob_id, seg, blob_size)
            lo = pos - seg * SEGMENT
            piece = data[lo : lo + (end - pos)]
            if not piece:
                break
            parts.append(piece)
            pos += len(piece)
        return b"".join(parts)

    async def _segment(self, ident: str, seg: int, blob_size: int = 0) -> bytes:
        """One aligned segment of a chunk's bytes (seg >= 0) or a whole quilt patch (seg = -1),
        decrypted, fetched once even when the kernel's readahead asks for it several times at
        once."""
        key = (ident, seg)
        while True:
            hit = self._segments.get(key)
            if hit is not None:
                return hit
            pending = self._inflight.get(key)
            if pending is None:
                break
            await pending.wait()
            if key in self._segments or key not in self._inflight:
                hit = self._segments.get(key)
                if hit is not None:
                    return hit
                # the fetch failed or was evicted at once: fetch it ourselves
                break
        done = self._inflight[key] = trio.Event()
        try:
            if seg < 0:
                patch = await self.store.read_patch(codec.QuiltPatchId.parse(ident))
                data = patch.data
                if self.keys is not None:
                    data = await trio.to_thread.run_sync(crypto.open_stream, self.keys, data)
            elif self.keys is None:
                data = await self.store.read(
                    codec.BlobId.parse(ident), seg * SEGMENT, SEGMENT, use_cache=True
                )
            else:
                data = await self._decrypted(ident, seg, blob_size)
            self._segments[key] = data
            return data
        finally:
            del self._inflight[key]
            done.set()

    def remember_patch(self, patch: str, data: bytes) -> None:
        """The plaintext of a file just committed as quilt patch `patch` (from its staging
        file): its next read is served from the segment cache, as if fetched."""
        self._segments[(patch, -1)] = data

    async def _decrypted(self, ident: str, seg: int, sealed_size: int) -> bytes:
        """Plaintext bytes [seg * SEGMENT, (seg + 1) * SEGMENT) of an encrypted blob: only the
        WFE1 segments that hold them are read, and each is authenticated."""
        assert self.keys is not None
        blob_id = codec.BlobId.parse(ident)
        total = crypto.segments_of(crypto.plain_size(sealed_size))
        first = seg * CRYPTO_PER_SEGMENT
        if first >= total:
            return b""
        off, length = crypto.cipher_span(first, CRYPTO_PER_SEGMENT, sealed_size)
        header = self._headers.get(ident)
        if header is None and first == 0:  # the header comes with the first segments
            head = await self.store.read(blob_id, 0, off + length, use_cache=True)
            header, cipher = head[:off], head[off:]
            self._headers[ident] = header
        else:
            if header is None:
                header = await self.store.read(blob_id, 0, crypto.HEADER, use_cache=True)
                self._headers[ident] = header
            cipher = await self.store.read(blob_id, off, length, use_cache=True)
        return await trio.to_thread.run_sync(
            crypto.open_segments, self.keys, header, cipher, first, total
        )

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
