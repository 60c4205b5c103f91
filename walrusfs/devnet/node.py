"""A Walrus storage node: the storage-node REST API over a `NodeStore`, following the chain.

What it enforces, in the order a request meets it (each refusal is a Walrus error status,
see `walrusfs.devnet.http`):

    body size      metadata: exactly one BlobMetadata for n shards; sliver: the largest
                   primary sliver + 128 B (as the real node)             -> 413 PAYLOAD_TOO_LARGE
    sliver index   < n_shards                                            -> INDEX_OUT_OF_RANGE
    shard          the pair's shard (rotation by blob ID) is this node's -> SHARD_NOT_ASSIGNED
    registration   a valid Blob object for the blob ID exists on chain   -> NOT_REGISTERED
    metadata       recomputes the blob ID                                -> INVALID_METADATA
    sliver         metadata stored first; index matches the URL; the
                   sliver's Merkle root matches the metadata             -> METADATA_NOT_FOUND,
                                                                            SLIVER_INDEX_MISMATCH,
                                                                            INVALID_SLIVER
    confirmation   registered (for `deletable/{object}`: that object);
                   both slivers of every pair this node's shards hold    -> MISSING_SLIVERS

Registration is known from the Walrus package's events (`BlobRegistered`, `BlobCertified`,
`BlobDeleted`, `EpochChangeStart`), read checkpoint by checkpoint into the node's index, and
from the System object's epoch. The node waits on the chain's checkpoint stream
(`SubscribeCheckpoints`) and catches up at every frame; it does not poll (four nodes polling
four times a second kept half of a 2-core machine busy doing nothing). An upload for a blob
the index does not know makes the node catch up with the chain first (one catch-up at a time,
shared by all waiting requests), so a client that has just registered is never refused
because the node lagged. When a blob's last registration is deleted or expires, its directory
is removed.

Confirmations are signed with the node's BLS key (min_pk, basic scheme) over the exact message
`certify_blob` verifies: BCS `Confirmation` = intent [1, 0, 3] || epoch u32 LE || blob ID ||
blob type (0 permanent | 1 || object ID).

Test switches, read from `faults.json` in the node directory whenever it changes (the
launcher's `walrusfs devnet node corrupt|slow|refuse|heal` writes it):
`{"corrupt": true}` flips bytes in every sliver served (the BCS stays well-formed, the Merkle
root does not match); `{"delay_ms": N}` answers every request N ms late; `{"refuse": true}`
answers every request 503 UNAVAILABLE.

Concurrency: one trio loop per node process. Disk writes, fsyncs and sliver verification run
in worker threads (`trio.to_thread`); the index is SQLite behind a lock. The loop only routes.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysui_fastcrypto as fc
import trio
from cachetools import LRUCache

import codec
from chain import move_types as mt
from chain.bls import BlsKeypair
from chain.client import ChainEvent, NetworkProfile, SystemInfo, WalrusChain, devnet_profile
from chain.errors import ChainError, ChainUnavailable
from chain.localnet.node import InvalidBlobID, sync_done_message
from codec.bcs import Reader, uleb128
from codec.blob_id import BlobId
from codec.params import EncodingParams
from codec.sliver import Axis, Sliver
from walrusfs.devnet import http, server
from walrusfs.devnet.http import ApiError, Request, Response
from walrusfs.devnet.shared import SharedChain
from walrusfs.devnet.storage import CorruptRecord, NodeStore, Registration
from walrusfs.store.errors import NodeError, ShardNotAssigned
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import ActiveCommittees, Committee, NodeClient

log = logging.getLogger("walrusfs.devnet.node")

NODE_CONFIG = "node.json"
BLS_KEY_FILE = "bls.key"
FAULTS_FILE = "faults.json"


@dataclass(frozen=True)
class NodeConfig:
    """`node.json`: written by the launcher at genesis, read by the node process."""

    name: str
    host: str
    port: int
    chain: dict[str, Any]  # devnet_profile(**chain)
    fsync: bool = True
    #: seconds between full catch-ups (the epoch included) besides those the checkpoint
    #: stream triggers: a safety net, not the way the node learns of changes
    resync_interval: float = 30.0

    @classmethod
    def load(cls, directory: Path) -> NodeConfig:
        raw = json.loads((directory / NODE_CONFIG).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        # keys of older devnets (`poll_interval`: nodes polled the chain 4 times a second)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, directory: Path) -> None:
        text = json.dumps(self.__dict__, indent=2) + "\n"
        (directory / NODE_CONFIG).write_text(text, encoding="utf-8")

    def profile(self) -> NetworkProfile:
        return devnet_profile(**self.chain)


def load_bls_key(directory: Path) -> BlsKeypair:
    seed = bytes.fromhex((directory / BLS_KEY_FILE).read_text(encoding="ascii").strip())
    return BlsKeypair.from_seed(seed)


def write_bls_key(directory: Path, seed: bytes) -> None:
    path = directory / BLS_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(seed.hex() + "\n")


@dataclass
class Faults:
    corrupt: bool = False
    delay_ms: int = 0
    refuse: bool = False
    #: the node neither fetches the shards it gained nor attests `epoch_sync_done` while set
    #: (a node slow to take over its shards: the epoch change stays in progress)
    sync_paused: bool = False


class FaultSwitch:
    """`faults.json`, re-read when its modification time changes (one stat per request)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self.current = Faults()

    def get(self) -> Faults:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self.current = None, Faults()
            return self.current
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.current = Faults(
                    bool(raw.get("corrupt", False)),
                    int(raw.get("delay_ms", 0)),
                    bool(raw.get("refuse", False)),
                    bool(raw.get("sync_paused", False)),
                )
            except (ValueError, OSError, AttributeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.path, exc)
                self.current = Faults()
            self._stamp = stamp
        return self.current


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _parse_blob_id(text: str) -> BlobId:
    try:
        return BlobId.parse(text)
    except codec.MalformedBlobId as exc:
        raise ApiError("INVALID_ARGUMENT", "INVALID_BLOB_ID", str(exc)) from None


def _parse_axis(text: str) -> Axis:
    try:
        return Axis(text)
    except ValueError:
        raise ApiError(
            "INVALID_ARGUMENT", "INVALID_SLIVER_TYPE", f"sliver type {text!r}: primary|secondary"
        ) from None


def _event_id(reg: Registration) -> dict[str, Any]:
    return {"txDigest": reg.event_tx, "eventSeq": str(reg.event_ix)}


class StorageNode:
    def __init__(
        self, directory: Path, config: NodeConfig, key: BlsKeypair, chain: SharedChain
    ) -> None:
        self.directory = directory
        self.config = config
        self.key = key
        self.chain = chain
        self.store = NodeStore(directory, fsync=config.fsync)
        self.faults = FaultSwitch(directory / FAULTS_FILE)
        self.started = time.monotonic()
        self.epoch = self.store.meta("epoch")
        self.n_shards = 0
        self.params: EncodingParams | None = None
        self.shards: frozenset[int] = frozenset()
        #: shards this node held in the previous epoch and still serves reads of while the
        #: epoch change runs (their new holders fetch them from here)
        self.retained: frozenset[int] = frozenset()
        #: shards of the current epoch whose data is still being fetched (shard status
        #: "inTransfer"); the node attests `epoch_sync_done` when it is empty
        self.in_transfer: frozenset[int] = frozenset()
        self.node_id = ""
        self.transitioning = False
        self._sync_epoch = -1  # the epoch whose shard sync has been started
        self._tasks: trio.Nursery | None = None  # background work (shard syncs)
        self.requests: Counter[str] = Counter()  # answered requests by route (devnet stats)
        self.type_package = ""
        self._epoch_checked = 0.0
        self._following = False  # the checkpoint stream is up: epoch events arrive as they happen
        self._sync_done: trio.Event | None = None
        self._sync_failed: Exception | None = None
        self._verified: LRUCache[bytes, codec.VerifiedMetadata] = LRUCache(maxsize=64)
        # Valid registrations by blob ID; they change only when events or a new epoch are
        # applied, which clear this (each sliver PUT asks: 500 queries a blob per node).
        self._regs: LRUCache[bytes, list[Registration]] = LRUCache(maxsize=1024)
        self.router = http.Router()
        r = self.router.add
        r("GET", "/v1/health", self.health)
        r("PUT", "/v1/blobs/{blob_id}/metadata", self.put_metadata)
        r("GET", "/v1/blobs/{blob_id}/metadata", self.get_metadata)
        r("GET", "/v1/blobs/{blob_id}/metadata/status", self.metadata_status)
        r("PUT", "/v1/blobs/{blob_id}/slivers/{pair}/{axis}", self.put_sliver)
        r("GET", "/v1/blobs/{blob_id}/slivers/{pair}/{axis}", self.get_sliver)
        r("GET", "/v1/blobs/{blob_id}/slivers/{pair}/{axis}/status", self.sliver_status)
        r("GET", "/v1/blobs/{blob_id}/confirmation/permanent", self.confirm_permanent)
        r("GET", "/v1/blobs/{blob_id}/confirmation/deletable/{object_id}", self.confirm_deletable)
        r("GET", "/v1/blobs/{blob_id}/status", self.blob_status)
        # devnet only (no Walrus route): how many requests of each route this node answered
        r("GET", "/devnet/requests", self.request_counts)

    # -- chain ------------------------------------------------------------------------------

    async def refresh_committee(self, info: SystemInfo) -> None:
        """Epoch, shard count and this node's shards, from System (`info`) and Staking (this
        epoch's and the previous epoch's assignment, and whether shards are moving)."""
        committees = await self.chain.committees()
        if committees.epoch != info.epoch:  # read across an epoch change: the newer one
            committees = await ActiveCommittees.load(self.chain.chain)
        me = self.key.public_key
        mine = [n for n in committees.current.nodes if n.public_key == me]
        before = committees.previous.nodes if committees.previous is not None else ()
        held = [n for n in before if n.public_key == me]
        self.type_package = info.type_package
        if self.n_shards != info.n_shards:
            self.n_shards = info.n_shards
            self.params = EncodingParams(info.n_shards)
        self.shards = frozenset(mine[0].shards) if mine else frozenset()
        if mine:
            self.node_id = mine[0].node_id
        elif held:
            self.node_id = held[0].node_id
        previous = frozenset(held[0].shards) if held else frozenset()
        self.transitioning = committees.is_change_in_progress()
        if not mine:
            log.warning("%s is not in the committee of epoch %d", self.config.name, info.epoch)
        await self._set_epoch(committees.epoch)
        attested = self.store.meta("attested", -1) >= committees.epoch
        if self.transitioning:
            self.retained = previous - self.shards
            gained = self.shards - previous
            if mine and not attested and self._sync_epoch != committees.epoch:
                # fetch what it gained (maybe nothing), then attest
                self._sync_epoch = committees.epoch
                self.in_transfer = gained
                assert committees.previous is not None
                if self._tasks is not None:
                    self._tasks.start_soon(
                        self._sync_shards, committees.epoch, gained, committees.previous
                    )
        else:
            self.retained = frozenset()
            self.in_transfer = frozenset()
            await self._drop_foreign_slivers()

    async def _set_epoch(self, epoch: int) -> None:
        self._epoch_checked = time.monotonic()
        if epoch != self.epoch or self.store.meta("epoch", -1) != epoch:
            log.info("epoch %d", epoch)
            self.epoch = epoch
            await trio.to_thread.run_sync(self.store.set_epoch, epoch)
            self._regs.clear()
            await self.collect_garbage()

    async def _check_epoch(self, force: bool = False) -> None:
        """Re-read the epoch; on a new one (or at start, or when `force`d: an epoch change
        finished) reload the committee and collect."""
        info = await self.chain.system_info()
        if force or info.epoch != self.epoch or self.params is None or self.transitioning:
            await self.refresh_committee(info)
        self._epoch_checked = time.monotonic()

    async def sync(self, *, epoch: bool = False) -> None:
        """Catch up with the chain: every new checkpoint's Walrus events, and the epoch when
        one of them starts a new one (or `epoch` asks for a look anyway).

        Concurrent callers share one catch-up: a burst of uploads for a new blob costs one,
        and if it fails (the chain is down) they all see that failure."""
        if self._sync_done is not None:
            await self._sync_done.wait()
            if self._sync_failed is not None:
                raise ChainUnavailable(f"catching up with the chain: {self._sync_failed}")
            return
        self._sync_done = done = trio.Event()
        self._sync_failed = None
        try:
            if epoch or self.params is None:
                await self._check_epoch()
            deleted = new_epoch = False
            cursor = self.store.meta("cursor")
            latest = await self.chain.latest_checkpoint()
            while cursor < latest:
                events = await self.chain.checkpoint_events(cursor + 1, self.type_package)
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
        certified: list[tuple[str, int, int, str, int]] = []
        deleted: list[str] = []
        invalid: list[tuple[bytes, str, int]] = []
        for ev in events:
            if ev.name == "BlobRegistered":
                r = mt.BlobRegistered.from_bcs(ev.bcs)
                blob = BlobId.from_u256(r.blob_id)
                registered.append(
                    Registration(
                        r.object_id, blob.raw, r.deletable, r.size, r.epoch, r.end_epoch,
                        None, ev.tx_digest, ev.index,
                    )
                )  # fmt: skip
            elif ev.name == "BlobCertified":
                c = mt.BlobCertified.from_bcs(ev.bcs)
                certified.append((c.object_id, c.end_epoch, c.epoch, ev.tx_digest, ev.index))
            elif ev.name == "BlobDeleted":
                d = mt.BlobDeleted.from_bcs(ev.bcs)
                deleted.append(d.object_id)
            elif ev.name == "InvalidBlobID":
                v = InvalidBlobID.from_bcs(ev.bcs)
                invalid.append((BlobId.from_u256(v.blob_id).raw, ev.tx_digest, ev.index))
        await trio.to_thread.run_sync(
            self.store.apply_events, cursor, registered, certified, deleted, invalid
        )
        self._regs.clear()
        # EpochChangeStart: a new epoch (and committee); EpochChangeDone: the shards have
        # moved (nodes stop serving the ones they gave away)
        epoch_events = ("EpochChangeStart", "EpochChangeDone")
        return bool(deleted), any(ev.name in epoch_events for ev in events)

    async def collect_garbage(self) -> None:
        """Remove every stored blob without a valid registration (deleted or expired)."""

        def run() -> list[BlobId]:
            live = self.store.live_blob_ids(self.epoch)
            gone = [b for b in self.store.stored_blobs() if b.raw not in live]
            for blob in gone:
                self.store.remove_blob(blob)
                self._verified.pop(blob.raw, None)
            return gone

        for blob in await trio.to_thread.run_sync(run):
            log.info("removed blob %s: deleted or expired", blob)

    async def first_sync(self) -> None:
        """The catch-up before the node serves, retried until the chain answers."""
        while True:
            try:
                await self.sync(epoch=True)
                return
            except (ChainUnavailable, ChainError) as exc:
                log.warning("%s: following the chain: %s", self.config.name, exc)
                await trio.sleep(1.0)

    async def resync(self) -> None:
        try:
            await self.sync(epoch=True)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("%s: following the chain: %s", self.config.name, exc)

    # -- epoch change: shards that move --------------------------------------------------

    async def _sync_shards(self, epoch: int, gained: frozenset[int], previous: Committee) -> None:
        """Fetch the slivers of every live blob on the shards this node gained, from their
        holder in the previous epoch, then attest `epoch_sync_done`.

        Walrus nodes move shards with `POST /v1/migrate/sync_shard` (BLS-signed requests,
        whole shards in batches, walrus `crates/walrus-service/src/node/shard_sync.rs`); the
        devnet's new holder instead GETs each sliver through the public API from the previous
        holder (which keeps serving the shards it gave away while the change runs) and
        verifies it against the blob's metadata before storing it. A sliver the previous
        holder lacks is recovered from the other nodes (a decode of the blob, then the pair
        re-encoded: what Walrus's recovery symbols compute for one sliver). Retried until
        every certified blob is complete."""
        client = NodeClient(timeout=30.0, connections=8)
        try:
            while self.faults.get().sync_paused and self.epoch == epoch:
                await trio.sleep(0.2)
            delay = 1.0
            while self.epoch == epoch and gained:
                try:
                    missing = await self._fetch_shards(client, gained, previous)
                except (ChainUnavailable, ChainError) as exc:
                    log.warning("%s: shard sync: %s", self.config.name, exc)
                    missing = -1
                if missing == 0:
                    break
                await trio.sleep(delay)
                delay = min(10.0, delay * 2)
            if self.epoch != epoch:
                return  # another epoch began meanwhile
            self.in_transfer = frozenset()
            while self.epoch == epoch and self.store.meta("attested", -1) < epoch:
                try:
                    await self._attest(epoch)
                except (ChainUnavailable, ChainError) as exc:
                    log.warning("%s: epoch_sync_done: %s", self.config.name, exc)
                    await trio.sleep(1.0)
        finally:
            await client.aclose()

    async def _fetch_shards(
        self, client: NodeClient, gained: frozenset[int], previous: Committee
    ) -> int:
        """One pass over the live blobs; the number of certified blobs still incomplete."""
        params = self._params()
        blobs = await trio.to_thread.run_sync(self.store.live_blobs, self.epoch)
        limit = trio.CapacityLimiter(4)
        incomplete = 0

        async def one(blob: BlobId, certified: bool) -> None:
            nonlocal incomplete
            async with limit:
                pairs = [params.pair_for_shard(blob.raw, s) for s in sorted(gained)]
                missing = await trio.to_thread.run_sync(self.store.missing_pairs, blob, pairs)
                if not missing:
                    return
                try:
                    done = await self._fetch_pairs(client, blob, missing, previous)
                except (TransportError, NodeError, codec.CodecError, ShardNotAssigned) as exc:
                    log.info("%s: shard sync of %s: %s", self.config.name, blob, exc)
                    done = False
                if not done and certified:
                    incomplete += 1

        async with trio.open_nursery() as nursery:
            for blob, certified in blobs:
                nursery.start_soon(one, blob, certified)
        if blobs:
            await trio.to_thread.run_sync(self.store.sync_all)
        return incomplete

    async def _fetch_pairs(
        self, client: NodeClient, blob: BlobId, pairs: list[int], previous: Committee
    ) -> bool:
        """Both slivers of `pairs` of `blob`, from the previous holders, verified and stored;
        False if some could not be had."""
        params = self._params()
        meta = await self._verified_metadata(blob)
        if meta is None:
            for node in previous.nodes:
                raw = await client.get_metadata(node, blob)
                if raw is None:
                    continue
                meta = await trio.to_thread.run_sync(
                    codec.verify_metadata, blob, raw, params.n_shards
                )
                await trio.to_thread.run_sync(self.store.put_metadata, blob, raw[32:])
                self._verified[blob.raw] = meta
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
                await trio.to_thread.run_sync(self.store.put_sliver, blob, pair, axis, raw)
        return complete

    async def _recover_pair(
        self, client: NodeClient, meta: codec.VerifiedMetadata, pair: int, previous: Committee
    ) -> dict[Axis, bytes] | None:
        """Pair `pair` rebuilt from k_p verified primary slivers of other nodes: decode the
        blob, encode it again, take the pair (verified against the metadata as any sliver)."""
        params = self._params()
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
                log.info("%s: recovery of %s: %s", self.config.name, blob, exc)
        if len(got) < params.k_p:
            return None
        data = await trio.to_thread.run_sync(codec.decode, got, meta)
        enc = await trio.to_thread.run_sync(codec.encode, data, params.n_shards)
        if enc.blob_id != blob:
            return None
        rebuilt = enc.pair(pair)
        log.info("%s: recovered pair %d of %s from %d slivers", self.config.name, pair, blob,
                 len(got))  # fmt: skip
        return {Axis.PRIMARY: rebuilt.primary.bcs, Axis.SECONDARY: rebuilt.secondary.bcs}

    async def _attest(self, epoch: int) -> None:
        """`epoch_sync_done` for this node: it holds every shard of `epoch`."""
        if not self.node_id:
            return
        signature = self.key.sign(sync_done_message(self.node_id, epoch))
        try:
            await self.chain.epoch_sync_done(self.node_id, epoch, signature)
        except ChainError as exc:
            if "already attested" not in str(exc):
                raise
        await trio.to_thread.run_sync(self.store.set_meta, "attested", epoch)
        self.in_transfer = frozenset()
        log.info("%s: holds its shards of epoch %d (epoch_sync_done)", self.config.name, epoch)

    async def _drop_foreign_slivers(self) -> None:
        """Remove the slivers of shards this node no longer holds (the epoch change is over:
        their new holders have them)."""
        params = self.params
        if params is None:
            return
        shards = self.shards

        def run() -> int:
            return self.store.remove_pairs_where(
                lambda blob, pair: params.shard_for_pair(blob.raw, pair) not in shards
            )

        removed = await trio.to_thread.run_sync(run)
        if removed:
            log.info("%s: removed %d slivers of shards it gave away", self.config.name, removed)

    async def _registrations(self, blob: BlobId) -> list[Registration]:
        """Valid registrations; an unknown blob triggers one catch-up with the chain."""
        regs = self._regs.get(blob.raw)
        if regs is not None:
            return regs
        regs = self.store.registrations(blob, self.epoch)
        if not regs:
            await self.sync()
            regs = self.store.registrations(blob, self.epoch)
        if regs:
            self._regs[blob.raw] = regs
        return regs

    async def _current_epoch(self) -> int:
        """The epoch to sign for. While the checkpoint stream is up a new epoch arrives as an
        event (and catching up to a blob's registration applies every event before it);
        without the stream, re-read from the chain if the last look is over a second old."""
        if not self._following and time.monotonic() - self._epoch_checked > 1.0:
            await self._check_epoch()
        return self.epoch

    # -- limits and checks ------------------------------------------------------------------

    def _params(self) -> EncodingParams:
        if self.params is None:
            raise http.unavailable()
        return self.params

    def _metadata_limit(self) -> int:
        n = self._params().n_shards
        return 10 + len(uleb128(n)) + 66 * n

    def _sliver_limit(self) -> int:
        params = self._params()
        largest = params.primary_sliver_len(params.max_blob_size)
        return largest + len(uleb128(largest)) + 4 + 128

    def _pair(self, text: str) -> int:
        n = self._params().n_shards
        try:
            pair = int(text)
        except ValueError:
            raise ApiError("INVALID_ARGUMENT", "INVALID_INDEX", f"{text!r} is no index") from None
        if not 0 <= pair < n:
            raise ApiError(
                "INVALID_ARGUMENT", "INDEX_OUT_OF_RANGE", f"requires 0 <= index ({pair}) < {n}"
            )
        return pair

    def _check_shard(self, blob: BlobId, pair: int, *, reading: bool = False) -> None:
        """The pair's shard is this node's; for reads also one it gave away in this epoch's
        change, which it serves until the change is over."""
        shard = self._params().shard_for_pair(blob.raw, pair)
        if shard not in self.shards and not (reading and shard in self.retained):
            raise ApiError(
                "FAILED_PRECONDITION",
                "SHARD_NOT_ASSIGNED",
                f"shard {shard} is not assigned to this node in epoch {self.epoch}",
            )

    async def _verified_metadata(self, blob: BlobId) -> codec.VerifiedMetadata | None:
        cached = self._verified.get(blob.raw)
        if cached is not None:
            return cached
        raw = await self._read(self.store.get_metadata, blob)
        if raw is None:
            return None
        meta = await trio.to_thread.run_sync(
            codec.verify_metadata, blob, raw, self._params().n_shards
        )
        self._verified[blob.raw] = meta
        return meta

    async def _read(self, fn: Any, *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except CorruptRecord as exc:
            log.error("%s", exc)
            return None

    # -- handlers ---------------------------------------------------------------------------

    async def health(self, req: Request) -> Response:
        """`ServiceHealthInfo` as a Walrus node serves it (walrus
        `crates/walrus-storage-node-client/src/api.rs`; `?detailed=true` adds `shardDetail`,
        `routes.rs` `HealthInfoQuery`). The devnet has no shard transfer or recovery: owned
        shards are `ready`. Events are applied a checkpoint at a time, so `eventProgress`
        counts checkpoints (`persisted` is the cursor, nothing is pending) and
        `highestFinishedEventIndex` is null. Cheap on purpose: the launcher polls it while
        starting; disk use is `devnet status`'s."""
        uptime = time.monotonic() - self.started
        cursor = self.store.meta("cursor")
        owned = sorted(self.shards)
        moving = self.in_transfer
        info: dict[str, Any] = {
            "uptime": {"secs": int(uptime), "nanos": int(uptime % 1 * 1e9)},
            "epoch": self.epoch,
            "publicKey": _b64(self.key.public_key),
            "nodeStatus": "Active" if self.shards else "Standby",
            "eventProgress": {
                "persisted": cursor,
                "pending": 0,
                "highestFinishedEventIndex": None,
            },
            "shardSummary": {
                "owned": len(owned),
                "ownedShardStatus": {
                    "unknown": 0,
                    "ready": len(owned) - len(moving),
                    "inTransfer": len(moving),
                    "inRecovery": 0,
                },
                "readOnly": len(self.retained),
            },
        }
        if req.query.get("detailed", ["false"])[-1].lower() == "true":
            info["shardDetail"] = {
                "owned": [
                    {"shard": s, "status": "inTransfer" if s in moving else "ready"} for s in owned
                ],
                "other": [{"shard": s, "status": "readOnly"} for s in sorted(self.retained)],
            }
        if cursor is not None:
            info["latestCheckpointSequenceNumber"] = cursor
        return http.success(200, info)

    async def put_metadata(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        body = await req.body(self._metadata_limit())
        if not await self._registrations(blob):
            raise http.not_registered()
        if self.store.has_metadata(blob):
            return http.success(200, "metadata already stored")
        try:
            meta = await trio.to_thread.run_sync(
                codec.verify_metadata, blob, body, self._params().n_shards
            )
        except codec.CodecError as exc:
            raise ApiError(
                "INVALID_ARGUMENT",
                "INVALID_METADATA",
                f"the provided metadata failed to verify: {exc}",
            ) from None
        await trio.to_thread.run_sync(self.store.put_metadata, blob, body)
        self._verified[blob.raw] = meta
        return http.success(201, "metadata successfully stored")

    async def get_metadata(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        raw = await self._read(self.store.get_metadata, blob)
        if raw is None:
            raise ApiError(
                "NOT_FOUND", "METADATA_NOT_FOUND", "the requested metadata is unavailable"
            )
        return http.binary(blob.raw + raw)

    async def metadata_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        return http.success(200, "stored" if self.store.has_metadata(blob) else "nonexistent")

    async def put_sliver(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        pair = self._pair(req.params["pair"])
        axis = _parse_axis(req.params["axis"])
        self._check_shard(blob, pair)
        body = await req.body(self._sliver_limit())
        if not await self._registrations(blob):
            raise http.not_registered()
        meta = await self._verified_metadata(blob)
        if meta is None:
            raise ApiError(
                "FAILED_PRECONDITION", "METADATA_NOT_FOUND", "blob metadata is required but missing"
            )
        try:
            sliver = Sliver(body, axis)
        except codec.CodecError as exc:
            raise ApiError(
                "INVALID_ARGUMENT", "INVALID_SLIVER", f"malformed sliver: {exc}"
            ) from None
        params = self._params()
        expected = pair if axis is Axis.PRIMARY else params.secondary_index(pair)
        if sliver.index != expected:
            raise ApiError(
                "INVALID_ARGUMENT",
                "SLIVER_INDEX_MISMATCH",
                f"sliver index {sliver.index} is inconsistent with sliver pair index {pair}",
            )

        def verify_and_store() -> bool:
            # one trip to a worker thread per sliver: the hops cost as much as the work
            if self.store.has_sliver(blob, pair, axis):
                return False
            codec.verify_sliver(sliver, meta)
            self.store.put_sliver(blob, pair, axis, body)
            return True

        try:
            stored = await trio.to_thread.run_sync(verify_and_store)
        except codec.CodecError as exc:
            raise ApiError(
                "INVALID_ARGUMENT", "INVALID_SLIVER", f"the provided sliver is invalid: {exc}"
            ) from None
        if not stored:
            return http.success(200, "sliver already stored")
        return http.success(201, "sliver successfully stored")

    async def get_sliver(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        pair = self._pair(req.params["pair"])
        axis = _parse_axis(req.params["axis"])
        self._check_shard(blob, pair, reading=True)
        raw = await self._read(self.store.get_sliver, blob, pair, axis)
        if raw is None:
            raise ApiError("NOT_FOUND", "SLIVER_NOT_FOUND", "the requested sliver is unavailable")
        if self.faults.get().corrupt:
            raw = _corrupt(raw)
        return http.binary(raw)

    async def sliver_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        pair = self._pair(req.params["pair"])
        axis = _parse_axis(req.params["axis"])
        self._check_shard(blob, pair, reading=True)
        stored = self.store.has_sliver(blob, pair, axis)
        return http.success(200, "stored" if stored else "nonexistent")

    async def _confirm(self, blob: BlobId, object_id: str | None) -> Response:
        regs = await self._registrations(blob)
        if object_id is None:
            ok = any(not r.deletable for r in regs)
        else:
            ok = any(r.deletable and _same_id(r.object_id, object_id) for r in regs)
        if not ok:
            raise http.not_registered()
        params = self._params()
        pairs = [params.pair_for_shard(blob.raw, s) for s in sorted(self.shards)]
        missing = await trio.to_thread.run_sync(self.store.missing_pairs, blob, pairs)
        if missing or not self.store.has_metadata(blob):
            raise ApiError(
                "FAILED_PRECONDITION",
                "MISSING_SLIVERS",
                f"the required slivers are not all stored ({len(missing)} of {len(pairs)} "
                "pairs missing)",
            )
        await trio.to_thread.run_sync(self.store.sync_blob, blob)
        epoch = await self._current_epoch()
        if object_id is None:
            message = bytes(fc.bls_confirmation_bytes(epoch, blob.raw))
        else:
            oid = bytes.fromhex(object_id.removeprefix("0x").rjust(64, "0"))
            message = bytes(fc.bls_confirmation_bytes(epoch, blob.raw, oid))
        signature = self.key.sign(message)
        return http.success(
            200, {"signed": {"serializedMessage": _b64(message), "signature": _b64(signature)}}
        )

    async def confirm_permanent(self, req: Request) -> Response:
        return await self._confirm(_parse_blob_id(req.params["blob_id"]), None)

    async def confirm_deletable(self, req: Request) -> Response:
        object_id = req.params["object_id"]
        try:
            int(object_id.removeprefix("0x"), 16)
        except ValueError:
            raise ApiError(
                "INVALID_ARGUMENT", "INVALID_OBJECT_ID", f"{object_id!r} is no object ID"
            ) from None
        return await self._confirm(_parse_blob_id(req.params["blob_id"]), object_id)

    async def request_counts(self, req: Request) -> Response:
        """Devnet only: requests answered per handler since the node started (tests count the
        uploads a resumed store sends)."""
        return http.success(200, dict(self.requests))

    async def blob_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        regs = await self._registrations(blob)
        invalid = self.store.invalid_event(blob)
        if invalid is not None:  # `BlobStatus::Invalid { event }`: it wins over the rest
            event = {"txDigest": invalid[0], "eventSeq": str(invalid[1])}
            return http.success(200, {"invalid": {"event": event}})
        if not regs:
            return http.success(200, "nonexistent")
        deletable = [r for r in regs if r.deletable]
        counts = {
            "count_deletable_total": len(deletable),
            "count_deletable_certified": sum(r.certified_epoch is not None for r in deletable),
        }
        certified_epochs = [r.certified_epoch for r in regs if r.certified_epoch is not None]
        initial = min(certified_epochs) if certified_epochs else None
        permanent = [r for r in regs if not r.deletable]
        if permanent:
            best = max(permanent, key=lambda r: (r.certified_epoch is not None, r.end_epoch))
            status: dict[str, Any] = {
                "permanent": {
                    "endEpoch": best.end_epoch,
                    "isCertified": best.certified_epoch is not None,
                    "statusEvent": _event_id(best),
                    "deletableCounts": counts,
                    "initialCertifiedEpoch": initial,
                }
            }
        else:
            status = {"deletable": {"initialCertifiedEpoch": initial, "deletableCounts": counts}}
        return http.success(200, status)

    # -- HTTP -------------------------------------------------------------------------------

    async def handle(self, req: Request) -> Response:
        """Answer one request (walrusfs/devnet/server.py calls it): test switches, routing, a
        chain outage as 503. Refusals (`ApiError`) and bugs (500) become responses in the
        server, for every handler alike."""
        faults = self.faults.get()
        try:
            if faults.delay_ms:
                await trio.sleep(faults.delay_ms / 1000)
            if faults.refuse:
                raise http.unavailable()
            handler, req.params = self.router.match(req.method, req.path)
            self.requests[f"{req.method} {handler.__name__}"] += 1
            return await handler(req)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("%s %s: chain: %s", req.method, req.path, exc)
            raise http.unavailable() from None


def quiet_pysui() -> None:
    """pysui logs every RPC at INFO and every NOT_FOUND with a traceback at ERROR; a node
    polling the chain would fill its log. Our own errors are logged where they are handled."""
    logging.getLogger("pgrpc_client").setLevel(logging.CRITICAL)


def _same_id(a: str, b: str) -> bool:
    return (
        a.removeprefix("0x").rjust(64, "0").lower() == b.removeprefix("0x").rjust(64, "0").lower()
    )


def _corrupt(sliver_bcs: bytes) -> bytes:
    """Flip the first byte of every symbol: same length and BCS shape, wrong content."""
    reader = Reader(sliver_bcs)
    length = reader.uleb128()
    start = reader.pos
    reader.take(length)
    symbol_size = reader.u16()
    out = bytearray(sliver_bcs)
    for i in range(start, start + length, symbol_size):
        out[i] ^= 0xFF
    return bytes(out)


async def serve(directories: list[Path], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the node identities in `directories` (one port, key and disk each) until cancelled
    or SIGTERM/SIGINT: one chain client and one checkpoint subscription for all of them
    (`SharedChain`), each identity catching up at every checkpoint."""
    configs = [NodeConfig.load(d) for d in directories]
    shared = SharedChain(WalrusChain(configs[0].profile(), None))
    nodes = [
        StorageNode(d, c, load_bls_key(d), shared)
        for d, c in zip(directories, configs, strict=True)
    ]
    try:
        async with trio.open_nursery() as nursery:
            for node in nodes:
                node._tasks = nursery
            async with trio.open_nursery() as first:
                for node in nodes:
                    first.start_soon(node.first_sync)
            for node in nodes:
                config = node.config
                await nursery.start(server.serve, node.handle, config.host, config.port)
                log.info(
                    "%s serving on http://%s:%d, shards %s",
                    config.name, config.host, config.port, sorted(node.shards),
                )  # fmt: skip
            nursery.start_soon(_follow, nodes, shared)
            nursery.start_soon(_resync, nodes)
            nursery.start_soon(_watch_directories, directories)
            task_status.started(nodes[0] if len(nodes) == 1 else nodes)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        for node in nodes:
            node.store.close()
        await shared.close()


async def _follow(nodes: list[StorageNode], shared: SharedChain) -> None:
    """Every identity catches up at every frame of the (one) checkpoint stream. A chain outage
    is logged and retried, never fatal."""
    limit = trio.CapacityLimiter(16)

    async def one(node: StorageNode) -> None:
        async with limit:
            try:
                await node.sync()
            except (ChainUnavailable, ChainError) as exc:
                log.warning("%s: catching up: %s", node.config.name, exc)

    while True:
        try:
            async for _ in shared.checkpoint_stream():
                for node in nodes:
                    node._following = True
                async with trio.open_nursery() as nursery:
                    for node in nodes:
                        nursery.start_soon(one, node)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("checkpoint stream: %s (subscribing again)", exc)
        finally:
            for node in nodes:
                node._following = False
        await trio.sleep(1.0)


async def _resync(nodes: list[StorageNode]) -> None:
    """A full catch-up (the epoch included) every `resync_interval`: a safety net, not the way
    nodes learn of changes."""
    while True:
        await trio.sleep(nodes[0].config.resync_interval)
        for node in nodes:
            await node.resync()


async def _watch_directories(directories: list[Path]) -> None:
    """Exit when the devnet is destroyed under us (or a test's temp dir removed): an orphan
    must not keep ports and a chain subscription forever."""
    while all((d / NODE_CONFIG).exists() for d in directories):
        await trio.sleep(1.0)
    log.error("a node directory of %s vanished: exiting", directories[0].parent)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="walrusfs devnet storage node(s)")
    parser.add_argument("directories", type=Path, nargs="+", help="one per node identity")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_pysui()
    trio.run(serve, args.directories)


if __name__ == "__main__":
    main()
