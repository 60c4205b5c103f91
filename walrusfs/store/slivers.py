"""Verified slivers of a blob, from the disk cache or the storage nodes, with hedged requests.

Every sliver fetched is verified against the blob's metadata before use and then cached; a
cache hit makes no request. A node that serves a sliver failing verification is dropped for
the rest of that fetch and named in a WARNING. Which slivers are asked, in what order and
when another is asked in place of a late one is `walrusfs/store/hedging.py`'s policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import trio

import codec
from cache.slivers import SliverCache
from codec.sliver import Axis, Sliver
from walrusfs.store.errors import NodeError
from walrusfs.store.hedging import (
    NodeStats,
    launch_count,
    overdue,
    request_plan,
    stop_waiting,
)
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import Committee, NodeClient, StorageNode

log = logging.getLogger(__name__)

#: the committee to read a blob from (`Committees.for_read` with the store's statuses)
ReadCommittee = Callable[[codec.BlobId], Awaitable[Committee]]

Got = dict[int, codec.VerifiedSliver]


class SliverReader:
    """Fetches verified slivers: `limit` bounds the requests in flight across all reads."""

    def __init__(
        self,
        nodes: NodeClient,
        stats: NodeStats,
        limit: trio.CapacityLimiter,
        read_committee: ReadCommittee,
    ) -> None:
        self.nodes = nodes
        self.stats = stats
        self.limit = limit
        self.read_committee = read_committee

    async def fetch(
        self,
        meta: codec.VerifiedMetadata,
        axis: Axis,
        indices: list[int],
        *,
        need: int,
        strict: bool,
        cache: SliverCache | None,
        fill: bool = True,
        last: bool = False,
    ) -> Got:
        """Verified slivers of `indices` (sliver indices of `axis`), from cache or nodes, until
        `need` are in hand.

        Args:
            strict: all of `indices` are wanted (a byte range's rows, a patch's columns);
                otherwise any `need` of them. A strict fetch may return fewer (a holder is
                slow or failed): the caller then reads from any nodes instead.
            cache: the disk cache to read and fill; None when the read bypasses it.
            fill: False: slivers from the nodes are not added to `cache` (a byte range's
                rows, whose bytes the block cache keeps instead).
            last: the caller has no fallback: late requests are waited for, not abandoned
                (`hedging.stop_waiting`).

        Returns fewer than `need` when the nodes could not serve more; never raises for a
        node's failure.

        Raises:
            BlobInvalid, BlobNotFound: during an epoch change, from the blob status that
                picks the committee to read from (`Committees.for_read`).
            ShardNotAssigned: the committee names no node for a shard.
        """
        got, missing = await _cached(meta, axis, indices, need=need, strict=strict, cache=cache)
        if not missing or (not strict and len(got) >= need):
            return got
        committee = await self.read_committee(meta.blob_id)
        await self._from_nodes(
            meta,
            axis,
            missing,
            committee,
            got=got,
            need=need,
            strict=strict,
            cache=cache if fill else None,
            last=last,
        )
        return got

    async def _from_nodes(
        self,
        meta: codec.VerifiedMetadata,
        axis: Axis,
        missing: list[int],
        committee: Committee,
        *,
        got: Got,
        need: int,
        strict: bool,
        cache: SliverCache | None,
        last: bool,
    ) -> None:
        blob_id = meta.blob_id
        params = meta.params
        prefix = "p" if axis is Axis.PRIMARY else "s"
        bad: set[str] = set()
        rank = {n.name: r for r, n in enumerate(self.stats.order(committee.nodes))}

        def pair_of(i: int) -> int:
            return i if axis is Axis.PRIMARY else params.pair_of_secondary(i)

        def holder(i: int) -> StorageNode:
            return committee.holder(params.shard_for_pair(blob_id.raw, pair_of(i)))

        plan = request_plan(
            missing,
            lambda i: rank[holder(i).name],
            lambda i: self.stats.is_slow(holder(i)),
            strict=strict,
        )
        if plan is None:
            return  # a holder is known to be slow: go straight to the fallback
        enough = trio.Event()

        async def one(i: int) -> None:
            node = holder(i)
            if node.name in bad:
                return
            async with self.limit:
                if enough.is_set() or node.name in bad:
                    return
                started = time.monotonic()
                try:
                    # One attempt: a failed sliver is replaced by another one (see the hedging).
                    raw = await self.nodes.get_sliver(node, blob_id, pair_of(i), axis)
                except (TransportError, NodeError) as exc:
                    self.stats.failed(node)
                    log.info("%s: sliver %s%d of %s: %s", node.name, prefix, i, blob_id, exc)
                    return
                self.stats.record(node, time.monotonic() - started)
            if raw is None:
                return
            try:
                sliver = Sliver(raw, axis)
                verified = await trio.to_thread.run_sync(codec.verify_sliver, sliver, meta)
                if sliver.index != i:
                    raise codec.InvalidSliver(
                        f"asked for {i}, got {sliver.index}", axis=axis, index=sliver.index
                    )
            except codec.CodecError as exc:
                bad.add(node.name)
                log.warning(
                    "storage node %s served a bad %s sliver %d of %s (%s); "
                    "not using it for the rest of this read",
                    node.name,
                    axis,
                    i,
                    blob_id,
                    exc,
                )
                return
            got[i] = verified
            if cache is not None:
                await trio.to_thread.run_sync(cache.put, str(blob_id), f"{prefix}{i}", raw)
            if len(got) >= need and not strict:
                enough.set()

        queue = plan
        started: dict[int, float] = {}  # in flight -> when asked
        hedged: set[int] = set()  # in flight past the hedge delay
        changed = trio.Event()

        async def run(i: int) -> None:
            try:
                await one(i)
            finally:
                started.pop(i, None)
                hedged.discard(i)
                changed.set()

        hedge = self.stats.hedge_delay()
        begun = time.monotonic()
        async with trio.open_nursery() as nursery:
            while True:
                if not strict and len(got) >= need:
                    break
                launch = launch_count(
                    strict=strict,
                    need=need,
                    have=len(got),
                    in_flight=len(started),
                    hedged=len(hedged),
                    queued=len(queue),
                )
                for i in queue[:launch]:
                    started[i] = time.monotonic()
                    nursery.start_soon(run, i)
                del queue[:launch]
                if not started:
                    break
                with trio.move_on_after(hedge):
                    await changed.wait()
                changed = trio.Event()
                now = time.monotonic()
                for i in overdue(started, hedged, now, hedge):
                    hedged.add(i)
                    self.stats.slow(holder(i))
                if stop_waiting(
                    strict=strict,
                    queued=len(queue),
                    in_flight=len(started),
                    hedged=len(hedged),
                    waited=now - begun,
                    hedge=hedge,
                    last=last,
                ):
                    break
            nursery.cancel_scope.cancel()


async def _cached(
    meta: codec.VerifiedMetadata,
    axis: Axis,
    indices: list[int],
    *,
    need: int,
    strict: bool,
    cache: SliverCache | None,
) -> tuple[Got, list[int]]:
    """The slivers of `indices` the disk cache has (trusted by the hash recorded when they were
    verified), and the ones it lacks; stops at `need` unless `strict`."""
    got: Got = {}
    missing: list[int] = []
    prefix = "p" if axis is Axis.PRIMARY else "s"
    for i in indices:
        raw = None
        if cache is not None:
            raw = await trio.to_thread.run_sync(cache.get, str(meta.blob_id), f"{prefix}{i}")
        if raw is not None:
            got[i] = codec.VerifiedSliver(Sliver(raw, axis), meta.blob_id.raw)
            if len(got) >= need and not strict:
                break
        else:
            missing.append(i)
    return got, missing
