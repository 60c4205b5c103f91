"""Errors of the store/read client.

Small on purpose: the chain's own errors (`chain.errors`: `InsufficientWal`,
`ChainUnavailable`, `MoveAbortError`...) pass through unchanged; these add what only the
storage-node side can say. Each is an OSError where an errno fits, so the mount can hand the
meaning to the kernel unchanged.
"""

from __future__ import annotations

import errno


class StoreError(Exception):
    """Base of the client's own failures."""


class NodeError(StoreError):
    """A storage node refused a request (a Walrus error status) or answered nonsense."""

    def __init__(self, node: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{node}: {status} {reason}: {message}")
        self.node = node
        self.status = status
        self.reason = reason

    @property
    def temporary(self) -> bool:
        """Worth retrying: the node is busy or lags (it has not seen the registration yet)."""
        return self.status in (429, 500, 502, 503, 504) or self.reason in (
            "NOT_REGISTERED",
            "MISSING_SLIVERS",
            "CACHE_SATURATED",
        )


class NotEnoughConfirmations(StoreError, OSError):
    """Too few shards confirmed the blob to certify it (3w >= 2n+1 not reached)."""

    def __init__(self, weight: int, needed: int, failures: dict[str, str]) -> None:
        detail = "; ".join(f"{k}: {v}" for k, v in sorted(failures.items()))
        OSError.__init__(
            self,
            errno.EIO,
            f"only {weight} of the {needed} shards needed confirmed the blob"
            + (f" ({detail})" if detail else ""),
        )
        self.weight = weight
        self.needed = needed
        self.failures = failures


class BlobUnavailable(StoreError, OSError):
    """The blob cannot be read: not enough nodes serve verifiable slivers, or no metadata."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, errno.EIO, message)


class BlobNotFound(StoreError, OSError):
    """No node knows the blob (never stored, deleted, or expired)."""

    def __init__(self, message: str) -> None:
        OSError.__init__(self, errno.ENOENT, message)


class ShardNotAssigned(BlobUnavailable):
    """The committee names no node for a shard: the committee read from the chain is
    inconsistent (a shard assignment that does not cover 0..n-1), or the shard index is out of
    range. Never expected from a sound chain; raised instead of a bare KeyError. A kind of
    BlobUnavailable, so every caller that handles that (CLI exit 5, EIO in the mount) does."""

    def __init__(self, shard: int, epoch: int, n_shards: int) -> None:
        BlobUnavailable.__init__(
            self,
            f"no storage node holds shard {shard} in the committee of epoch {epoch} "
            f"({n_shards} shards): the committee read from the chain is incomplete",
        )
        self.shard = shard
        self.epoch = epoch


class BlobInvalid(BlobUnavailable):
    """The storage nodes report the blob invalid: an inconsistency proof showed its slivers do
    not encode one blob (`BlobStatus::Invalid`, an `InvalidBlobID` event on chain). It cannot
    be read, ever; the official client refuses it too (`BlobIdDoesNotExist`). A kind of
    BlobUnavailable (EIO, CLI exit 5) for callers that do not tell them apart."""

    def __init__(self, blob_id: str, detail: str = "") -> None:
        BlobUnavailable.__init__(
            self,
            f"blob {blob_id} is marked invalid by the storage nodes (its encoding is "
            f"inconsistent); it cannot be read{': ' + detail if detail else ''}",
        )
        self.blob_id = blob_id


class PooledLifetime(StoreError):
    """A blob of a storage pool is extended with its pool, not on its own."""
