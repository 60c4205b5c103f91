"""A blob's metadata, verified against its blob ID: from memory, the disk cache, or the first
storage node whose copy verifies; and, with the first fetch from the nodes, its status.

Reads ask each node once, fastest first, and move on at the first failure: the other nodes
are the redundancy, so retrying a dead one would only add its timeout. A node that does not
answer within the hedge delay is remembered as slow and the next is asked too (hedged
requests, as the Walrus client reads metadata from several nodes).
"""

from __future__ import annotations

import functools
import logging
import time

import trio
from cachetools import LRUCache

import codec
from cache.slivers import SliverCache
from walrusfs.store.committee import Committees
from walrusfs.store.errors import BlobInvalid, BlobNotFound, BlobUnavailable, NodeError
from walrusfs.store.hedging import NodeStats
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import NodeClient, StorageNode
from walrusfs.store.status import BlobStatuses

log = logging.getLogger(__name__)


class MetadataReader:
    """Verified metadata of blobs. `verified` is the store's memory of it (the store forgets a
    blob there when it deletes it)."""

    def __init__(
        self,
        nodes: NodeClient,
        stats: NodeStats,
        committees: Committees,
        statuses: BlobStatuses,
        verified: LRUCache[bytes, codec.VerifiedMetadata],
    ) -> None:
        self.nodes = nodes
        self.stats = stats
        self.committees = committees
        self.statuses = statuses
        self.verified = verified

    async def get(
        self, blob_id: codec.BlobId, *, cache: SliverCache | None, use_cache: bool = True
    ) -> codec.VerifiedMetadata:
        """Verified metadata: memory, then the disk cache (re-verified), then the nodes.

        Args:
            cache: the disk cache to read and fill; None when the read bypasses it.
            use_cache: False also skips the memory of verified metadata.

        Raises:
            BlobInvalid, BlobNotFound: the nodes report the blob invalid / nonexistent.
            BlobNotFound: every node that answered has no such blob.
            BlobUnavailable: no node served metadata that verifies.
        """
        if use_cache and (known := self.verified.get(blob_id.raw)) is not None:
            return known
        if cache is not None:
            raw = await trio.to_thread.run_sync(cache.get, str(blob_id), "metadata")
            if raw is not None:
                try:
                    n = codec.parse_metadata_with_id(raw)[1].n_shards
                    meta = await trio.to_thread.run_sync(codec.verify_metadata, blob_id, raw, n)
                    self.verified[blob_id.raw] = meta
                    return meta
                except codec.CodecError as exc:
                    log.warning("cached metadata of %s is invalid (%s); refetching", blob_id, exc)
        return await self._from_nodes(blob_id, cache)

    async def _from_nodes(
        self, blob_id: codec.BlobId, cache: SliverCache | None
    ) -> codec.VerifiedMetadata:
        committees = await self.committees.active()
        committee = await self.committees.for_read(blob_id, self.statuses)
        errors: list[str] = []
        absent = 0
        found: list[codec.VerifiedMetadata] = []
        nodes = self.stats.order(committee.nodes)
        answered = 0
        changed = trio.Event()

        async def ask(node: StorageNode) -> None:
            nonlocal absent, answered
            started = time.monotonic()
            try:
                raw = await self.nodes.get_metadata(node, blob_id)
                self.stats.record(node, time.monotonic() - started)
                if raw is None:
                    absent += 1
                    return
                try:
                    meta = await trio.to_thread.run_sync(
                        codec.verify_metadata, blob_id, raw, committee.n_shards
                    )
                except codec.CodecError as exc:
                    log.warning("%s served invalid metadata for %s: %s", node.name, blob_id, exc)
                    errors.append(f"{node.name}: invalid metadata")
                    return
                if cache is not None:
                    await trio.to_thread.run_sync(
                        functools.partial(cache.put, str(blob_id), "metadata", raw, hashed=False)
                    )
                found.append(meta)
                nursery.cancel_scope.cancel()
            except (TransportError, NodeError) as exc:
                self.stats.failed(node)
                errors.append(f"{node.name}: {exc}")
            finally:
                answered += 1
                changed.set()

        refused: list[BlobInvalid | BlobNotFound] = []

        async def status() -> None:
            # during an epoch change `for_read` asked it already (remembered: no request)
            try:
                await self.statuses.get(blob_id, committees)
            except (BlobInvalid, BlobNotFound) as exc:
                refused.append(exc)

        # One node at a time, fastest first; the next is asked too when one passes the hedge
        # delay: a stopped node costs one delay, not its whole timeout.
        async with trio.open_nursery() as checks:
            checks.start_soon(status)
            async with trio.open_nursery() as nursery:
                for asked, node in enumerate(nodes, start=1):
                    nursery.start_soon(ask, node)
                    with trio.move_on_after(self.stats.hedge_delay()) as waited:
                        while answered < asked:
                            await changed.wait()
                            changed = trio.Event()
                    if waited.cancelled_caught:
                        self.stats.slow(node)
        if refused:
            raise refused[0]
        if found:
            self.verified[blob_id.raw] = found[0]
            return found[0]
        if absent and not errors:
            raise BlobNotFound(f"no storage node has blob {blob_id}")
        raise BlobUnavailable(f"no verifiable metadata for {blob_id}: " + "; ".join(errors))
