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
from codec.bcs import Reader, uleb128
from codec.blob_id import BlobId
from codec.params import EncodingParams
from codec.sliver import Axis, Sliver
from walrusfs.devnet import http, server
from walrusfs.devnet.http import ApiError, Request, Response
from walrusfs.devnet.storage import CorruptRecord, NodeStore, Registration

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
        self, directory: Path, config: NodeConfig, key: BlsKeypair, chain: WalrusChain
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

    # -- chain ------------------------------------------------------------------------------

    async def refresh_committee(self, info: SystemInfo) -> None:
        """Epoch, shard count and this node's shards, from System (`info`) and Staking."""
        members = await self.chain.committee()
        mine = [m for m in members if m.public_key == self.key.public_key_uncompressed]
        self.type_package = info.type_package
        if self.n_shards != info.n_shards:
            self.n_shards = info.n_shards
            self.params = EncodingParams(info.n_shards)
        self.shards = frozenset(mine[0].shards) if mine else frozenset()
        if not mine:
            log.warning("%s is not in the committee of epoch %d", self.config.name, info.epoch)
        await self._set_epoch(info.epoch)

    async def _set_epoch(self, epoch: int) -> None:
        self._epoch_checked = time.monotonic()
        if epoch != self.epoch or self.store.meta("epoch", -1) != epoch:
            log.info("epoch %d", epoch)
            self.epoch = epoch
            await trio.to_thread.run_sync(self.store.set_epoch, epoch)
            self._regs.clear()
            await self.collect_garbage()

    async def _check_epoch(self) -> None:
        """Re-read the epoch; on a new one (or at start) reload the committee and collect."""
        info = await self.chain.system_info()
        if info.epoch != self.epoch or self.params is None:
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
                await self._check_epoch()
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
        await trio.to_thread.run_sync(
            self.store.apply_events, cursor, registered, certified, deleted
        )
        self._regs.clear()
        return bool(deleted), any(ev.name == "EpochChangeStart" for ev in events)

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

    async def follow(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the chain forever: a first catch-up (retried until the chain answers) before
        the node serves, then one at every frame of the checkpoint stream, and a full one every
        `resync_interval`. A chain outage is logged and retried, never fatal."""
        while True:
            try:
                await self.sync(epoch=True)
                break
            except (ChainUnavailable, ChainError) as exc:
                log.warning("following the chain: %s", exc)
                await trio.sleep(1.0)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._resync)
            nursery.start_soon(self._watch_directory)
            while True:
                try:
                    async for _ in self.chain.checkpoint_stream():
                        self._following = True
                        await self.sync()
                except (ChainUnavailable, ChainError) as exc:
                    log.warning("checkpoint stream: %s (subscribing again)", exc)
                finally:
                    self._following = False
                await trio.sleep(1.0)

    async def _resync(self) -> None:
        while True:
            await trio.sleep(self.config.resync_interval)
            try:
                await self.sync(epoch=True)
            except (ChainUnavailable, ChainError) as exc:
                log.warning("following the chain: %s", exc)

    async def _watch_directory(self) -> None:
        """Exit when the devnet is destroyed under us (or a test's temp dir removed): an orphan
        must not keep a port and a chain subscription forever."""
        while (self.directory / NODE_CONFIG).exists():
            await trio.sleep(1.0)
        log.error("%s vanished: exiting", self.directory / NODE_CONFIG)
        os.kill(os.getpid(), signal.SIGTERM)

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

    def _check_shard(self, blob: BlobId, pair: int) -> None:
        shard = self._params().shard_for_pair(blob.raw, pair)
        if shard not in self.shards:
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
                    "ready": len(owned),
                    "inTransfer": 0,
                    "inRecovery": 0,
                },
                "readOnly": 0,
            },
        }
        if req.query.get("detailed", ["false"])[-1].lower() == "true":
            info["shardDetail"] = {
                "owned": [{"shard": s, "status": "ready"} for s in owned],
                "other": [],
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
        self._check_shard(blob, pair)
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
        self._check_shard(blob, pair)
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

    async def blob_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        regs = await self._registrations(blob)
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


async def serve(directory: Path, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the node in `directory` until cancelled or SIGTERM/SIGINT."""
    config = NodeConfig.load(directory)
    key = load_bls_key(directory)
    chain = WalrusChain(config.profile(), None)
    node = StorageNode(directory, config, key, chain)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.follow)
            await nursery.start(server.serve, node.handle, config.host, config.port)
            log.info(
                "%s serving on http://%s:%d, shards %s",
                config.name,
                config.host,
                config.port,
                sorted(node.shards),
            )
            task_status.started(node)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        node.store.close()
        await chain.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="walrusfs devnet storage node")
    parser.add_argument("directory", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_pysui()
    trio.run(serve, args.directory)


if __name__ == "__main__":
    main()
