"""Store bytes as a certified Walrus blob and read them back: what `walrus store`/`read` do.

Write: encode in a worker thread -> reuse an owned certified blob with the same ID (extend it
if it ends too early) or register (reusing or reserving Storage, attributes in the same
transaction; WAL and SUI are checked before anything is signed or uploaded) -> per node, PUT
the metadata and then both slivers of each of its shards, `upload_concurrency` requests in
flight overall -> as each node finishes, GET its confirmation and verify it (signature against
the node's key, message equal to the expected one) -> once the signers' shards reach
3w >= 2n+1, give the other nodes a short grace period (so the blob lands on as many nodes as
possible), aggregate, certify.

A registration is paid once: a store that fails after registering keeps the Blob object
(`unfinished`), and the next store of the same blob ID and deletability continues it (the
same object and Storage, re-read from the chain: uploaded again, certified; or already
certified by an attempt whose answer was lost) instead of registering and paying again.
After a 10-minute node outage, each retry had registered a new Blob: 13 never certified
beside 12 certified. What is never retried is given back with `abandon` (deleted: its
Storage returns to the wallet, where the next registration reuses it).

Read: metadata from the cache or the first node whose copy verifies against the blob ID ->
byte ranges from just the systematic primary slivers (rows) that hold them; a whole blob from
the k_p systematic rows if they all arrive (no decoding), otherwise from any k_p verified
primary slivers, decoded. Nodes are tried fastest first (a moving average of their answer
times); a node that serves a sliver failing verification is dropped for the rest of that read
and named in the log. Every sliver fetched is verified before use and cached on disk; a cache
hit makes no request.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pysui_fastcrypto as fc
import trio
from cachetools import LRUCache

import codec
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from chain import errors as chain_errors
from chain import move_types as mt
from chain.bls import aggregate, aggregate_verify
from chain.client import CostEstimate, WalrusChain
from codec.sliver import Axis, Sliver
from walrusfs.store.errors import (
    BlobInvalid,
    BlobNotFound,
    BlobUnavailable,
    NodeError,
    NotEnoughConfirmations,
)
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import ActiveCommittees, BlobStatus, Committee, NodeClient, StorageNode
from walrusfs.store.retry import is_temporary, retry

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
FAILURE_PENALTY = 30.0  # seconds of "latency" recorded for a node that failed


@dataclass(frozen=True)
class StoreResult:
    blob_id: codec.BlobId
    object_id: str
    size: int
    encoded_size: int
    end_epoch: int
    deletable: bool
    cost: int  # FROST paid for storage + write (0 when an existing blob was reused)
    reused_storage: bool  # an owned Storage resource was used instead of reserve_space
    already_certified: bool  # an owned certified blob with this ID existed
    extended_by: int = 0  # epochs added to that existing blob
    signers: tuple[str, ...] = ()


@dataclass
class _Registration:
    """A Blob object this store registered and has not certified yet."""

    blob: mt.Blob
    cost: int  # FROST its registration paid, reported by the store that certifies it
    reused_storage: bool


Registered = Callable[[str], None]  # told the Blob object ID an upload writes to


@dataclass(frozen=True)
class QuiltResult:
    quilt: StoreResult
    patches: dict[str, codec.QuiltPatchId]


#: a node that made a read wait past its hedge delay is asked last for this long (it may be
#: overloaded, or its machine stopped; it recovers by answering once asked again)
SLOW_MEMORY = 60.0
#: hedge delay bounds: a request not answered within the delay is sent to another node too
HEDGE_MIN, HEDGE_MAX = 0.25, 2.0
#: a strict read (a byte range's rows, a patch's columns) waits this long past the hedge
#: delay for its own slivers before falling back to a read from any nodes
STRICT_PATIENCE = 2.0
#: after a read timed out, further reads of the same blob fail at once for this long (the
#: kernel asks again right away; the nodes will not have come back in between)
UNAVAILABLE_MEMORY = 5.0
#: slivers shorter than this are PUT without asking the node first whether it has them (the
#: status request costs about what the upload does): walrus-sdk
#: `DEFAULT_SLIVER_STATUS_CHECK_THRESHOLD` (`crates/walrus-sdk/src/config/communication_config.rs`)
SLIVER_STATUS_THRESHOLD = 5_560
#: how long a blob status check may wait for a quorum of shards to answer
STATUS_TIMEOUT = 5.0
#: a blob's status is asked again after this long (an invalid one is kept for the process)
STATUS_MEMORY = 300.0
#: the committees are re-read after this long (and at once while an epoch change is running
#: every COMMITTEE_MEMORY_CHANGING seconds: it ends when nodes have fetched their shards)
COMMITTEE_MEMORY = 60.0
COMMITTEE_MEMORY_CHANGING = 2.0


@dataclass
class _NodeStats:
    """Answer times (exponential moving average) and nodes recently too slow: fast nodes are
    asked first and slow ones last, as the Walrus client orders nodes by latency."""

    latency: dict[str, float] = field(default_factory=dict)
    slow_until: dict[str, float] = field(default_factory=dict)

    def record(self, node: StorageNode, seconds: float) -> None:
        old = self.latency.get(node.name)
        self.latency[node.name] = seconds if old is None else 0.7 * old + 0.3 * seconds
        if seconds < FAILURE_PENALTY:
            self.slow_until.pop(node.name, None)

    def failed(self, node: StorageNode) -> None:
        """A failure counts as a very slow answer: the node is asked last until it recovers."""
        self.record(node, FAILURE_PENALTY)

    def slow(self, node: StorageNode) -> None:
        """The node made a read wait past its hedge delay."""
        self.slow_until[node.name] = time.monotonic() + SLOW_MEMORY

    def is_slow(self, node: StorageNode) -> bool:
        until = self.slow_until.get(node.name)
        return until is not None and until > time.monotonic()

    def order(self, nodes: Sequence[StorageNode]) -> list[StorageNode]:
        return sorted(nodes, key=lambda n: (self.is_slow(n), self.latency.get(n.name, 0.0)))

    def hedge_delay(self) -> float:
        """How long a read request may take before it is sent to another node as well: a few
        times the typical answer time of the nodes that are not slow."""
        known = sorted(v for k, v in self.latency.items() if v < FAILURE_PENALTY)
        typical = known[len(known) // 2] if known else HEDGE_MIN
        return min(HEDGE_MAX, max(HEDGE_MIN, 4 * typical))


class WalrusStore:
    def __init__(
        self,
        chain: WalrusChain,
        *,
        cache: SliverCache | None = None,
        ranges: RangeCache | None = None,
        timeout: float = 30.0,
        read_timeout: float = 20.0,
        upload_concurrency: int = 32,
        read_concurrency: int = 32,
        deadline: float = 60.0,
        grace: float = 2.0,
        encode_concurrency: int = 1,
    ) -> None:
        self.chain = chain
        self.cache = cache
        self.ranges = ranges
        self.nodes = NodeClient(timeout, max(upload_concurrency, read_concurrency))
        self.upload_limit = trio.CapacityLimiter(upload_concurrency)
        # Encodes one at a time: an encode peaks at ~5.5x its blob, its result holds ~4.5x
        # while it uploads. Concurrent stores overlap one encode with the others' uploads,
        # which bounds memory by one peak (not one per store) at little cost in speed: the
        # encoder already uses a core and the uploads the rest.
        self.encode_limit = trio.CapacityLimiter(encode_concurrency)
        self.read_limit = trio.CapacityLimiter(read_concurrency)
        self.deadline = deadline
        self.grace = grace
        self.stats = _NodeStats()
        self.read_timeout = read_timeout
        #: blob ID -> monotonic time until which reads of it fail at once (see _bounded)
        self._unavailable: dict[bytes, float] = {}
        self._committees: ActiveCommittees | None = None
        self._committee_at = 0.0
        #: blob ID -> (monotonic expiry, the status the nodes agreed on; None: no valid one)
        self._status: dict[bytes, tuple[float, BlobStatus | None]] = {}
        self.sliver_status_threshold = SLIVER_STATUS_THRESHOLD
        # Metadata already verified against its blob ID (n=1000: 66 KB and 1000 hashes each).
        self._metadata: LRUCache[bytes, codec.VerifiedMetadata] = LRUCache(maxsize=256)
        #: registered, not yet certified: (blob ID as u256, deletable) -> the registration
        self._unfinished: dict[tuple[int, bool], _Registration] = {}

    @property
    def unfinished(self) -> list[str]:
        """Object IDs of Blobs registered by this store and not certified (an upload failed
        after paying; the retry of the same bytes continues it)."""
        return [r.blob.id for r in self._unfinished.values()]

    async def abandon(self, object_id: str) -> bool:
        """Delete a registration nobody will retry (its bytes changed or were removed; it may
        be one an earlier process made): its Storage returns to the wallet for the next
        registration. False if it was gone already."""
        key = next((k for k, r in self._unfinished.items() if r.blob.id == object_id), None)
        if key is not None:
            del self._unfinished[key]
        try:
            await self.chain.delete_blob(object_id)
        except chain_errors.ObjectNotFound:
            log.info("unfinished blob %s is already gone", object_id)
            return False
        return True

    async def close(self) -> None:
        await self.nodes.aclose()

    async def committee(self, fresh: bool = False) -> Committee:
        """The current committee: the one writes go to."""
        return (await self.committees(fresh)).write_committee()

    async def committees(self, fresh: bool = False) -> ActiveCommittees:
        """Current and previous committee and whether shards are moving between them."""
        known = self._committees
        age = time.monotonic() - self._committee_at
        limit = COMMITTEE_MEMORY
        if known is not None and known.is_change_in_progress():
            limit = COMMITTEE_MEMORY_CHANGING
        if fresh or known is None or age > limit:
            known = self._committees = await ActiveCommittees.load(self.chain)
            self._committee_at = time.monotonic()
        return known

    async def _read_committee(self, blob_id: codec.BlobId) -> Committee:
        """The committee to read `blob_id` from (walrus-sdk `read_committee`): while an epoch
        change moves shards, the previous one for a blob certified before this epoch."""
        committees = await self.committees()
        if not committees.is_change_in_progress():
            return committees.current
        status = await self.blob_status(blob_id, committees)
        return committees.read_committee(status.initial_certified_epoch if status else None)

    async def blob_status(
        self, blob_id: codec.BlobId, committees: ActiveCommittees | None = None
    ) -> BlobStatus | None:
        """The blob's status as the storage nodes report it, verified by weight as walrus-sdk
        `get_verified_blob_status` does (`crates/walrus-sdk/src/node_client.rs`): the nodes of
        the current committee are asked until a quorum of shards answered (or STATUS_TIMEOUT);
        404s of a quorum mean "nonexistent"; otherwise the latest status reported by nodes of
        more than f shards wins. None: no status reached that (nodes down or disagreeing); the
        caller reads anyway, as the SDK does. The SDK also accepts a status from fewer nodes if
        its on-chain event verifies; this client does not look events up and needs f+1.

        Raises BlobInvalid / BlobNotFound for an invalid / nonexistent blob (what the SDK's
        read refuses as `BlobIdDoesNotExist`). Remembered for STATUS_MEMORY seconds."""
        now = time.monotonic()
        known = self._status.get(blob_id.raw)
        if known is not None and known[0] > now:
            return _checked(blob_id, known[1])
        committees = committees or await self.committees()
        committee = committees.write_committee()
        weights: dict[BlobStatus, int] = {}
        not_found = answered = finished = 0
        done = trio.Event()

        async def ask(node: StorageNode) -> None:
            nonlocal not_found, answered, finished
            try:
                async with self.read_limit:
                    status = await self.nodes.blob_status(node, blob_id)
            except (TransportError, NodeError) as exc:
                log.debug("%s: status of %s: %s", node.name, blob_id, exc)
                return
            finally:
                finished += 1
                if finished == len(committee.nodes):
                    done.set()
            if status is None:
                not_found += node.weight
            else:
                # grouped without the end epoch (an extension reaches nodes at different
                # times): kind, certified or not, and since when
                key = BlobStatus(
                    status.kind, status.initial_certified_epoch, None, status.is_certified
                )
                weights[key] = weights.get(key, 0) + node.weight
            answered += node.weight
            if answered >= committee.quorum:
                done.set()

        with trio.move_on_after(STATUS_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for node in self.stats.order(committee.nodes):
                    nursery.start_soon(ask, node)
                await done.wait()
                nursery.cancel_scope.cancel()
        verdict: BlobStatus | None = None
        if not_found >= committee.quorum:
            verdict = BlobStatus("nonexistent")
        else:
            for status in sorted(weights, key=lambda s: s.rank, reverse=True):
                if weights[status] >= committee.validity:
                    verdict = status
                    break
        if verdict is not None or answered >= committee.quorum:
            memory = 3600.0 if verdict is not None and verdict.kind == "invalid" else STATUS_MEMORY
            for key in [k for k, (t, _) in self._status.items() if t <= now]:
                del self._status[key]
            self._status[blob_id.raw] = (now + memory, verdict)
        return _checked(blob_id, verdict)

    # -- write ------------------------------------------------------------------------------

    async def estimate(self, size: int, epochs: int) -> CostEstimate:
        return await self.chain.estimate(size, epochs)

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
    ) -> StoreResult:
        """`reuse=False` skips the search for an owned certified blob with the same ID (a
        listing of all owned blobs): for callers that keep their own index, like the mount.
        `registered` is told the Blob object written to, once it is registered (or an
        unfinished one is continued): a caller that may abandon the upload needs it. `resume`:
        the Blob object an earlier attempt registered for these bytes (perhaps in another
        process), continued if it still is one of this blob, unexpired and uncertified."""
        committee = await self.committee(fresh=True)
        async with self.encode_limit:
            enc = await trio.to_thread.run_sync(codec.encode, data, committee.n_shards)
        return await self._store_encoded(
            enc, committee, epochs, deletable=deletable, attributes=attributes,
            progress=progress, reuse=reuse, registered=registered, resume=resume,
        )  # fmt: skip

    async def _store_encoded(
        self,
        enc: codec.EncodedBlob,
        committee: Committee,
        epochs: int,
        *,
        deletable: bool,
        attributes: dict[str, str] | None,
        progress: Progress | None,
        reuse: bool = True,
        registered: Registered | None = None,
        resume: str | None = None,
    ) -> StoreResult:
        want_end = committee.epoch + epochs
        for blob in await self.chain.blobs() if reuse else []:
            if (
                blob.blob_id == enc.blob_id.to_u256()
                and blob.certified_epoch is not None
                and blob.deletable == deletable
            ):
                extended = 0
                paid = 0
                if blob.storage.end_epoch < want_end:
                    extended = want_end - blob.storage.end_epoch
                    paid, _ = await self.chain.extend_blob(blob.id, extended)
                log.info("%s is already certified as %s; reusing it", enc.blob_id, blob.id)
                return StoreResult(
                    enc.blob_id, blob.id, enc.unencoded_length, enc.encoded_size,
                    max(blob.storage.end_epoch, want_end), deletable, paid, False, True, extended,
                )  # fmt: skip
        key = (enc.blob_id.to_u256(), deletable)
        reg = await self._resumable(key, committee.epoch, resume)
        if reg is None:
            blob, estimate, _ = await self.chain.register_blob(
                enc.blob_id.to_u256(),
                int.from_bytes(enc.root_hash, "little"),
                enc.unencoded_length,
                epochs,
                deletable=deletable,
                attributes=attributes,
            )
            reg = _Registration(blob, estimate.total, estimate.reuse is not None)
            # (an upload of the same bytes running meanwhile keeps its own entry)
            self._unfinished.setdefault(key, reg)
        else:
            log.info("%s: continuing its registration %s", enc.blob_id, reg.blob.id)
        if registered is not None:
            registered(reg.blob.id)
        signers: list[str] = []
        if reg.blob.certified_epoch is None:
            signers = await self._upload_and_certify(enc, committee, reg.blob, progress)
        if self._unfinished.get(key) is reg:
            del self._unfinished[key]
        paid = reg.cost
        end = reg.blob.storage.end_epoch
        extended = 0
        if end < want_end:  # continued after an epoch change: as long as asked
            extended = want_end - end
            paid += (await self.chain.extend_blob(reg.blob.id, extended))[0]
            end = want_end
        return StoreResult(
            enc.blob_id, reg.blob.id, enc.unencoded_length, enc.encoded_size, end, deletable,
            paid, reg.reused_storage, False, extended, tuple(signers),
        )  # fmt: skip

    async def _resumable(
        self, key: tuple[int, bool], epoch: int, resume: str | None
    ) -> _Registration | None:
        """The unfinished registration of this blob, as the chain has it now: None when
        there is none, or it was deleted or expired (then a new one is made)."""
        reg = self._unfinished.get(key)
        if reg is None and resume is None:
            return None
        object_id = reg.blob.id if reg is not None else resume
        assert object_id is not None
        try:
            blob: mt.Blob | None = await self.chain.blob(object_id)
        except chain_errors.ObjectNotFound:
            blob = None
        if blob is None or blob.storage.end_epoch <= epoch or (blob.blob_id, blob.deletable) != key:
            log.info("blob %s is gone, expired or another; registering anew", object_id)
            if reg is not None:
                del self._unfinished[key]
            return None
        if reg is None:  # registered by an earlier process, which paid for it
            reg = self._unfinished[key] = _Registration(blob, 0, False)
        reg.blob = blob  # certified meanwhile, if an attempt's certify landed unanswered
        return reg

    async def _upload_and_certify(
        self,
        enc: codec.EncodedBlob,
        committee: Committee,
        blob: mt.Blob,
        progress: Progress | None,
    ) -> list[str]:
        object_id = blob.id if blob.deletable else None
        expected = _confirmation_message(committee.epoch, enc.blob_id, object_id)
        # Every primary sliver has one size and every secondary one (a pair copies two slivers
        # out of the encoder: do it once per upload, not once more for this total).
        first = enc.pair(0)
        total = committee.n_shards * (len(first.primary.bcs) + len(first.secondary.bcs))
        done = 0
        confirmed: dict[int, tuple[StorageNode, bytes]] = {}
        failures: dict[str, str] = {}
        quorum_reached = trio.Event()

        def weight() -> int:
            return sum(n.weight for n, _ in confirmed.values())

        # Each node may hold only its share of the upload slots: with one pool, the first node's
        # hundreds of slivers queued first took them all, and the nodes (one process each on
        # the devnet, a machine each on Walrus) were served one after the other.
        per_node = max(2, -(-self.upload_limit.total_tokens // len(committee.nodes)))
        node_limits = {n.name: trio.CapacityLimiter(per_node) for n in committee.nodes}

        check_sizes = {
            Axis.PRIMARY: len(first.primary.data) >= self.sliver_status_threshold,
            Axis.SECONDARY: len(first.secondary.data) >= self.sliver_status_threshold,
        }

        async def sliver(node: StorageNode, pair_index: int, axis: Axis, check: bool) -> None:
            nonlocal done
            async with node_limits[node.name], self.upload_limit:
                # A node that had the metadata may have the sliver too (an upload that was cut
                # off, resumed): ask first, unless the sliver is small (walrus-sdk
                # `check_and_store_sliver`, `crates/walrus-sdk/src/node_client/communication/
                # node.rs`). "buffered" counts as stored, as in the SDK (serde's exact
                # lower-case names; the TS SDK compares "Stored"/"Buffered" and never matches).
                stored = check and await retry(self.deadline)(self.nodes.sliver_status)(
                    node, enc.blob_id, pair_index, axis
                ) in ("stored", "buffered")
                # copied out of the encoding only now: all of a node's slivers made up front
                # held a second copy of the encoded blob (288 MiB for 64 MiB at 1000 shards)
                s = enc.sliver(pair_index, axis)
                if not stored:
                    await retry(self.deadline)(self.nodes.put_sliver)(
                        node, enc.blob_id, pair_index, s
                    )
            done += len(s.bcs)
            if progress is not None:
                progress(done, total)

        async def one_node(node: StorageNode) -> None:
            try:
                started = time.monotonic()
                had_metadata = await retry(self.deadline)(self.nodes.put_metadata)(
                    node, enc.blob_id, enc.metadata_bcs
                )
                async with trio.open_nursery() as nursery:
                    for shard in node.shards:
                        pair_index = enc.params.pair_for_shard(enc.blob_id.raw, shard)
                        for axis in (Axis.PRIMARY, Axis.SECONDARY):
                            check = had_metadata and check_sizes[axis]
                            nursery.start_soon(sliver, node, pair_index, axis, check)
                message, signature = await retry(self.deadline)(self.nodes.confirmation)(
                    node, enc.blob_id, object_id
                )
                self.stats.record(node, time.monotonic() - started)
                if message != expected:
                    raise NodeError(node.name, 200, "WRONG_MESSAGE", "signed another message")
                valid = await trio.to_thread.run_sync(
                    aggregate_verify, signature, [node.public_key], message
                )
                if not valid:
                    raise NodeError(node.name, 200, "BAD_SIGNATURE", "signature does not verify")
                confirmed[node.index] = (node, signature)
                if weight() >= committee.quorum:
                    quorum_reached.set()
            except Exception as exc:
                # The sliver uploads run in a nursery, so their failures arrive grouped: the
                # node has failed if every leaf is a node failure; anything else is a bug.
                leaves = _leaves(exc)
                if not all(is_temporary(e) or isinstance(e, NodeError) for e in leaves):
                    raise
                failures[node.name] = str(leaves[0])
                log.warning("storing %s on %s failed: %s", enc.blob_id, node.name, leaves[0])

        began = trio.current_time()
        async with trio.open_nursery() as outer:

            async def uploads() -> None:
                async with trio.open_nursery() as inner:
                    for node in committee.nodes:
                        inner.start_soon(one_node, node)
                outer.cancel_scope.cancel()  # every node answered: stop waiting

            async def cutoff() -> None:
                # Quorum is enough to certify; stragglers get `grace` seconds, or half as long
                # again as quorum took, to finish, so the blob lands on as many nodes as
                # possible without a dead node holding the upload hostage.
                await quorum_reached.wait()
                took = trio.current_time() - began
                await trio.sleep(max(self.grace, 0.5 * took))
                late = [
                    n.name
                    for n in committee.nodes
                    if n.index not in confirmed and n.name not in failures
                ]
                if late:
                    log.warning(
                        "certifying %s without %s: quorum reached, stragglers cut off",
                        enc.blob_id,
                        ", ".join(late),
                    )
                outer.cancel_scope.cancel()

            outer.start_soon(uploads)
            outer.start_soon(cutoff)
        if weight() < committee.quorum:
            raise NotEnoughConfirmations(weight(), committee.quorum, failures)
        signatures = [sig for _, sig in confirmed.values()]
        bitmap = bytearray((max(n.index for n in committee.nodes) + 8) // 8)
        for index in confirmed:
            bitmap[index // 8] |= 1 << (index % 8)
        try:
            await self.chain.certify_blob(blob.id, aggregate(signatures), bytes(bitmap), expected)
        except chain_errors.AlreadyCertified:
            log.info("%s was certified by an earlier attempt", blob.id)
        return [n.name for n, _ in confirmed.values()]

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
    ) -> QuiltResult:
        committee = await self.committee(fresh=True)
        async with self.encode_limit:
            quilt = await trio.to_thread.run_sync(codec.build_quilt, items, committee.n_shards)
            enc = await trio.to_thread.run_sync(codec.encode, quilt.data, committee.n_shards)
        result = await self._store_encoded(
            enc, committee, epochs, deletable=deletable, attributes=attributes,
            progress=progress, reuse=reuse, registered=registered, resume=resume,
        )  # fmt: skip
        patches = {p.identifier: p.patch_id(enc.blob_id) for p in quilt.patches}
        return QuiltResult(result, patches)

    # -- read -------------------------------------------------------------------------------

    async def metadata(
        self, blob_id: codec.BlobId, *, use_cache: bool = True
    ) -> codec.VerifiedMetadata:
        """Verified metadata: memory, then the disk cache (re-verified), then the nodes.

        Reads ask each node once, fastest first, and move on at the first failure: the other
        nodes are the redundancy, so retrying a dead one would only add its timeout."""
        if use_cache and (known := self._metadata.get(blob_id.raw)) is not None:
            return known
        cache = self.cache if use_cache else None
        if cache is not None:
            raw = await trio.to_thread.run_sync(cache.get, str(blob_id), "metadata")
            if raw is not None:
                try:
                    n = codec.parse_metadata_with_id(raw)[1].n_shards
                    meta = await trio.to_thread.run_sync(codec.verify_metadata, blob_id, raw, n)
                    self._metadata[blob_id.raw] = meta
                    return meta
                except codec.CodecError as exc:
                    log.warning("cached metadata of %s is invalid (%s); refetching", blob_id, exc)
        committees = await self.committees()
        committee = await self._read_committee(blob_id)
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

        # One node at a time, fastest first; a node that does not answer within the hedge
        # delay is remembered as slow and the next is asked too (hedged requests, as the
        # Walrus client reads metadata from several nodes): a stopped node costs one delay,
        # not its whole timeout.
        refused: list[BlobInvalid | BlobNotFound] = []

        async def status() -> None:
            # the blob's status, asked alongside its first metadata fetch (the SDK races a
            # status check with every read): an invalid blob is refused even if its slivers
            # can be read; during an epoch change `_read_committee` asked it already
            try:
                await self.blob_status(blob_id, committees)
            except (BlobInvalid, BlobNotFound) as exc:
                refused.append(exc)

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
            self._metadata[blob_id.raw] = found[0]
            return found[0]
        if absent and not errors:
            raise BlobNotFound(f"no storage node has blob {blob_id}")
        raise BlobUnavailable(f"no verifiable metadata for {blob_id}: " + "; ".join(errors))

    @contextlib.contextmanager
    def _bounded(self, blob_id: codec.BlobId) -> Iterator[None]:
        """A read of `blob_id` gives up after `read_timeout` seconds, whatever the nodes do
        (stopped machines accept connections and never answer); for UNAVAILABLE_MEMORY
        seconds after that, reads of the blob fail at once."""
        until = self._unavailable.get(blob_id.raw)
        if until is not None and until > time.monotonic():
            raise BlobUnavailable(
                f"blob {blob_id}: the storage nodes did not answer within "
                f"{self.read_timeout:g} s moments ago"
            )
        try:
            with trio.fail_after(self.read_timeout):
                yield
        except trio.TooSlowError:
            now = time.monotonic()
            for key in [k for k, t in self._unavailable.items() if t <= now]:
                del self._unavailable[key]
            self._unavailable[blob_id.raw] = now + UNAVAILABLE_MEMORY
            raise BlobUnavailable(
                f"blob {blob_id}: the storage nodes did not answer within {self.read_timeout:g} s"
            ) from None

    async def read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
    ) -> bytes:
        """Bytes [offset, offset+length) of the blob (all of it by default).

        Raises:
            BlobUnavailable: not enough nodes answered with verifiable data within
                `read_timeout` seconds.
            BlobNotFound: no node knows the blob.
        """
        with self._bounded(blob_id):
            return await self._read(blob_id, offset, length, use_cache=use_cache)

    async def _read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
    ) -> bytes:
        cache = self.cache if use_cache else None
        meta = await self.metadata(blob_id, use_cache=use_cache)
        size = meta.unencoded_length
        if offset < 0 or (length is not None and length < 0):
            raise ValueError(f"invalid range: offset {offset}, length {length}")
        if length is None:
            length = size - offset
        length = max(0, min(length, size - offset))
        if self.ranges is not None and use_cache:
            hit = self.ranges.get(blob_id.raw, offset, length)
            if hit is not None:
                return hit
        if offset == 0 and length == size:
            data = await self._read_all(meta, cache)
        else:
            data = await self._read_rows(meta, offset, length, cache)
        if self.ranges is not None and use_cache:
            self.ranges.put(blob_id.raw, offset, length, data)
        return data

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        """One file of a quilt, from the secondary slivers (columns) of its patch only (or,
        when some are missing or slow, from the whole quilt). Raises as `read`."""
        with self._bounded(patch_id.quilt_id):
            return await self._read_patch(patch_id, use_cache=use_cache)

    async def _read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        cache = self.cache if use_cache else None
        meta = await self.metadata(patch_id.quilt_id, use_cache=use_cache)
        columns = list(range(patch_id.start, patch_id.end))
        got = await self._fetch(
            meta, Axis.SECONDARY, columns, need=len(columns), strict=True, cache=cache
        )
        if len(got) < len(columns):
            # as the Walrus client does: read the whole quilt (from any k_p primary slivers)
            log.info(
                "patch %s: %d of its %d columns unavailable; reading the whole quilt",
                patch_id, len(columns) - len(got), len(columns),
            )  # fmt: skip
            blob = await self._read(patch_id.quilt_id, use_cache=use_cache)
            return await trio.to_thread.run_sync(codec.patch_from_blob, blob, meta, patch_id)
        return await trio.to_thread.run_sync(codec.read_patch, list(got.values()), meta, patch_id)

    async def _read_rows(
        self, meta: codec.VerifiedMetadata, offset: int, length: int, cache: SliverCache | None
    ) -> bytes:
        rows = codec.rows_for_range(meta.unencoded_length, offset, length, meta.params)
        if not rows:
            return b""
        got = await self._fetch(
            meta, Axis.PRIMARY, list(rows), need=len(rows), strict=True, cache=cache
        )
        if len(got) == len(rows):
            return await trio.to_thread.run_sync(
                codec.read_range, list(got.values()), meta, offset, length
            )
        log.info("rows %s of %s not all available; decoding the blob", rows, meta.blob_id)
        whole = await self._read_all(meta, cache)
        return whole[offset : offset + length]

    async def _read_all(self, meta: codec.VerifiedMetadata, cache: SliverCache | None) -> bytes:
        k = meta.params.k_p
        n = meta.params.n_shards
        if meta.unencoded_length == 0:
            return b""
        # Systematic rows first: if all arrive, the blob is assembled without decoding.
        got = await self._fetch(
            meta, Axis.PRIMARY, list(range(k)), need=k, strict=False, cache=cache
        )
        if len(got) < k:
            others = list(range(k, n))
            more = await self._fetch(
                meta, Axis.PRIMARY, others, need=k - len(got), strict=False, cache=cache
            )
            got.update(more)
        if len(got) < k:
            raise BlobUnavailable(
                f"{meta.blob_id}: only {len(got)} of the {k} primary slivers needed could be "
                "fetched and verified"
            )
        return await trio.to_thread.run_sync(codec.decode, list(got.values()), meta)

    async def _fetch(
        self,
        meta: codec.VerifiedMetadata,
        axis: Axis,
        indices: list[int],
        *,
        need: int,
        strict: bool,
        cache: SliverCache | None,
    ) -> dict[int, codec.VerifiedSliver]:
        """Verified slivers of `indices` (sliver indices of `axis`), from cache or nodes, until
        `need` are in hand. `strict`: all of `indices` are wanted (a range); otherwise any."""
        blob_id = meta.blob_id
        params = meta.params
        got: dict[int, codec.VerifiedSliver] = {}
        prefix = "p" if axis is Axis.PRIMARY else "s"
        missing: list[int] = []
        for i in indices:
            raw = None
            if cache is not None:
                raw = await trio.to_thread.run_sync(cache.get, str(blob_id), f"{prefix}{i}")
            if raw is not None:
                # Trusted by the hash recorded when it was verified.
                got[i] = codec.VerifiedSliver(Sliver(raw, axis), blob_id.raw)
                if len(got) >= need and not strict:
                    return got
            else:
                missing.append(i)
        if not missing:
            return got
        committee = await self._read_committee(blob_id)
        bad: set[str] = set()
        order = {n.name: r for r, n in enumerate(self.stats.order(committee.nodes))}

        def holder(i: int) -> StorageNode:
            pair = i if axis is Axis.PRIMARY else params.pair_of_secondary(i)
            return committee.holder(params.shard_for_pair(blob_id.raw, pair))

        missing.sort(key=lambda i: order[holder(i).name] if not strict else 0)
        enough = trio.Event()

        async def one(i: int) -> None:
            node = holder(i)
            if node.name in bad:
                return
            pair = i if axis is Axis.PRIMARY else params.pair_of_secondary(i)
            async with self.read_limit:
                if enough.is_set() or node.name in bad:
                    return
                started = time.monotonic()
                try:
                    # One attempt: a failed sliver is replaced by another row (see `metadata`).
                    raw = await self.nodes.get_sliver(node, blob_id, pair, axis)
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
                    node.name, axis, i, blob_id, exc,
                )  # fmt: skip
                return
            got[i] = verified
            if cache is not None:
                await trio.to_thread.run_sync(cache.put, str(blob_id), f"{prefix}{i}", raw)
            if len(got) >= need and not strict:
                enough.set()

        # Ask for `need` at a time, more only if some fail or are slow: a healthy network is
        # asked for exactly what is needed. A request not answered within the hedge delay
        # counts as lost (its node is remembered as slow) and another row is asked in its
        # place; it may still answer. A strict read (its own rows) gives up on slow rows after
        # STRICT_PATIENCE and returns what it has: the caller reads from any nodes instead.
        queue = [i for i in missing if not (strict and self.stats.is_slow(holder(i)))]
        if strict and len(queue) < len(missing):
            return got  # a holder is known to be slow: go straight to the fallback
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
                active = len(started) - len(hedged)
                wanted = len(queue) if strict else need - len(got) - active
                while wanted > 0 and queue:
                    i = queue.pop(0)
                    started[i] = time.monotonic()
                    nursery.start_soon(run, i)
                    wanted -= 1
                if not started:
                    break
                with trio.move_on_after(hedge):
                    await changed.wait()
                changed = trio.Event()
                now = time.monotonic()
                late = [i for i, t in started.items() if now - t >= hedge and i not in hedged]
                for i in late:
                    hedged.add(i)
                    self.stats.slow(holder(i))
                if strict and hedged and now - begun >= hedge + STRICT_PATIENCE:
                    break
                if not strict and not queue and started and len(hedged) == len(started):
                    break  # only slow requests left: the caller asks other rows
            nursery.cancel_scope.cancel()
        return got

    # -- chain-side management --------------------------------------------------------------

    async def blobs(self) -> list[mt.Blob]:
        return await self.chain.blobs(valid_only=True)

    async def delete(self, object_id: str) -> None:
        blob = await self.chain.blob(object_id)
        await self.chain.delete_blob(object_id)
        blob_id = codec.BlobId.from_u256(blob.blob_id)
        self._metadata.pop(blob_id.raw, None)
        if self.ranges is not None:
            self.ranges.forget(blob_id.raw)
        if self.cache is not None:
            await trio.to_thread.run_sync(self.cache.remove_blob, str(blob_id))

    async def extend(self, object_id: str, epochs: int) -> int:
        paid, _ = await self.chain.extend_blob(object_id, epochs)
        return paid


def _checked(blob_id: codec.BlobId, status: BlobStatus | None) -> BlobStatus | None:
    if status is not None and status.kind == "invalid":
        raise BlobInvalid(str(blob_id))
    if status is not None and status.kind == "nonexistent":
        raise BlobNotFound(
            f"no storage node has blob {blob_id} (its status is nonexistent on the storage nodes)"
        )
    return status


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _confirmation_message(epoch: int, blob_id: codec.BlobId, object_id: str | None) -> bytes:
    if object_id is None:
        return bytes(fc.bls_confirmation_bytes(epoch, blob_id.raw))
    oid = bytes.fromhex(object_id.removeprefix("0x").rjust(64, "0"))
    return bytes(fc.bls_confirmation_bytes(epoch, blob_id.raw, oid))
