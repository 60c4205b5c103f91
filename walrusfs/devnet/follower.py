"""A storage node following the chain: Walrus events into its index, the epoch and its shards.

Registration is known from the Walrus package's events (`BlobRegistered`, `BlobCertified`,
`BlobDeleted`, `InvalidBlobID`, `EpochChangeStart`, `EpochChangeDone`, and for storage pools
`StoragePoolCreated`, `StoragePoolExtended`, `PooledBlobRegistered`, `PooledBlobCertified`,
`PooledBlobDeleted`: a pooled blob is stored until its pool ends), read checkpoint by
checkpoint into the node's index, and from the System object's epoch. The node waits on the
chain's checkpoint stream (`SubscribeCheckpoints`) and catches up at every frame; it does not
poll (four nodes polling four times a second would keep half of a 2-core machine busy doing
nothing). An upload for a blob the index does not know makes the node catch up with the chain
first (one catch-up at a time, shared by all waiting requests), so a client that has just
registered is never refused because the node lagged. When a blob's last registration is
deleted or expires, its directory is removed.
"""

from __future__ import annotations

import functools
import logging
import time

import trio
from cachetools import LRUCache

from chain import move_types as mt
from chain import pool_types as pt
from chain.client import ChainEvent, SystemInfo
from chain.errors import ChainError, ChainUnavailable
from chain.localnet.node import InvalidBlobID
from codec.blob_id import BlobId
from codec.params import EncodingParams
from walrusfs.devnet.node_state import NodeParts
from walrusfs.devnet.shard_sync import ShardSync
from walrusfs.devnet.shared import SharedChain
from walrusfs.devnet.storage import PoolEvents, Registration
from walrusfs.store.nodes import ActiveCommittees

log = logging.getLogger("walrusfs.devnet.node")

#: a BlobCertified event as the index stores it: object ID, end epoch (None for a pooled
#: blob: its pool's), epoch, tx, event index
Certification = tuple[str, int | None, int, str, int]


class ChainFollower:
    """Keeps one node identity's index and `ChainView` up to date with the chain."""

    def __init__(self, parts: NodeParts) -> None:
        self.parts = parts
        self.shard_sync = ShardSync(parts)
        #: where shard syncs run (set by the node process before the first sync)
        self.tasks: trio.Nursery | None = None
        #: the checkpoint stream is up: epoch events arrive as they happen
        self.following = False
        self._sync_epoch = -1  # the epoch whose shard sync has been started
        self._epoch_checked = 0.0
        self._sync_done: trio.Event | None = None
        self._sync_failed: Exception | None = None
        # Valid registrations by blob ID; they change only when events or a new epoch are
        # applied, which clear this (each sliver PUT asks: 500 queries a blob per node).
        self._regs: LRUCache[bytes, list[Registration]] = LRUCache(maxsize=1024)

    # -- the committee and the epoch --------------------------------------------------------

    async def refresh_committee(self, info: SystemInfo) -> None:
        """Epoch, shard count and this node's shards, from System (`info`) and Staking (this
        epoch's and the previous epoch's assignment, and whether shards are moving). Starts
        the shard sync of a change this node has not attested yet.

        Raises:
            ChainUnavailable, ChainError: the committee could not be read.
        """
        parts, view = self.parts, self.parts.view
        committees = await parts.chain.committees()
        if committees.epoch != info.epoch:  # read across an epoch change: the newer one
            committees = await ActiveCommittees.load(parts.chain.chain)
        me = parts.key.public_key
        mine = [n for n in committees.current.nodes if n.public_key == me]
        before = committees.previous.nodes if committees.previous is not None else ()
        held = [n for n in before if n.public_key == me]
        view.type_package = info.type_package
        if view.n_shards != info.n_shards:
            view.n_shards = info.n_shards
            view.params = EncodingParams(info.n_shards)
        view.shards = frozenset(mine[0].shards) if mine else frozenset()
        if mine:
            view.node_id = mine[0].node_id
        elif held:
            view.node_id = held[0].node_id
        previous = frozenset(held[0].shards) if held else frozenset()
        view.transitioning = committees.is_change_in_progress()
        if not mine:
            log.warning("%s is not in the committee of epoch %d", parts.name, info.epoch)
        await self._set_epoch(committees.epoch)
        attested = parts.store.meta("attested", -1) >= committees.epoch
        if view.transitioning:
            view.retained = previous - view.shards
            gained = view.shards - previous
            if mine and not attested and self._sync_epoch != committees.epoch:
                # fetch what it gained (maybe nothing), then attest
                self._sync_epoch = committees.epoch
                view.in_transfer = gained
                assert committees.previous is not None
                if self.tasks is not None:
                    self.tasks.start_soon(
                        self.shard_sync.run, committees.epoch, gained, committees.previous
                    )
        else:
            view.retained = frozenset()
            view.in_transfer = frozenset()
            await self.shard_sync.drop_foreign_slivers()

    async def _set_epoch(self, epoch: int) -> None:
        view, store = self.parts.view, self.parts.store
        self._epoch_checked = time.monotonic()
        if epoch != view.epoch or store.meta("epoch", -1) != epoch:
            log.info("epoch %d", epoch)
            view.epoch = epoch
            await trio.to_thread.run_sync(store.set_epoch, epoch)
            self._regs.clear()
            await self.collect_garbage()

    async def _check_epoch(self, force: bool = False) -> None:
        """Re-read the epoch; on a new one (or at start, or when `force`d: an epoch change
        finished) reload the committee and collect."""
        view = self.parts.view
        info = await self.parts.chain.system_info()
        if force or info.epoch != view.epoch or view.params is None or view.transitioning:
            await self.refresh_committee(info)
        self._epoch_checked = time.monotonic()

    async def current_epoch(self) -> int:
        """The epoch to sign for. While the checkpoint stream is up a new epoch arrives as an
        event (and catching up to a blob's registration applies every event before it);
        without the stream, re-read from the chain if the last look is over a second old.

        Raises:
            ChainUnavailable, ChainError: that re-read failed.
        """
        if not self.following and time.monotonic() - self._epoch_checked > 1.0:
            await self._check_epoch()
        return self.parts.view.epoch

    # -- events -----------------------------------------------------------------------------

    async def sync(self, *, epoch: bool = False) -> None:
        """Catch up with the chain: every new checkpoint's Walrus events, and the epoch when
        one of them starts a new one (or `epoch` asks for a look anyway).

        Concurrent callers share one catch-up: a burst of uploads for a new blob costs one,
        and if it fails (the chain is down) they all see that failure.

        Raises:
            ChainUnavailable, ChainError: the chain could not be read.
        """
        if self._sync_done is not None:
            await self._sync_done.wait()
            if self._sync_failed is not None:
                raise ChainUnavailable(f"catching up with the chain: {self._sync_failed}")
            return
        self._sync_done = done = trio.Event()
        self._sync_failed = None
        chain, store = self.parts.chain, self.parts.store
        try:
            if epoch or self.parts.view.params is None:
                await self._check_epoch()
            deleted = new_epoch = False
            cursor = store.meta("cursor")
            latest = await chain.latest_checkpoint()
            while cursor < latest:
                events = await chain.checkpoint_events(cursor + 1, self.parts.view.type_package)
                if events is None:
                    break
                cursor += 1
                gone, started = await self._apply(cursor, events)
                deleted |= gone
                new_epoch |= started
            if new_epoch:
                await self._check_epoch(force=True)
            if deleted:
                await self.collect_garbage()
        except Exception as exc:
            self._sync_failed = exc
            raise
        finally:
            self._sync_done = None
            done.set()

    async def _apply(self, cursor: int, events: list[ChainEvent]) -> tuple[bool, bool]:
        """Index one checkpoint's events; (a blob was deleted, an epoch started)."""
        registered: list[Registration] = []
        certified: list[Certification] = []
        deleted: list[str] = []
        invalid: list[tuple[bytes, str, int]] = []
        pools = PoolEvents()
        for ev in events:
            if ev.name == "BlobRegistered":
                r = mt.BlobRegistered.from_bcs(ev.bcs)
                blob = BlobId.from_u256(r.blob_id)
                registered.append(
                    Registration(
                        object_id=r.object_id,
                        blob_id=blob.raw,
                        deletable=r.deletable,
                        size=r.size,
                        registered_epoch=r.epoch,
                        end_epoch=r.end_epoch,
                        certified_epoch=None,
                        event_tx=ev.tx_digest,
                        event_ix=ev.index,
                    )
                )
            elif ev.name == "BlobCertified":
                c = mt.BlobCertified.from_bcs(ev.bcs)
                certified.append((c.object_id, c.end_epoch, c.epoch, ev.tx_digest, ev.index))
            elif ev.name == "BlobDeleted":
                d = mt.BlobDeleted.from_bcs(ev.bcs)
                deleted.append(d.object_id)
            elif ev.name == "InvalidBlobID":
                v = InvalidBlobID.from_bcs(ev.bcs)
                invalid.append((BlobId.from_u256(v.blob_id).raw, ev.tx_digest, ev.index))
            elif ev.name == "StoragePoolCreated":
                pc = pt.StoragePoolCreated.from_bcs(ev.bcs)
                pools.created.append((pc.storage_pool_id, pc.end_epoch))
            elif ev.name == "StoragePoolExtended":
                pe = pt.StoragePoolExtended.from_bcs(ev.bcs)
                pools.extended.append((pe.storage_pool_id, pe.new_end_epoch))
            elif ev.name == "PooledBlobRegistered":
                pr = pt.PooledBlobRegistered.from_bcs(ev.bcs)
                pools.pooled[pr.object_id] = pr.storage_pool_id
                registered.append(
                    Registration(
                        object_id=pr.object_id,
                        blob_id=BlobId.from_u256(pr.blob_id).raw,
                        deletable=pr.deletable,
                        size=pr.unencoded_size,
                        registered_epoch=pr.epoch,
                        end_epoch=0,  # the pool's, filled in by the index
                        certified_epoch=None,
                        event_tx=ev.tx_digest,
                        event_ix=ev.index,
                    )
                )
            elif ev.name == "PooledBlobCertified":
                pcert = pt.PooledBlobCertified.from_bcs(ev.bcs)
                certified.append((pcert.object_id, None, pcert.epoch, ev.tx_digest, ev.index))
            elif ev.name == "PooledBlobDeleted":
                deleted.append(pt.PooledBlobDeleted.from_bcs(ev.bcs).object_id)
        await trio.to_thread.run_sync(
            functools.partial(
                self.parts.store.apply_events,
                cursor,
                registered,
                certified,
                deleted,
                invalid,
                pools=pools,
            )
        )
        self._regs.clear()
        # EpochChangeStart: a new epoch (and committee); EpochChangeDone: the shards have
        # moved (nodes stop serving the ones they gave away)
        epoch_events = ("EpochChangeStart", "EpochChangeDone")
        return bool(deleted), any(ev.name in epoch_events for ev in events)

    async def collect_garbage(self) -> None:
        """Remove every stored blob without a valid registration (deleted or expired)."""
        store, metadata = self.parts.store, self.parts.metadata

        def run() -> list[BlobId]:
            live = store.live_blob_ids(self.parts.view.epoch)
            gone = [b for b in store.stored_blobs() if b.raw not in live]
            for blob in gone:
                store.remove_blob(blob)
                metadata.forget(blob)
            return gone

        for blob in await trio.to_thread.run_sync(run):
            log.info("removed blob %s: deleted or expired", blob)

    async def registrations(self, blob: BlobId) -> list[Registration]:
        """Valid registrations; an unknown blob triggers one catch-up with the chain.

        Raises:
            ChainUnavailable, ChainError: that catch-up failed.
        """
        regs = self._regs.get(blob.raw)
        if regs is not None:
            return regs
        store, epoch = self.parts.store, self.parts.view.epoch
        regs = store.registrations(blob, epoch)
        if not regs:
            await self.sync()
            regs = store.registrations(blob, self.parts.view.epoch)
        if regs:
            self._regs[blob.raw] = regs
        return regs

    # -- loops ------------------------------------------------------------------------------

    async def first_sync(self) -> None:
        """The catch-up before the node serves, retried until the chain answers."""
        while True:
            try:
                await self.sync(epoch=True)
                return
            except (ChainUnavailable, ChainError) as exc:
                log.warning("%s: following the chain: %s", self.parts.name, exc)
                await trio.sleep(1.0)

    async def resync(self) -> None:
        """A full catch-up, the epoch included; a chain outage is logged, not raised."""
        try:
            await self.sync(epoch=True)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("%s: following the chain: %s", self.parts.name, exc)


async def follow_checkpoints(followers: list[ChainFollower], shared: SharedChain) -> None:
    """Every identity catches up at every frame of the (one) checkpoint stream. A chain outage
    is logged and retried, never fatal."""
    limit = trio.CapacityLimiter(16)

    async def one(follower: ChainFollower) -> None:
        async with limit:
            try:
                await follower.sync()
            except (ChainUnavailable, ChainError) as exc:
                log.warning("%s: catching up: %s", follower.parts.name, exc)

    while True:
        try:
            async for _ in shared.checkpoint_stream():
                for follower in followers:
                    follower.following = True
                async with trio.open_nursery() as nursery:
                    for follower in followers:
                        nursery.start_soon(one, follower)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("checkpoint stream: %s (subscribing again)", exc)
        finally:
            for follower in followers:
                follower.following = False
        await trio.sleep(1.0)


async def resync_periodically(followers: list[ChainFollower], interval: float) -> None:
    """A full catch-up (the epoch included) every `interval` seconds: a safety net, not the
    way nodes learn of changes."""
    while True:
        await trio.sleep(interval)
        for follower in followers:
            await follower.resync()
