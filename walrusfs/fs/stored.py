"""Stored bytes of files: the read path from Walrus into plaintext, with its memory cache.

A chunk that is on Walrus is either a whole blob (read by aligned SEGMENTs of its bytes) or a
quilt patch (read whole). Encrypted volumes read only the WFE1 segments that hold the wanted
bytes, each authenticated (walrusfs/fs/crypto.py). Decrypted segments are kept in memory (LRU
by bytes), and a segment the kernel's read-ahead asks for several times at once is fetched once.
Below this, the store keeps verified slivers on disk and asks the nodes last.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Protocol

import trio
from cachetools import LRUCache

import codec
from walrusfs.fs import blobs, crypto

SEGMENT = 4 << 20  # file bytes fetched at a time: a whole row or two at n=100 and 64 MiB chunks
CRYPTO_PER_SEGMENT = SEGMENT // crypto.SEGMENT  # encrypted segments in one fetch


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
    ) -> bytes: ...

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent: ...


class StoredBytes:
    """Plaintext of chunks stored on Walrus.

    Args:
        db: the volume's database (the blobs table says where a chunk's blob is).
        store: where stored bytes come from.
        keys: the volume's keys; None for a public volume (plaintext blobs).
        memory_bytes: the decrypted-segment cache's size.
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        store: BlobReader,
        keys: crypto.VolumeKeys | None,
        memory_bytes: int,
    ) -> None:
        self.db = db
        self.store = store
        self.keys = keys
        self._segments: LRUCache[tuple[str, int], bytes] = LRUCache(
            maxsize=memory_bytes, getsizeof=len
        )
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._headers: LRUCache[str, bytes] = LRUCache(maxsize=4096)  # WFE1 headers by blob

    def forget_memory(self) -> None:
        """Drop the decrypted segments kept in memory (the next reads ask the store)."""
        self._segments.clear()

    async def read(self, blob: int | None, patch: str | None, offset: int, length: int) -> bytes:
        """Plaintext bytes [offset, offset+length) of a stored chunk: quilt patch `patch`, or
        else the blob of `blobs` row `blob`.

        Raises:
            OSError: EIO when the chunk's blob row does not exist.
            StoreError, ChainError: the bytes cannot be read from Walrus.
        """
        if patch is not None:
            whole = await self._segment(patch, -1)
            return whole[offset : offset + length]
        assert blob is not None
        found = blobs.location(self.db, blob)
        if found is None:
            raise OSError(errno.EIO, f"chunk refers to blob row {blob}, which does not exist")
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
