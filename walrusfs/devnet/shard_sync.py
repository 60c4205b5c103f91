"""An epoch change seen from a node: fetch the shards it gained, attest, drop what it gave.

Walrus nodes move shards with `POST /v1/migrate/sync_shard` (BLS-signed requests, whole
shards in batches, walrus `crates/walrus-service/src/node/shard_sync.rs`); the devnet's new
holder instead GETs each sliver through the public API from the previous holder (which keeps
serving the shards it gave away while the change runs) and verifies it against the blob's
metadata before storing it. A sliver the previous holder lacks is recovered from the other
nodes (a decode of the blob, then the pair re-encoded: what Walrus's recovery symbols compute
for one sliver). When every certified blob is complete the node attests `epoch_sync_done`
(admin `EpochSyncDone`, signed with its BLS key: devnet nodes have no wallet).
"""

from __future__ import annotations

import logging

import trio

import codec
from chain.errors import ChainError, ChainUnavailable
from chain.localnet.node import sync_done_message
from codec.blob_id import BlobId
from codec.sliver import Axis, Sliver
from walrusfs.devnet.node_state import NodeParts
from walrusfs.store.errors import NodeError, ShardNotAssigned
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import Committee, NodeClient

log = logging.getLogger("walrusfs.devnet.node")


class ShardSync:
    """The shard moves of one node identity."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts

    async def run(self, epoch: int, gained: frozenset[int], previous: Committee) -> None:
        """Fetch the slivers of every live blob on the shards this node gained, from their
        holder in the previous epoch (`previous`), then attest `epoch_sync_done`. Retried
        until every certified blob is complete; abandoned when another epoch begins."""
        parts, view = self.parts, self.parts.view
        client = NodeClient(timeout=30.0, connections=8)
        try:
            while parts.faults.get().sync_paused and view.epoch == epoch:
                await trio.sleep(0.2)
            delay = 1.0
            while view.epoch == epoch and gained:
                try:
                    missing = await self._fetch_shards(client, gained, previous)
                except (ChainUnavailable, ChainError) as exc:
                    log.warning("%s: shard sync: %s", parts.name, exc)
                    missing = -1
                if missing == 0:
                    break
                await trio.sleep(delay)
                delay = min(10.0, delay * 2)
            if view.epoch != epoch:
                return  # another epoch began meanwhile
            view.in_transfer = frozenset()
            while view.epoch == epoch and parts.store.meta("attested", -1) < epoch:
                try:
                    await self._attest(epoch)
                except (ChainUnavailable, ChainError) as exc:
                    log.warning("%s: epoch_sync_done: %s", parts.name, exc)
                    await trio.sleep(1.0)
        finally:
            await client.aclose()

    async def _fetch_shards(
        self, client: NodeClient, gained: frozenset[int], previous: Committee
    ) -> int:
        """One pass over the live blobs; the number of certified blobs still incomplete."""
        store = self.parts.store
        params = self.parts.view.require_params()
        blobs = await trio.to_thread.run_sync(store.live_blobs, self.parts.view.epoch)
        limit = trio.CapacityLimiter(4)
        incomplete = 0

        async def one(blob: BlobId, certified: bool) -> None:
            nonlocal incomplete
            async with limit:
                pairs = [params.pair_for_shard(blob.raw, s) for s in sorted(gained)]
                missing = await trio.to_thread.run_sync(store.missing_pairs, blob, pairs)
                if not missing:
                    return
                try:
                    done = await self._fetch_pairs(client, blob, missing, previous)
                except (TransportError, NodeError, codec.CodecError, ShardNotAssigned) as exc:
                    log.info("%s: shard sync of %s: %s", self.parts.name, blob, exc)
                    done = False
                if not done and certified:
                    incomplete += 1

        async with trio.open_nursery() as nursery:
            for blob, certified in blobs:
                nursery.start_soon(one, blob, certified)
        if blobs:
            await trio.to_thread.run_sync(store.sync_all)
        return incomplete

    async def _fetch_pairs(
        self, client: NodeClient, blob: BlobId, pairs: list[int], previous: Committee
    ) -> bool:
        """Both slivers of `pairs` of `blob`, from the previous holders, verified and stored;
        False if some could not be had."""
        store = self.parts.store
        params = self.parts.view.require_params()
        meta = await self.parts.metadata.get(blob, params.n_shards)
        if meta is None:
            for node in previous.nodes:
                raw = await client.get_metadata(node, blob)
                if raw is None:
                    continue
                meta = await trio.to_thread.run_sync(
                    codec.verify_metadata, blob, raw, params.n_shards
                )
                await trio.to_thread.run_sync(store.put_metadata, blob, raw[32:])
                self.parts.metadata.put(blob, meta)
                break
            else:
                return False
        complete = True
        for pair in pairs:
            source = previous.holder(params.shard_for_pair(blob.raw, pair))
            got: dict[Axis, bytes] = {}
            for axis in (Axis.PRIMARY, Axis.SECONDARY):
                raw = await client.get_sliver(source, blob, pair, axis)
                if raw is None:
                    break
                sliver = Sliver(raw, axis)
                await trio.to_thread.run_sync(codec.verify_sliver, sliver, meta)
                got[axis] = raw
            if len(got) < 2:
                recovered = await self._recover_pair(client, meta, pair, previous)
                if recovered is None:
                    complete = False
                    continue
                got = recovered
            for axis, raw in got.items():
                await trio.to_thread.run_sync(store.put_sliver, blob, pair, axis, raw)
        return complete

    async def _recover_pair(
        self, client: NodeClient, meta: codec.VerifiedMetadata, pair: int, previous: Committee
    ) -> dict[Axis, bytes] | None:
        """Pair `pair` rebuilt from k_p verified primary slivers of other nodes: decode the
        blob, encode it again, take the pair (verified against the metadata as any sliver)."""
        params = self.parts.view.require_params()
        blob = meta.blob_id
        got: list[codec.VerifiedSliver] = []
        for row in range(params.n_shards):
            if len(got) >= params.k_p:
                break
            if row == pair:
                continue
            node = previous.holder(params.shard_for_pair(blob.raw, row))
            try:
                raw = await client.get_sliver(node, blob, row, Axis.PRIMARY)
                if raw is None:
                    continue
                sliver = Sliver(raw, Axis.PRIMARY)
                got.append(await trio.to_thread.run_sync(codec.verify_sliver, sliver, meta))
            except (TransportError, NodeError, codec.CodecError) as exc:
                log.info("%s: recovery of %s: %s", self.parts.name, blob, exc)
        if len(got) < params.k_p:
            return None
        data = await trio.to_thread.run_sync(codec.decode, got, meta)
        enc = await trio.to_thread.run_sync(codec.encode, data, params.n_shards)
        if enc.blob_id != blob:
            return None
        rebuilt = enc.pair(pair)
        log.info(
            "%s: recovered pair %d of %s from %d slivers", self.parts.name, pair, blob, len(got)
        )
        return {Axis.PRIMARY: rebuilt.primary.bcs, Axis.SECONDARY: rebuilt.secondary.bcs}

    async def _attest(self, epoch: int) -> None:
        """`epoch_sync_done` for this node: it holds every shard of `epoch`."""
        parts, view = self.parts, self.parts.view
        if not view.node_id:
            return
        signature = parts.key.sign(sync_done_message(view.node_id, epoch))
        try:
            await parts.chain.epoch_sync_done(view.node_id, epoch, signature)
        except ChainError as exc:
            if "already attested" not in str(exc):
                raise
        await trio.to_thread.run_sync(parts.store.set_meta, "attested", epoch)
        view.in_transfer = frozenset()
        log.info("%s: holds its shards of epoch %d (epoch_sync_done)", parts.name, epoch)

    async def drop_foreign_slivers(self) -> None:
        """Remove the slivers of shards this node no longer holds (the epoch change is over:
        their new holders have them)."""
        params = self.parts.view.params
        if params is None:
            return
        shards = self.parts.view.shards

        def run() -> int:
            return self.parts.store.remove_pairs_where(
                lambda blob, pair: params.shard_for_pair(blob.raw, pair) not in shards
            )

        removed = await trio.to_thread.run_sync(run)
        if removed:
            log.info("%s: removed %d slivers of shards it gave away", self.parts.name, removed)
