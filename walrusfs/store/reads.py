"""Reading a blob's bytes, a byte range of it, or a quilt patch: which slivers to fetch, the
fallbacks when some cannot be had, and the read timeout with its short negative memory.

A byte range needs just the systematic primary slivers (rows) that hold it; a whole blob the
k_p systematic rows if they all arrive (no decoding), otherwise any k_p verified primary
slivers, decoded. A patch needs the secondary slivers (columns) of its patch. When a range's
rows or a patch's columns cannot all be had, the whole blob is read from any nodes instead.

Blob bytes, once decoded, go to the block cache (`cache.blocks`: the bytes at their offsets,
read back a block at a time), not the rows to the sliver cache: a later small read then costs
a small disk read, not the reading and hashing of megabyte rows. Whole rows are decoded and
kept, so the neighbours of a random read are cached with it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import trio

import codec
from cache.blocks import BLOCK, BlockCache
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from codec.sliver import Axis
from walrusfs.store.errors import BlobUnavailable
from walrusfs.store.metadata import MetadataReader
from walrusfs.store.slivers import SliverReader

log = logging.getLogger(__name__)
T = TypeVar("T")

#: after a read timed out, further reads of the same blob fail at once for this long (the
#: kernel asks again right away; the nodes will not have come back in between)
UNAVAILABLE_MEMORY = 5.0


class Reader:
    """Blob bytes and quilt patches, each read bounded by `read_timeout` seconds.

    Args:
        cache: verified slivers and metadata on disk (None: every read asks the nodes).
        blocks: blobs' bytes on disk (None: ranges are read from rows every time).
        ranges: decoded byte ranges in memory.
    """

    def __init__(
        self,
        metadata: MetadataReader,
        slivers: SliverReader,
        *,
        cache: SliverCache | None,
        ranges: RangeCache | None,
        read_timeout: float,
        blocks: BlockCache | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metadata = metadata
        self.slivers = slivers
        self.cache = cache
        self.blocks = blocks
        self.ranges = ranges
        self.read_timeout = read_timeout
        self._clock = clock
        #: blob ID -> time until which reads of it fail at once (see `_bounded`)
        self._unavailable: dict[bytes, float] = {}
        #: whole-blob reads at once: each holds its blob several times over while it decodes
        #: (a 64 MiB chunk: ~5x), and read-ahead can ask for several when rows go missing
        self._whole = trio.CapacityLimiter(1)

    async def meta(
        self, blob_id: codec.BlobId, *, use_cache: bool = True
    ) -> codec.VerifiedMetadata:
        """Verified metadata of the blob (see `MetadataReader.get`)."""
        cache = self.cache if use_cache else None
        return await self.metadata.get(blob_id, cache=cache, use_cache=use_cache)

    async def read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
        authenticated: bool = False,
        blob_size: int | None = None,
    ) -> bytes:
        """Bytes [offset, offset+length) of the blob (all of it by default).

        Args:
            use_cache: False: from the nodes, and nothing read is kept.
            authenticated: the caller authenticates the bytes itself (an AEAD stream), so the
                block cache skips its own check; a failure of the caller's check must be
                followed by `forget_cached`.
            blob_size: the blob's size, if the caller knows it: a read the block cache
                serves then needs no metadata.

        Raises:
            BlobUnavailable: not enough nodes answered with verifiable data within
                `read_timeout` seconds.
            BlobNotFound: no node knows the blob.
            ValueError: a negative offset or length.
        """
        with self._bounded(blob_id):
            return await self._read(
                blob_id,
                offset,
                length,
                use_cache=use_cache,
                authenticated=authenticated,
                blob_size=blob_size,
            )

    def forget_cached(self, blob_id: codec.BlobId) -> None:
        """Drop the blob's bytes from the block cache and the memory of ranges (the caller
        found them wrong, or the blob is deleted)."""
        if self.blocks is not None:
            self.blocks.forget(str(blob_id))
        if self.ranges is not None:
            self.ranges.forget(blob_id.raw)

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        """One file of a quilt, from the secondary slivers (columns) of its patch only (or,
        when some are missing or slow, from the whole quilt). Raises as `read`."""
        with self._bounded(patch_id.quilt_id):
            return await self._read_patch(patch_id, use_cache=use_cache)

    @contextlib.contextmanager
    def _bounded(self, blob_id: codec.BlobId) -> Iterator[None]:
        """A read of `blob_id` gives up after `read_timeout` seconds, whatever the nodes do
        (stopped machines accept connections and never answer); for UNAVAILABLE_MEMORY
        seconds after that, reads of the blob fail at once."""
        until = self._unavailable.get(blob_id.raw)
        if until is not None and until > self._clock():
            raise BlobUnavailable(
                f"blob {blob_id}: the storage nodes did not answer within "
                f"{self.read_timeout:g} s moments ago"
            )
        try:
            with trio.fail_after(self.read_timeout):
                yield
        except trio.TooSlowError:
            now = self._clock()
            for key in [k for k, t in self._unavailable.items() if t <= now]:
                del self._unavailable[key]
            self._unavailable[blob_id.raw] = now + UNAVAILABLE_MEMORY
            raise BlobUnavailable(
                f"blob {blob_id}: the storage nodes did not answer within {self.read_timeout:g} s"
            ) from None

    async def _read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
        authenticated: bool = False,
        blob_size: int | None = None,
    ) -> bytes:
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        blocks = self.blocks if use_cache else None
        if blocks is not None and blob_size is not None:
            # the caller knows the size: a block-cache hit needs no metadata (none may be
            # cached, and no node may be reachable, for a blob this machine just uploaded)
            got = await self._from_blocks(
                blocks, blob_id, offset, length, blob_size, authenticated=authenticated
            )
            if got is not None:
                return got
        cache = self.cache if use_cache else None
        meta = await self.meta(blob_id, use_cache=use_cache)
        size = meta.unencoded_length
        if length is None:
            length = size - offset
        length = max(0, min(length, size - offset))
        if self.ranges is not None and use_cache:
            hit = self.ranges.get(blob_id.raw, offset, length)
            if hit is not None:
                return hit
        if blocks is not None and blob_size != size:
            got = await self._from_blocks(
                blocks, blob_id, offset, length, size, authenticated=authenticated
            )
            if got is not None:
                return got
        if offset == 0 and length == size:
            data = await self._read_all(meta, cache)
            if blocks is not None:
                await trio.to_thread.run_sync(blocks.put, str(blob_id), 0, data, size)
        else:
            data = await self._read_rows(meta, offset, length, cache, blocks)
        if self.ranges is not None and use_cache:
            self.ranges.put(blob_id.raw, offset, length, data)
        return data

    async def _from_blocks(
        self,
        blocks: BlockCache,
        blob_id: codec.BlobId,
        offset: int,
        length: int | None,
        size: int,
        *,
        authenticated: bool,
    ) -> bytes | None:
        """The range from the block cache, clamped to `size`; None on a miss."""
        n = max(0, min(size - offset if length is None else length, size - offset))
        if n == 0:
            return b""
        return await _blocking(
            n, blocks.get, str(blob_id), offset, n, size, verify=not authenticated
        )

    async def _read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        cache = self.cache if use_cache else None
        meta = await self.meta(patch_id.quilt_id, use_cache=use_cache)
        columns = list(range(patch_id.start, patch_id.end))
        got = await self.slivers.fetch(
            meta, Axis.SECONDARY, columns, need=len(columns), strict=True, cache=cache
        )
        if len(got) < len(columns):
            # as the Walrus client does: read the whole quilt (from any k_p primary slivers)
            log.info(
                "patch %s: %d of its %d columns unavailable; reading the whole quilt",
                patch_id,
                len(columns) - len(got),
                len(columns),
            )
            blob = await self._read(patch_id.quilt_id, use_cache=use_cache)
            return await trio.to_thread.run_sync(codec.patch_from_blob, blob, meta, patch_id)
        return await trio.to_thread.run_sync(codec.read_patch, list(got.values()), meta, patch_id)

    async def _read_rows(
        self,
        meta: codec.VerifiedMetadata,
        offset: int,
        length: int,
        cache: SliverCache | None,
        blocks: BlockCache | None,
    ) -> bytes:
        size = meta.unencoded_length
        rows = codec.rows_for_range(size, offset, length, meta.params)
        if not rows:
            return b""
        got = await self.slivers.fetch(
            meta,
            Axis.PRIMARY,
            list(rows),
            need=len(rows),
            strict=True,
            cache=cache,
            fill=blocks is None,
        )
        if len(got) < len(rows):
            log.info("rows %s of %s not all available; decoding the blob", rows, meta.blob_id)
            whole = await self._read_all(meta, cache)
            if blocks is not None:
                await trio.to_thread.run_sync(blocks.put, str(meta.blob_id), 0, whole, size)
            return whole[offset : offset + length]
        if blocks is None:
            return await trio.to_thread.run_sync(
                codec.read_range, list(got.values()), meta, offset, length
            )
        # the whole rows, kept: the next reads nearby are block-cache hits
        row_len = meta.params.primary_sliver_len(size)
        start = rows.start * row_len

        def decode_and_keep() -> bytes:
            span = codec.read_range(list(got.values()), meta, start, rows.stop * row_len - start)
            blocks.put(str(meta.blob_id), start, span, size)
            return span

        span = await trio.to_thread.run_sync(decode_and_keep)  # one hop for both
        return span[offset - start : offset - start + length]

    async def _read_all(self, meta: codec.VerifiedMetadata, cache: SliverCache | None) -> bytes:
        async with self._whole:
            return await self._read_whole(meta, cache)

    async def _read_whole(self, meta: codec.VerifiedMetadata, cache: SliverCache | None) -> bytes:
        k = meta.params.k_p
        n = meta.params.n_shards
        if meta.unencoded_length == 0:
            return b""
        # Systematic rows first: if all arrive, the blob is assembled without decoding.
        got = await self.slivers.fetch(
            meta, Axis.PRIMARY, list(range(k)), need=k, strict=False, cache=cache
        )
        if len(got) < k:
            others = list(range(k, n))
            more = await self.slivers.fetch(
                meta,
                Axis.PRIMARY,
                others,
                need=k - len(got),
                strict=False,
                cache=cache,
                last=True,  # nothing else to ask: slow answers are waited for
            )
            got.update(more)
        if len(got) < k:
            raise BlobUnavailable(
                f"{meta.blob_id}: only {len(got)} of the {k} primary slivers needed could be "
                "fetched and verified"
            )
        return await trio.to_thread.run_sync(codec.decode, list(got.values()), meta)


#: reads of up to this many bytes from the block cache run on the loop (a few small preads
#: cost less than a hop to a worker thread); longer ones in a worker thread. Ten blocks hold
#: two 64 KiB units of the mount (an encrypted one is 65,552 bytes) however they straddle
#: blocks: a kernel read of 4 to 128 KiB never leaves the loop.
INLINE_READ = 10 * BLOCK


async def _blocking(length: int, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`fn(*args, **kwargs)`, a disk read of about `length` bytes: on the loop if it is
    short, else in a worker thread."""
    if length <= INLINE_READ:
        return fn(*args, **kwargs)
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
