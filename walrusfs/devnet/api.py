"""The Walrus storage-node REST API of one devnet node identity.

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

Registration and the epoch come from the chain follower (`follower.py`); the test switches
(`faults.py`) are applied in `NodeApi.handle` before routing.

Confirmations are signed with the node's BLS key (min_pk, basic scheme) over the exact message
`certify_blob` verifies: BCS `Confirmation` = intent [1, 0, 3] || epoch u32 LE || blob ID ||
blob type (0 permanent | 1 || object ID).

Concurrency: one trio loop per node process. Disk writes, fsyncs and sliver verification run
in worker threads (`trio.to_thread`); the index is SQLite behind a lock. The loop only routes.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from typing import Any

import pysui_fastcrypto as fc
import trio

import codec
from chain.errors import ChainError, ChainUnavailable
from codec.bcs import uleb128
from codec.blob_id import BlobId
from codec.sliver import Axis, Sliver
from walrusfs.devnet import http
from walrusfs.devnet.faults import corrupt_sliver
from walrusfs.devnet.follower import ChainFollower
from walrusfs.devnet.http import ApiError, Request, Response
from walrusfs.devnet.node_state import NodeParts, read_record
from walrusfs.devnet.storage import Registration

log = logging.getLogger("walrusfs.devnet.node")


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


def _same_id(a: str, b: str) -> bool:
    return (
        a.removeprefix("0x").rjust(64, "0").lower() == b.removeprefix("0x").rjust(64, "0").lower()
    )


class NodeApi:
    """The routes of a Walrus storage node, answered from one identity's disk and chain
    view. Each handler refuses with the `ApiError` the module docstring's table names."""

    def __init__(self, parts: NodeParts, follower: ChainFollower) -> None:
        self.parts = parts
        self.follower = follower
        self.started = time.monotonic()
        self.requests: Counter[str] = Counter()  # answered requests by route (devnet stats)
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

    # -- limits and checks ------------------------------------------------------------------

    def _metadata_limit(self) -> int:
        n = self.parts.view.require_params().n_shards
        return 10 + len(uleb128(n)) + 66 * n

    def _sliver_limit(self) -> int:
        params = self.parts.view.require_params()
        largest = params.primary_sliver_len(params.max_blob_size)
        return largest + len(uleb128(largest)) + 4 + 128

    def _pair(self, text: str) -> int:
        n = self.parts.view.require_params().n_shards
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
        view = self.parts.view
        shard = view.require_params().shard_for_pair(blob.raw, pair)
        if shard not in view.shards and not (reading and shard in view.retained):
            raise ApiError(
                "FAILED_PRECONDITION",
                "SHARD_NOT_ASSIGNED",
                f"shard {shard} is not assigned to this node in epoch {view.epoch}",
            )

    # -- handlers ---------------------------------------------------------------------------

    async def health(self, req: Request) -> Response:
        """`ServiceHealthInfo` as a Walrus node serves it (walrus
        `crates/walrus-storage-node-client/src/api.rs`; `?detailed=true` adds `shardDetail`,
        `routes.rs` `HealthInfoQuery`). The devnet has no shard transfer or recovery: owned
        shards are `ready`. Events are applied a checkpoint at a time, so `eventProgress`
        counts checkpoints (`persisted` is the cursor, nothing is pending) and
        `highestFinishedEventIndex` is null. Cheap on purpose: the launcher polls it while
        starting; disk use is `devnet status`'s."""
        view = self.parts.view
        uptime = time.monotonic() - self.started
        cursor = self.parts.store.meta("cursor")
        owned = sorted(view.shards)
        moving = view.in_transfer
        info: dict[str, Any] = {
            "uptime": {"secs": int(uptime), "nanos": int(uptime % 1 * 1e9)},
            "epoch": view.epoch,
            "publicKey": _b64(self.parts.key.public_key),
            "nodeStatus": "Active" if view.shards else "Standby",
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
                "readOnly": len(view.retained),
            },
        }
        if req.query.get("detailed", ["false"])[-1].lower() == "true":
            info["shardDetail"] = {
                "owned": [
                    {"shard": s, "status": "inTransfer" if s in moving else "ready"} for s in owned
                ],
                "other": [{"shard": s, "status": "readOnly"} for s in sorted(view.retained)],
            }
        if cursor is not None:
            info["latestCheckpointSequenceNumber"] = cursor
        return http.success(200, info)

    async def put_metadata(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        body = await req.body(self._metadata_limit())
        if not await self.follower.registrations(blob):
            raise http.not_registered()
        store = self.parts.store
        if store.has_metadata(blob):
            return http.success(200, "metadata already stored")
        try:
            meta = await trio.to_thread.run_sync(
                codec.verify_metadata, blob, body, self.parts.view.require_params().n_shards
            )
        except codec.CodecError as exc:
            raise ApiError(
                "INVALID_ARGUMENT",
                "INVALID_METADATA",
                f"the provided metadata failed to verify: {exc}",
            ) from None
        await trio.to_thread.run_sync(store.put_metadata, blob, body)
        self.parts.metadata.put(blob, meta)
        return http.success(201, "metadata successfully stored")

    async def get_metadata(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        raw = await read_record(self.parts.store.get_metadata, blob)
        if raw is None:
            raise ApiError(
                "NOT_FOUND", "METADATA_NOT_FOUND", "the requested metadata is unavailable"
            )
        return http.binary(blob.raw + raw)

    async def metadata_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        stored = self.parts.store.has_metadata(blob)
        return http.success(200, "stored" if stored else "nonexistent")

    async def put_sliver(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        self.requests[f"PUT put_sliver {blob}"] += 1  # per blob too: what a resume sent again
        pair = self._pair(req.params["pair"])
        axis = _parse_axis(req.params["axis"])
        self._check_shard(blob, pair)
        body = await req.body(self._sliver_limit())
        if not await self.follower.registrations(blob):
            raise http.not_registered()
        params = self.parts.view.require_params()
        meta = await self.parts.metadata.get(blob, params.n_shards)
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
        expected = pair if axis is Axis.PRIMARY else params.secondary_index(pair)
        if sliver.index != expected:
            raise ApiError(
                "INVALID_ARGUMENT",
                "SLIVER_INDEX_MISMATCH",
                f"sliver index {sliver.index} is inconsistent with sliver pair index {pair}",
            )
        store = self.parts.store

        def verify_and_store() -> bool:
            # one trip to a worker thread per sliver: the hops cost as much as the work
            if store.has_sliver(blob, pair, axis):
                return False
            codec.verify_sliver(sliver, meta)
            store.put_sliver(blob, pair, axis, body)
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
        raw = await read_record(self.parts.store.get_sliver, blob, pair, axis)
        if raw is None:
            raise ApiError("NOT_FOUND", "SLIVER_NOT_FOUND", "the requested sliver is unavailable")
        if self.parts.faults.get().corrupt:
            raw = corrupt_sliver(raw)
        return http.binary(raw)

    async def sliver_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        pair = self._pair(req.params["pair"])
        axis = _parse_axis(req.params["axis"])
        self._check_shard(blob, pair, reading=True)
        stored = self.parts.store.has_sliver(blob, pair, axis)
        return http.success(200, "stored" if stored else "nonexistent")

    async def _confirm(self, blob: BlobId, object_id: str | None) -> Response:
        """A signed confirmation of `blob` (permanent, or the deletable Blob object
        `object_id`), once every pair of this node's shards is stored and flushed.

        Raises:
            ApiError: NOT_REGISTERED, or MISSING_SLIVERS.
        """
        regs = await self.follower.registrations(blob)
        if object_id is None:
            ok = any(not r.deletable for r in regs)
        else:
            ok = any(r.deletable and _same_id(r.object_id, object_id) for r in regs)
        if not ok:
            raise http.not_registered()
        view, store = self.parts.view, self.parts.store
        params = view.require_params()
        pairs = [params.pair_for_shard(blob.raw, s) for s in sorted(view.shards)]
        missing = await trio.to_thread.run_sync(store.missing_pairs, blob, pairs)
        if missing or not store.has_metadata(blob):
            raise ApiError(
                "FAILED_PRECONDITION",
                "MISSING_SLIVERS",
                f"the required slivers are not all stored ({len(missing)} of {len(pairs)} "
                "pairs missing)",
            )
        await trio.to_thread.run_sync(store.sync_blob, blob)
        epoch = await self.follower.current_epoch()
        if object_id is None:
            message = bytes(fc.bls_confirmation_bytes(epoch, blob.raw))
        else:
            oid = bytes.fromhex(object_id.removeprefix("0x").rjust(64, "0"))
            message = bytes(fc.bls_confirmation_bytes(epoch, blob.raw, oid))
        signature = self.parts.key.sign(message)
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
        """Devnet only: requests answered per handler since the node started, and sliver
        uploads per blob ("PUT put_sliver <blob ID>"): tests count the uploads a resumed
        store sends."""
        return http.success(200, dict(self.requests))

    async def blob_status(self, req: Request) -> Response:
        blob = _parse_blob_id(req.params["blob_id"])
        regs = await self.follower.registrations(blob)
        invalid = self.parts.store.invalid_event(blob)
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
        server, for every handler alike.

        Raises:
            ApiError: the handler's refusal, a route that does not exist, or UNAVAILABLE
                (503) when the `refuse` switch is on or the chain cannot be read.
        """
        faults = self.parts.faults.get()
        devnet_only = req.path.startswith("/devnet/")  # the test instrument's, never slowed
        try:
            if faults.delay_ms and not devnet_only:
                await trio.sleep(faults.delay_ms / 1000)
            if faults.refuse and not devnet_only:
                raise http.unavailable()
            handler, req.params = self.router.match(req.method, req.path)
            self.requests[f"{req.method} {handler.__name__}"] += 1
            return await handler(req)
        except (ChainUnavailable, ChainError) as exc:
            log.warning("%s %s: chain: %s", req.method, req.path, exc)
            raise http.unavailable() from None
