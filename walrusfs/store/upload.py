"""Uploading an encoded blob to the committee's nodes and collecting their signed, verified
confirmations until a quorum of shards confirmed (and the stragglers' grace ran out).

Per node: PUT the metadata, then both slivers of each of its shards' pairs,
`upload_concurrency` requests in flight overall and each node at most its share of them;
then GET its confirmation and verify it (message equal to the expected one, signature against
the node's key). Every request is retried on temporary failures until the deadline
(`walrusfs/store/retry.py`); a node that still fails is recorded and the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

import codec
from chain.bls import aggregate_verify
from codec.sliver import Axis
from walrusfs.store.errors import NodeError, NotEnoughConfirmations
from walrusfs.store.hedging import NodeStats
from walrusfs.store.nodes import Committee, NodeClient, StorageNode
from walrusfs.store.retry import is_temporary, retry

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

#: slivers shorter than this are PUT without asking the node first whether it has them (the
#: status request costs about what the upload does): walrus-sdk
#: `DEFAULT_SLIVER_STATUS_CHECK_THRESHOLD` (`crates/walrus-sdk/src/config/communication_config.rs`)
SLIVER_STATUS_THRESHOLD = 5_560


@dataclass(frozen=True)
class Confirmation:
    """A node's verified signature over the blob's confirmation message."""

    node: StorageNode
    signature: bytes


def slots_per_node(slots: int, nodes: int) -> int:
    """Upload requests one node may have in flight: its share of all `slots`, at least 2.
    With one pool for all nodes, the first node's hundreds of slivers, queued first, would
    take every slot and the nodes (one process each on the devnet, a machine each on Walrus)
    would be served one after another."""
    return max(2, -(-slots // nodes))


def grace_period(grace: float, took: float) -> float:
    """How long the stragglers get once quorum is reached, `took` seconds after the upload
    began: `grace`, or half as long again as quorum took, so that the blob lands on as many
    nodes as possible without a dead node holding the upload hostage."""
    return max(grace, 0.5 * took)


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or `exc` itself."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


class Uploader:
    """Uploads encoded blobs; `limit` bounds the requests in flight across all uploads."""

    def __init__(
        self,
        nodes: NodeClient,
        stats: NodeStats,
        limit: trio.CapacityLimiter,
        *,
        deadline: float,
        grace: float,
    ) -> None:
        self.nodes = nodes
        self.stats = stats
        self.limit = limit
        self.deadline = deadline
        self.grace = grace
        self.sliver_status_threshold = SLIVER_STATUS_THRESHOLD

    async def confirmations(
        self,
        enc: codec.EncodedBlob,
        committee: Committee,
        object_id: str | None,
        expected: bytes,
        progress: Progress | None,
    ) -> list[Confirmation]:
        """Upload `enc` to `committee` and return the confirmations, in the order they came.

        Args:
            object_id: the Blob object of a deletable blob (its confirmation names it); None
                for a permanent one.
            expected: the confirmation message every node must have signed.
            progress: told (bytes done, bytes total) as slivers land.

        Raises:
            NotEnoughConfirmations: the confirming nodes hold fewer than quorum shards; it
                names each failed node's error.
        """
        # Every primary sliver has one size and every secondary one (a pair copies two slivers
        # out of the encoder: do it once per upload, not once more for this total).
        first = enc.pair(0)
        total = committee.n_shards * (len(first.primary.bcs) + len(first.secondary.bcs))
        done = 0
        confirmed: dict[int, Confirmation] = {}
        failures: dict[str, str] = {}
        quorum_reached = trio.Event()

        def weight() -> int:
            return sum(c.node.weight for c in confirmed.values())

        per_node = slots_per_node(int(self.limit.total_tokens), len(committee.nodes))
        node_limits = {n.name: trio.CapacityLimiter(per_node) for n in committee.nodes}

        check_sizes = {
            Axis.PRIMARY: len(first.primary.data) >= self.sliver_status_threshold,
            Axis.SECONDARY: len(first.secondary.data) >= self.sliver_status_threshold,
        }

        async def sliver(node: StorageNode, pair_index: int, axis: Axis, check: bool) -> None:
            nonlocal done
            async with node_limits[node.name], self.limit:
                # A node that had the metadata may have the sliver too (an upload that was cut
                # off, resumed): ask first, unless the sliver is small (walrus-sdk
                # `check_and_store_sliver`, `crates/walrus-sdk/src/node_client/communication/
                # node.rs`). "buffered" counts as stored, as in the SDK (serde's exact
                # lower-case names; the TS SDK compares "Stored"/"Buffered" and never matches).
                stored = check and await retry(self.deadline)(self.nodes.sliver_status)(
                    node, enc.blob_id, pair_index, axis
                ) in ("stored", "buffered")
                # copied out of the encoding only when sent: all of a node's slivers made up
                # front would hold a second copy of the encoded blob (288 MiB for 64 MiB at
                # 1000 shards)
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
                confirmed[node.index] = Confirmation(node, signature)
                if weight() >= committee.quorum:
                    quorum_reached.set()
            except Exception as exc:
                # The sliver uploads run in a nursery, so their failures arrive grouped: the
                # node has failed if every leaf is a node failure; anything else is a bug.
                found = leaves(exc)
                if not all(is_temporary(e) or isinstance(e, NodeError) for e in found):
                    raise
                failures[node.name] = str(found[0])
                log.warning("storing %s on %s failed: %s", enc.blob_id, node.name, found[0])

        began = trio.current_time()
        async with trio.open_nursery() as outer:

            async def uploads() -> None:
                async with trio.open_nursery() as inner:
                    for node in committee.nodes:
                        inner.start_soon(one_node, node)
                outer.cancel_scope.cancel()  # every node answered: stop waiting

            async def cutoff() -> None:
                # Quorum is enough to certify; the stragglers get a grace period.
                await quorum_reached.wait()
                await trio.sleep(grace_period(self.grace, trio.current_time() - began))
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
        return list(confirmed.values())

    async def confirm_stored(
        self, blob_id: codec.BlobId, committee: Committee, object_id: str | None, expected: bytes
    ) -> list[Confirmation]:
        """The confirmations of a blob the nodes already store (a new registration of it),
        asked of every node at once, nothing uploaded; verified as `confirmations` verifies
        them.

        Raises:
            NotEnoughConfirmations: the confirming nodes hold fewer than quorum shards.
        """
        confirmed: list[Confirmation] = []
        failures: dict[str, str] = {}

        async def one(node: StorageNode) -> None:
            try:
                message, signature = await retry(self.deadline)(self.nodes.confirmation)(
                    node, blob_id, object_id
                )
                if message != expected:
                    raise NodeError(node.name, 200, "WRONG_MESSAGE", "signed another message")
                valid = await trio.to_thread.run_sync(
                    aggregate_verify, signature, [node.public_key], message
                )
                if not valid:
                    raise NodeError(node.name, 200, "BAD_SIGNATURE", "signature does not verify")
                confirmed.append(Confirmation(node, signature))
            except Exception as exc:
                if not (is_temporary(exc) or isinstance(exc, NodeError)):
                    raise
                failures[node.name] = str(exc)

        async with trio.open_nursery() as nursery:
            for node in committee.nodes:
                nursery.start_soon(one, node)
        weight = sum(c.node.weight for c in confirmed)
        if weight < committee.quorum:
            raise NotEnoughConfirmations(weight, committee.quorum, failures)
        return confirmed
