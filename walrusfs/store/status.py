"""A blob's status as the storage nodes report it, verified by shard weight as walrus-sdk
`get_verified_blob_status` does (`crates/walrus-sdk/src/node_client.rs`), and remembered.

A read asks it alongside its first metadata fetch (the SDK races a status check with every
read): an invalid blob is refused even though its slivers can be read, and during an epoch
change the certified epoch picks the committee to read from (`walrusfs/store/committee.py`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import trio

import codec
from walrusfs.store.committee import Committees
from walrusfs.store.errors import BlobInvalid, BlobNotFound, NodeError
from walrusfs.store.hedging import NodeStats
from walrusfs.store.http1 import TransportError
from walrusfs.store.nodes import ActiveCommittees, BlobStatus, NodeClient, StorageNode

log = logging.getLogger(__name__)

#: how long a blob status check may wait for a quorum of shards to answer
STATUS_TIMEOUT = 5.0
#: a blob's status is asked again after this long
STATUS_MEMORY = 300.0
#: an invalid blob stays invalid: its status is kept this long
INVALID_MEMORY = 3600.0


def verdict(
    weights: Mapping[BlobStatus, int], not_found: int, *, quorum: int, validity: int
) -> BlobStatus | None:
    """The status the nodes agree on, from the shard weight behind each answer.

    Args:
        weights: shards of the nodes that reported each status (grouped without the end
            epoch, see `BlobStatuses.get`).
        not_found: shards of the nodes that answered 404.
        quorum, validity: the committee's 2f+1 and f+1 in shards.

    404s from a quorum mean "nonexistent"; otherwise the latest status (`BlobStatus.rank`)
    reported by more than f shards wins; None when none reached that.
    """
    if not_found >= quorum:
        return BlobStatus("nonexistent")
    for status in sorted(weights, key=lambda s: s.rank, reverse=True):
        if weights[status] >= validity:
            return status
    return None


def checked(blob_id: codec.BlobId, status: BlobStatus | None) -> BlobStatus | None:
    """`status`, unless it is one a read must refuse.

    Raises:
        BlobInvalid: the nodes report the blob invalid.
        BlobNotFound: the nodes report it nonexistent.
    """
    if status is not None and status.kind == "invalid":
        raise BlobInvalid(str(blob_id))
    if status is not None and status.kind == "nonexistent":
        raise BlobNotFound(
            f"no storage node has blob {blob_id} (its status is nonexistent on the storage nodes)"
        )
    return status


class BlobStatuses:
    """Verified blob statuses, asked of the current committee and kept for a while."""

    def __init__(
        self,
        nodes: NodeClient,
        stats: NodeStats,
        limit: trio.CapacityLimiter,
        committees: Committees,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = nodes
        self.stats = stats
        self.limit = limit
        self.committees = committees
        self._clock = clock
        #: blob ID -> (expiry, the status the nodes agreed on; None: no valid one)
        self._known: dict[bytes, tuple[float, BlobStatus | None]] = {}

    def forget(self, blob_id: codec.BlobId) -> None:
        """Ask the nodes next time (this client changed the blob's registrations)."""
        self._known.pop(blob_id.raw, None)

    async def get(
        self, blob_id: codec.BlobId, committees: ActiveCommittees | None = None
    ) -> BlobStatus | None:
        """The blob's verified status: the nodes of the current committee are asked until a
        quorum of shards answered (or STATUS_TIMEOUT), and `verdict` decides. None: no status
        reached that (nodes down or disagreeing); the caller reads anyway, as the SDK does.
        The SDK also accepts a status from fewer nodes if its on-chain event verifies; this
        client does not look events up and needs f+1. Remembered for STATUS_MEMORY seconds.

        Raises:
            BlobInvalid, BlobNotFound: for an invalid / nonexistent blob (what the SDK's read
                refuses as `BlobIdDoesNotExist`).
        """
        now = self._clock()
        known = self._known.get(blob_id.raw)
        if known is not None and known[0] > now:
            return checked(blob_id, known[1])
        committees = committees or await self.committees.active()
        committee = committees.write_committee()
        weights: dict[BlobStatus, int] = {}
        not_found = answered = finished = 0
        done = trio.Event()

        async def ask(node: StorageNode) -> None:
            nonlocal not_found, answered, finished
            try:
                async with self.limit:
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
        found = verdict(weights, not_found, quorum=committee.quorum, validity=committee.validity)
        if found is not None or answered >= committee.quorum:
            invalid = found is not None and found.kind == "invalid"
            memory = INVALID_MEMORY if invalid else STATUS_MEMORY
            for key in [k for k, (t, _) in self._known.items() if t <= now]:
                del self._known[key]
            self._known[blob_id.raw] = (now + memory, found)
        return checked(blob_id, found)
