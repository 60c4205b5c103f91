"""Stored bytes of files: the read path from Walrus into plaintext, with its memory cache and
read-ahead.

A chunk that is on Walrus is either a whole blob or a quilt patch (read whole). A blob is read
in units of 64 KiB of plaintext, which on an encrypted volume are exactly its WFE1 segments
(walrusfs/fs/crypto.py), each authenticated by itself: a random 4 KiB read costs one unit, that
is a read of about 64 KiB from the store's block cache and one AES-GCM decryption (7 us), not
the megabytes of a fixed large segment. Units are kept in memory (LRU by bytes), and a unit
that several requests want at once (the kernel's read-ahead) is fetched once.

`prefetch` fetches units in the background: Content uses it to read ahead of a file read
sequentially (its window, in units, doubles from `AHEAD_MIN` to `AHEAD_MAX`, across chunks),
so the store's reads and the decryption (in worker threads) overlap the reader's.

On an encrypted volume the store's block cache does not check what it returns (the AEAD does);
bytes that fail authentication are dropped from the store's caches and read again from the
nodes once before the reader gets EIO.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
from cachetools import LRUCache

import codec
from chain import errors as chain_errors
from walrusfs.fs import blobs, crypto
from walrusfs.fs.rowcache import RowCache
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

UNIT = crypto.SEGMENT  # plaintext bytes per unit: one WFE1 segment
AHEAD_MIN = 4  # units read ahead once a file is read sequentially
AHEAD_MAX = 64  # the read-ahead window at most (4 MiB)
INLINE_UNITS = 2  # runs of up to this many units are decrypted on the loop (about 15 us)
PATCH = -1  # the unit number under which a whole quilt patch is kept


class BlobReader(Protocol):
    """What the read path needs of the store (walrusfs.store.client.WalrusStore): verified
    bytes of a blob and of a quilt patch. Raises StoreError or ChainError when they cannot be
    read."""

    async def read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
        authenticated: bool = False,
        blob_size: int | None = None,
    ) -> bytes: ...

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent: ...

    def forget_cached(self, blob_id: codec.BlobId) -> None: ...


Spawn = Callable[[Callable[[], Awaitable[None]]], None]


class StoredBytes:
    """Plaintext of chunks stored on Walrus.

    Args:
        db: the volume's database (the blobs table says where a chunk's blob is).
        store: where stored bytes come from.
        keys: the volume's keys; None for a public volume (plaintext blobs).
        memory_bytes: the size of the memory cache of units and patches.
        rows: the cache of database rows the read path shares (a new one if None).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        store: BlobReader,
        keys: crypto.VolumeKeys | None,
        memory_bytes: int,
        *,
        rows: RowCache | None = None,
    ) -> None:
        self.db = db
        self.rows = rows or RowCache(db)
        self.store = store
        self.keys = keys
        #: starts a background task (the mount's nursery); None: no read-ahead
        self.spawn: Spawn | None = None
        self._units: LRUCache[tuple[str, int], bytes] = LRUCache(
            maxsize=memory_bytes, getsizeof=len
        )
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._headers: LRUCache[str, bytes] = LRUCache(maxsize=4096)  # WFE1 headers by blob
        self._ahead = trio.CapacityLimiter(2)  # read-ahead fetches at once

    def forget_memory(self) -> None:
        """Drop the units and patches kept in memory (the next reads ask the store)."""
        self._units.clear()

    def remember_patch(self, patch: str, data: bytes) -> None:
        """The plaintext of a file just committed as quilt patch `patch` (from its staging
        file): its next read is served from memory, as if fetched."""
        self._units[(patch, PATCH)] = data

    async def read(self, blob: int | None, patch: str | None, offset: int, length: int) -> bytes:
        """Plaintext bytes [offset, offset+length) of a stored chunk: quilt patch `patch`, or
        else the blob of `blobs` row `blob`; short where the chunk ends.

        Raises:
            OSError: EIO when the chunk's blob row does not exist, or its bytes do not
                authenticate even when read again from the nodes (crypto.DecryptError).
            StoreError, ChainError: the bytes cannot be read from Walrus.
        """
        if patch is not None:
            whole = await self._patch(patch)
            return whole[offset : offset + length]
        assert blob is not None
        found = self._location(blob)
        if found is None:
            raise OSError(errno.EIO, f"chunk refers to blob row {blob}, which does not exist")
        ident, stored_size = found
        size = stored_size if self.keys is None else crypto.plain_size(stored_size)
        end = min(offset + length, size)
        if offset >= end:
            return b""
        first, last = offset // UNIT, (end - 1) // UNIT
        units = await self._units_of(ident, stored_size, first, last + 1)
        start, stop = offset - first * UNIT, end - last * UNIT
        if len(units) == 1:
            return units[0][start:stop]
        # one copy: the ends cut through memoryviews, joined with the whole units between
        return b"".join([memoryview(units[0])[start:], *units[1:-1], memoryview(units[-1])[:stop]])

    def _location(self, blob: int) -> tuple[str, int] | None:
        return self.rows.get(("location", blob), lambda: blobs.location(self.db, blob))

    # -- units ------------------------------------------------------------------------------

    async def _units_of(self, ident: str, stored_size: int, first: int, stop: int) -> list[bytes]:
        """Units [first, stop) of the blob: from memory, or fetched (missing runs together)."""
        out: dict[int, bytes] = {}
        while len(out) < stop - first:
            missing = []
            waits = []
            for u in range(first, stop):
                if u in out:
                    continue
                hit = self._units.get((ident, u))
                if hit is not None:
                    out[u] = hit
                elif (pending := self._inflight.get((ident, u))) is not None:
                    waits.append(pending)
                else:
                    missing.append(u)
            if missing:
                # one fetch per contiguous run of missing units
                runs: list[list[int]] = []
                for u in missing:
                    if runs and runs[-1][-1] == u - 1:
                        runs[-1].append(u)
                    else:
                        runs.append([u])
                for run in runs:
                    got = await self._fetch(ident, stored_size, run[0], run[-1] + 1)
                    out.update(got)
            elif waits:
                await waits[0].wait()
                # the fetch we waited for kept its units (or failed: we fetch them next turn)
        return [out[u] for u in range(first, stop)]

    async def _fetch(self, ident: str, stored_size: int, first: int, stop: int) -> dict[int, bytes]:
        """Read units [first, stop) from the store, keep them, and wake who waits for them."""
        keys = [(ident, u) for u in range(first, stop)]
        done = trio.Event()
        for key in keys:
            self._inflight[key] = done
        try:
            pieces = await self._plaintext(ident, stored_size, first, stop)
            got = {}
            for u, piece in zip(range(first, stop), pieces, strict=False):
                self._units[(ident, u)] = piece
                got[u] = piece
            for u in range(first + len(pieces), stop):  # past the blob's end
                self._units[(ident, u)] = got[u] = b""
            return got
        finally:
            for key in keys:
                if self._inflight.get(key) is done:
                    del self._inflight[key]
            done.set()

    async def _plaintext(self, ident: str, stored_size: int, first: int, stop: int) -> list[bytes]:
        """Units [first, stop) of the blob's plaintext, each apart (a unit of an encrypted
        blob is the plaintext its segment decrypts to: no copy out of a joined buffer); fewer
        where the blob ends."""
        blob_id = codec.BlobId.parse(ident)
        if self.keys is None:
            data = await self.store.read(
                blob_id, first * UNIT, (stop - first) * UNIT, blob_size=stored_size
            )
            return [data[i : i + UNIT] for i in range(0, len(data), UNIT)]
        try:
            return await self._decrypted(blob_id, ident, stored_size, first, stop)
        except crypto.DecryptError as exc:
            log.warning("blob %s: cached bytes do not authenticate (%s); reading again", ident, exc)
            self.store.forget_cached(blob_id)
            self._headers.pop(ident, None)
            return await self._decrypted(blob_id, ident, stored_size, first, stop)

    async def _decrypted(
        self, blob_id: codec.BlobId, ident: str, sealed_size: int, first: int, stop: int
    ) -> list[bytes]:
        """Plaintexts of WFE1 segments [first, stop) of an encrypted blob, each authenticated."""
        assert self.keys is not None
        total = crypto.segments_of(crypto.plain_size(sealed_size))
        stop = min(stop, total)
        if first >= stop:
            return []
        off, length = crypto.cipher_span(first, stop - first, sealed_size)
        header = self._headers.get(ident)
        if header is None and first == 0:  # the header comes with the first segments
            head = await self.store.read(
                blob_id, 0, off + length, authenticated=True, blob_size=sealed_size
            )
            header, cipher = head[:off], head[off:]
            self._headers[ident] = header
        elif header is None:
            # a cold random read: the header's row and the segment's row at once, so the
            # first byte waits for one round of sliver requests, not two
            got: dict[str, bytes] = {}
            failed: list[Exception] = []

            async def part(name: str, start: int, n: int) -> None:
                try:
                    got[name] = await self.store.read(
                        blob_id, start, n, authenticated=True, blob_size=sealed_size
                    )
                except (StoreError, chain_errors.ChainError, OSError) as exc:
                    failed.append(exc)  # raised as itself below, not in an exception group

            async with trio.open_nursery() as nursery:
                nursery.start_soon(part, "header", 0, crypto.HEADER)
                nursery.start_soon(part, "cipher", off, length)
            if failed:
                raise failed[0]
            header, cipher = got["header"], got["cipher"]
            self._headers[ident] = header
        else:
            cipher = await self.store.read(
                blob_id, off, length, authenticated=True, blob_size=sealed_size
            )
        if stop - first <= INLINE_UNITS:
            return crypto.segment_plaintexts(self.keys, header, cipher, first, total)
        return await trio.to_thread.run_sync(
            crypto.segment_plaintexts, self.keys, header, cipher, first, total
        )

    # -- read-ahead -------------------------------------------------------------------------

    def prefetch(self, blob: int | None, patch: str | None, offset: int, length: int) -> None:
        """Fetch plaintext bytes [offset, offset+length) of a stored chunk in the background
        (the units not in memory or on their way), if the mount gave a way to start tasks.
        Patches are read whole when first read, so only blobs are fetched ahead."""
        if self.spawn is None or patch is not None or blob is None or length <= 0:
            return
        found = self._location(blob)
        if found is None:
            return
        ident, stored_size = found
        size = stored_size if self.keys is None else crypto.plain_size(stored_size)
        end = min(offset + length, size)
        if offset >= end:
            return
        wanted = [
            u
            for u in range(offset // UNIT, (end - 1) // UNIT + 1)
            if (ident, u) not in self._units and (ident, u) not in self._inflight
        ]
        if not wanted:
            return
        first = wanted[0]
        stop = first + 1
        while stop in wanted:  # one run: what is new at the far end of a read-ahead window
            stop += 1

        async def ahead() -> None:
            async with self._ahead:
                if any((ident, u) in self._inflight for u in range(first, stop)):
                    return
                try:
                    await self._fetch(ident, stored_size, first, stop)
                except (StoreError, chain_errors.ChainError, OSError) as exc:
                    # the reader's own request meets it again and reports it
                    log.debug("read-ahead of %s units %d-%d: %s", ident, first, stop, exc)

        self.spawn(ahead)

    # -- patches ----------------------------------------------------------------------------

    async def _patch(self, patch: str) -> bytes:
        """A whole quilt patch, decrypted, fetched once even when asked for by several at
        once."""
        key = (patch, PATCH)
        while True:
            hit = self._units.get(key)
            if hit is not None:
                return hit
            pending = self._inflight.get(key)
            if pending is None:
                break
            await pending.wait()
        done = self._inflight[key] = trio.Event()
        try:
            got = await self.store.read_patch(codec.QuiltPatchId.parse(patch))
            data = got.data
            if self.keys is not None:
                data = await trio.to_thread.run_sync(crypto.open_stream, self.keys, data)
            self._units[key] = data
            return data
        finally:
            del self._inflight[key]
            done.set()
