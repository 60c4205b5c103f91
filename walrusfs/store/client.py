"""`WalrusStore`: store bytes as a certified Walrus blob and read them back (what `walrus
store`/`read` do), and manage the wallet's blobs. The facade the rest of walrusfs uses; each
job is a module of its own:

* `writes.py`: encode, reuse or register, certify (`StoreResult`, `QuiltResult`);
  `upload.py`: slivers to the nodes and their verified confirmations;
  `registrations.py`: paid registrations not yet certified, continued by the next attempt.
* `reads.py`: byte ranges, whole blobs, quilt patches, the read timeout;
  `metadata.py`: verified metadata; `slivers.py`: verified slivers, hedged requests;
  `hedging.py`: node latencies, slow-node memory and the hedging policy.
* `status.py`: blob status verified by shard weight; `committee.py`: the committees, and the
  one to read from during an epoch change.
* `nodes.py`: the committee model and the storage-node REST calls; `http1.py` the transport;
  `retry.py` the retry policy; `errors.py` the errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import trio
from cachetools import LRUCache

import codec
from cache.blocks import BlockCache
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from chain import errors as chain_errors
from chain import move_types as mt
from chain import pool_types as pt
from chain.client import CostEstimate, WalrusChain
from chain.transport import norm
from codec.params import BYTES_PER_UNIT_SIZE
from walrusfs.store.committee import Committees
from walrusfs.store.errors import PooledLifetime
from walrusfs.store.hedging import NodeStats
from walrusfs.store.metadata import MetadataReader
from walrusfs.store.nodes import ActiveCommittees, BlobStatus, Committee, NodeClient
from walrusfs.store.pooled import move_into_pool
from walrusfs.store.reads import Reader
from walrusfs.store.registrations import Registrations
from walrusfs.store.relay import Certificate, RelayClient
from walrusfs.store.slivers import SliverReader
from walrusfs.store.status import BlobStatuses
from walrusfs.store.upload import Progress, Uploader
from walrusfs.store.writes import QuiltResult, Registered, StoreOptions, StoreResult, Writer

log = logging.getLogger(__name__)

# `StoreResult` is what `store` returns: importable from the facade as well as from writes.py
__all__ = ["StoreResult", "WalrusStore"]


class WalrusStore:
    """One client of the storage nodes and the chain: its connections, limits, node latency
    record and caches are shared by every read and write made through it.

    Args:
        cache: verified slivers and metadata on disk (None: reads always ask the nodes).
        blocks: blobs' bytes on disk, kept by reads (None: a range is read from its rows,
            from `cache` or the nodes, every time).
        ranges: decoded byte ranges in memory.
        timeout: seconds one storage-node request may take.
        read_timeout: seconds one read may take in all, whatever the nodes do.
        upload_concurrency, read_concurrency: node requests in flight at most.
        deadline: seconds an upload request is retried on temporary failures.
        grace: seconds the other nodes get once a quorum confirmed (see `upload.py`).
        encode_concurrency: encodes running at once.
    """

    def __init__(
        self,
        chain: WalrusChain,
        *,
        cache: SliverCache | None = None,
        blocks: BlockCache | None = None,
        ranges: RangeCache | None = None,
        timeout: float = 30.0,
        read_timeout: float = 20.0,
        upload_concurrency: int = 32,
        read_concurrency: int = 32,
        deadline: float = 60.0,
        grace: float = 2.0,
        encode_concurrency: int = 1,
        relay: RelayClient | None = None,
    ) -> None:
        self.chain = chain
        self.cache = cache
        self.blocks = blocks
        self.ranges = ranges
        self.nodes = NodeClient(timeout, max(upload_concurrency, read_concurrency))
        self.stats = NodeStats()
        read_limit = trio.CapacityLimiter(read_concurrency)
        self._committees = Committees(chain)
        self._statuses = BlobStatuses(self.nodes, self.stats, read_limit, self._committees)
        # Metadata already verified against its blob ID (n=1000: 66 KB and 1000 hashes each).
        self._metadata: LRUCache[bytes, codec.VerifiedMetadata] = LRUCache(maxsize=256)
        self._reader = Reader(
            MetadataReader(
                self.nodes, self.stats, self._committees, self._statuses, self._metadata
            ),
            SliverReader(self.nodes, self.stats, read_limit, self._read_committee),
            cache=cache,
            blocks=blocks,
            ranges=ranges,
            read_timeout=read_timeout,
        )
        self._registrations = Registrations(chain)
        uploader = Uploader(
            self.nodes,
            self.stats,
            trio.CapacityLimiter(upload_concurrency),
            deadline=deadline,
            grace=grace,
        )
        # Encodes one at a time: an encode peaks at ~5.5x its blob, its result holds ~4.5x
        # while it uploads. Concurrent stores overlap one encode with the others' uploads,
        # which bounds memory by one peak (not one per store) at little cost in speed: the
        # encoder already uses a core and the uploads the rest.
        self._writer = Writer(
            chain,
            self._committees,
            uploader,
            self._registrations,
            trio.CapacityLimiter(encode_concurrency),
            relay=relay,
        )
        self.relay = relay

    async def close(self) -> None:
        await self.nodes.aclose()
        if self.relay is not None:
            await self.relay.aclose()

    # -- committees and status --------------------------------------------------------------

    async def committee(self, fresh: bool = False) -> Committee:
        """The current committee: the one writes go to."""
        return await self._committees.write(fresh)

    async def committees(self, fresh: bool = False) -> ActiveCommittees:
        """Current and previous committee and whether shards are moving between them."""
        return await self._committees.active(fresh)

    async def _read_committee(self, blob_id: codec.BlobId) -> Committee:
        return await self._committees.for_read(blob_id, self._statuses)

    async def blob_status(
        self, blob_id: codec.BlobId, committees: ActiveCommittees | None = None
    ) -> BlobStatus | None:
        """The blob's status as the storage nodes report it, verified by shard weight; None
        when the nodes did not agree (see `walrusfs/store/status.py`).

        Raises:
            BlobInvalid, BlobNotFound: for an invalid / nonexistent blob.
        """
        return await self._statuses.get(blob_id, committees)

    # -- write ------------------------------------------------------------------------------

    async def estimate(self, size: int, epochs: int) -> CostEstimate:
        """What storing `size` bytes for `epochs` epochs costs now (`WalrusChain.estimate`).

        Raises:
            ValueError: `epochs` is not within 1..`max_epochs_ahead`.
            codec.DataTooLarge: `size` exceeds the largest blob of the network.
        """
        return await self.chain.estimate(size, epochs)

    async def fan_out(self, enc: codec.EncodedBlob, object_id: str | None) -> Certificate:
        """Send an encoded blob to the committee and aggregate the confirmations into a
        certificate, without touching the chain: what an upload relay does.

        Args:
            object_id: the Blob object of a deletable blob; None for a permanent one.

        Raises:
            NotEnoughConfirmations: fewer than a quorum confirmed by the deadline.
        """
        return await self._writer.fan_out(enc, object_id)

    @property
    def relay_stats(self) -> tuple[int, int]:
        """(MIST of tips paid to the relay, uploads it failed that went directly instead)."""
        return self._writer.tips_paid, self._writer.relay_failures

    async def store(
        self,
        data: bytes,
        epochs: int,
        *,
        deletable: bool = True,
        attributes: dict[str, str] | None = None,
        progress: Progress | None = None,
        reuse: bool = True,
        registered: Registered | None = None,
        resume: str | None = None,
        pool: str | None = None,
    ) -> StoreResult:
        """`data` as a certified blob for `epochs` epochs.

        Args:
            reuse: False skips the search for an owned certified blob with the same ID (a
                listing of all owned blobs): for callers that keep their own index, like the
                mount.
            registered: told the Blob object written to, once it is registered (or an
                unfinished one is continued): a caller that may abandon the upload needs it.
            resume: the Blob object an earlier attempt registered for these bytes (perhaps
                in another process), continued if it still is one of this blob, unexpired
                and uncertified.
            pool: the storage pool to keep the blob in (`walrusfs/store/pooled.py`): its end
                epoch is the pool's (`epochs` is not used), and an earlier attempt's entry in
                the pool is continued or reused.

        Raises:
            NotEnoughConfirmations: fewer than quorum shards confirmed (the registration is
                kept in `unfinished` for the retry).
            chain.errors.InsufficientWal, InsufficientGas: before anything was uploaded.
            codec.DataTooLarge: `data` exceeds the largest blob of the network.
            ValueError: `epochs` is not within 1..`max_epochs_ahead`.
        """
        opts = StoreOptions(deletable, attributes, progress, reuse, registered, resume, pool)
        return await self._writer.store(data, epochs, opts)

    async def store_quilt(
        self,
        items: Sequence[codec.QuiltItem],
        epochs: int,
        *,
        deletable: bool = True,
        attributes: dict[str, str] | None = None,
        progress: Progress | None = None,
        reuse: bool = True,
        registered: Registered | None = None,
        resume: str | None = None,
        pool: str | None = None,
    ) -> QuiltResult:
        """`items` as one quilt blob, stored as `store` does (and raising what it raises);
        with each item's patch ID.

        Raises:
            codec.QuiltError: the items do not make a quilt (duplicate or invalid
                identifiers, too many or too large for one); nothing was paid.
        """
        opts = StoreOptions(deletable, attributes, progress, reuse, registered, resume, pool)
        return await self._writer.store_quilt(items, epochs, opts)

    @property
    def unfinished(self) -> list[str]:
        """Object IDs of Blobs registered by this store and not certified (an upload failed
        after paying; the retry of the same bytes continues it)."""
        return self._registrations.unfinished

    async def abandon(self, object_id: str, pool: str | None = None) -> bool:
        """Delete a registration nobody will retry: its Storage returns to the wallet (or its
        capacity to its `pool`) for the next registration. False if it was gone already."""
        if pool is None:
            return await self._registrations.abandon(object_id)
        try:
            pooled = await self.chain.pools.blob_object(object_id)
        except chain_errors.NotPooled:
            return await self._registrations.abandon(object_id)
        except chain_errors.ObjectNotFound:
            return False
        if pooled.is_certified:  # certified by another upload of the same bytes: in use
            log.info("not abandoning %s: it is certified", object_id)
            return False
        await self.delete(object_id)  # through the pool it is in (maybe an earlier one)
        return True

    # -- read -------------------------------------------------------------------------------

    async def metadata(
        self, blob_id: codec.BlobId, *, use_cache: bool = True
    ) -> codec.VerifiedMetadata:
        """Verified metadata: memory, then the disk cache (re-verified), then the nodes."""
        return await self._reader.meta(blob_id, use_cache=use_cache)

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
            authenticated: the caller authenticates the bytes itself (an AEAD stream): the
                block cache skips its check, and the caller calls `forget_cached` when its
                own check fails.
            blob_size: the blob's size, if the caller knows it: a read the block cache
                serves then needs no metadata.

        Raises:
            BlobUnavailable: not enough nodes answered with verifiable data within
                `read_timeout` seconds.
            BlobNotFound: no node knows the blob.
            ValueError: a negative offset or length.
        """
        return await self._reader.read(
            blob_id,
            offset,
            length,
            use_cache=use_cache,
            authenticated=authenticated,
            blob_size=blob_size,
        )

    def forget_cached(self, blob_id: codec.BlobId) -> None:
        """Forget the blob's bytes kept on disk and in memory (they failed the caller's
        check): the next read asks the nodes."""
        self._reader.forget_cached(blob_id)

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        """One file of a quilt, from the columns of its patch only (or, when some are missing
        or slow, from the whole quilt).

        Raises:
            BlobUnavailable, BlobNotFound: as `read`.
            codec.QuiltError: the patch ID names columns outside the quilt, or the patch
                read is not one.
        """
        return await self._reader.read_patch(patch_id, use_cache=use_cache)

    # -- chain-side management --------------------------------------------------------------

    async def blobs(self) -> list[mt.Blob]:
        return await self.chain.blobs(valid_only=True)

    async def delete(self, object_id: str, pool: str | None = None) -> None:
        """Delete the Blob object, or the pooled blob `object_id` through its pool (`pool`
        checks which; None: the pool it names), and forget its blob's metadata, bytes,
        slivers and status.

        Raises:
            chain.errors.ObjectNotFound: the wallet has no such Blob (the pool no such blob).
            chain.errors.MoveAbortError: the blob is permanent, or has expired.
        """
        try:
            pooled: pt.PooledBlob | None = await self.chain.pools.blob_object(object_id)
        except chain_errors.NotPooled:
            pooled = None  # an owned Blob (a volume's blobs from before its pool)
        if pooled is None:
            blob_u256 = (await self.chain.blob(object_id)).blob_id
            await self.chain.delete_blob(object_id)
        else:
            if pool is not None and norm(pooled.storage_pool_id) != norm(pool):
                raise chain_errors.ObjectNotFound(f"{object_id} is not a blob of pool {pool}")
            state = await self.chain.pools.get(pooled.storage_pool_id)
            if state.end_epoch <= (await self.chain.system_info()).epoch:
                # the contract refuses deletes from an ended pool; its blobs are gone anyway
                raise chain_errors.ObjectNotFound(
                    f"{object_id}: its storage pool ended at epoch {state.end_epoch}"
                )
            blob_u256 = pooled.blob_id
            await self.chain.pools.delete(pooled.storage_pool_id, [blob_u256])
        blob_id = codec.BlobId.from_u256(blob_u256)
        self._statuses.forget(blob_id)
        self._metadata.pop(blob_id.raw, None)
        await trio.to_thread.run_sync(self._reader.forget_cached, blob_id)
        if self.cache is not None:
            await trio.to_thread.run_sync(self.cache.remove_blob, str(blob_id))

    async def extend(self, object_id: str, epochs: int) -> int:
        """Extend the Blob by `epochs` epochs; the FROST paid.

        Raises:
            chain.errors.ObjectNotFound: the wallet has no such Blob.
            chain.errors.InsufficientWal, InsufficientGas: before anything was signed.
            chain.errors.MoveAbortError: the blob is not certified, has expired, or would
                end beyond `max_epochs_ahead`.
        """
        try:
            pooled = await self.chain.pools.blob_object(object_id)
        except chain_errors.NotPooled:
            paid, _ = await self.chain.extend_blob(object_id, epochs)
            return paid
        raise PooledLifetime(
            f"{object_id} is a blob of storage pool {pooled.storage_pool_id}: it lives as long "
            "as its pool, which its volume's renewals extend (one transaction for all its blobs)"
        )

    async def move_into_pool(
        self, blob_id: codec.BlobId, pool: str, attributes: dict[str, str]
    ) -> StoreResult:
        """The blob, which the nodes store under another registration, registered in `pool`
        and certified with the nodes' confirmations alone: nothing is uploaded (see
        `walrusfs/store/pooled.py`). The caller deletes the other registration after.

        Raises:
            NotEnoughConfirmations: the nodes do not hold it (any more): upload it instead.
            BlobUnavailable, BlobNotFound: its metadata could not be read.
            chain.errors.InsufficientWal, InsufficientGas: before anything was signed.
        """
        meta = await self.metadata(blob_id)
        return await move_into_pool(self._writer, meta, pool, attributes)

    async def create_pool(self, capacity: int, epochs: int) -> tuple[str, int]:
        """A new storage pool of `capacity` encoded bytes for `epochs` epochs: its object ID
        and the FROST paid.

        Raises:
            chain.errors.InsufficientWal, InsufficientGas: before anything was signed.
            chain.errors.MoveAbortError: `epochs` beyond `max_epochs_ahead`, say.
        """
        state, paid = await self.chain.pools.create(capacity, epochs)
        return state.id, paid

    async def extend_pool(self, pool: str, epochs: int, keep_unused: float) -> tuple[int, int]:
        """Renew the pool, and every blob in it, by `epochs` epochs: (FROST paid, new end
        epoch). Unused capacity above `keep_unused` (a fraction of the capacity in use) is
        taken out first, so the renewal pays for what the volume holds, not for what it once
        held (it comes back to the wallet as a Storage ending at the pool's old end: a blob
        registered outside the pool may reuse it; the pool cannot absorb it any more, as it
        then ends later).

        Raises:
            chain.errors.ObjectNotFound: no such pool.
            chain.errors.InsufficientWal, InsufficientGas: before anything was signed.
            chain.errors.MoveAbortError: the pool expired, or would end beyond
                `max_epochs_ahead`.
        """
        state = await self.chain.pools.get(pool)
        spare = state.available - int(state.used * keep_unused)
        if spare >= BYTES_PER_UNIT_SIZE and state.capacity - spare > 0:
            await self.chain.pools.shrink(pool, spare)
        paid, _ = await self.chain.pools.extend(pool, epochs)
        return paid, (await self.chain.pools.get(pool)).end_epoch
