"""What a storage node's parts share: its identity, disk, test switches, and its view of the
chain's epoch and shard assignment.

The chain follower (`follower.py`) writes the view; the REST handlers (`api.py`) and the
shard sync of an epoch change (`shard_sync.py`) read it. Keeping it in one dataclass rather
than on a handler class lets each part take exactly what it needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio
from cachetools import LRUCache

import codec
from chain.bls import BlsKeypair
from codec.blob_id import BlobId
from codec.params import EncodingParams
from walrusfs.devnet import http
from walrusfs.devnet.faults import FAULTS_FILE, FaultSwitch
from walrusfs.devnet.node_config import NodeConfig
from walrusfs.devnet.shared import SharedChain
from walrusfs.devnet.storage import CorruptRecord, NodeStore

log = logging.getLogger("walrusfs.devnet.node")

T = TypeVar("T")


@dataclass
class ChainView:
    """This node's epoch and shards as the chain last told it."""

    epoch: int
    n_shards: int = 0
    params: EncodingParams | None = None
    shards: frozenset[int] = frozenset()
    #: shards this node held in the previous epoch and still serves reads of while the
    #: epoch change runs (their new holders fetch them from here)
    retained: frozenset[int] = frozenset()
    #: shards of the current epoch whose data is still being fetched (shard status
    #: "inTransfer"); the node attests `epoch_sync_done` when it is empty
    in_transfer: frozenset[int] = frozenset()
    node_id: str = ""
    #: an epoch change is in progress (shards are moving between nodes)
    transitioning: bool = False
    #: the Walrus package whose events the node indexes
    type_package: str = ""

    def require_params(self) -> EncodingParams:
        """The encoding parameters.

        Raises:
            ApiError: UNAVAILABLE before the node has read the shard count from the chain.
        """
        if self.params is None:
            raise http.unavailable()
        return self.params


async def read_record(fn: Callable[..., T | None], *args: object) -> T | None:
    """`fn(*args)` in a worker thread; a record that fails its checksum (already removed by
    the store) counts as absent."""
    try:
        return await trio.to_thread.run_sync(fn, *args)
    except CorruptRecord as exc:
        log.error("%s", exc)
        return None


class MetadataCache:
    """Verified metadata of recent blobs (LRU, 64): each sliver check then costs one RS
    encode of the sliver plus its Merkle root, not a metadata re-verification."""

    def __init__(self, store: NodeStore) -> None:
        self.store = store
        self._cache: LRUCache[bytes, codec.VerifiedMetadata] = LRUCache(maxsize=64)

    def put(self, blob: BlobId, meta: codec.VerifiedMetadata) -> None:
        self._cache[blob.raw] = meta

    def forget(self, blob: BlobId) -> None:
        self._cache.pop(blob.raw, None)

    async def get(self, blob: BlobId, n_shards: int) -> codec.VerifiedMetadata | None:
        """The blob's stored metadata, verified (once); None if none is stored.

        Raises:
            codec.CodecError: the stored metadata does not verify for `n_shards`.
        """
        cached = self._cache.get(blob.raw)
        if cached is not None:
            return cached
        raw = await read_record(self.store.get_metadata, blob)
        if raw is None:
            return None
        meta = await trio.to_thread.run_sync(codec.verify_metadata, blob, raw, n_shards)
        self._cache[blob.raw] = meta
        return meta


@dataclass
class NodeParts:
    """One node identity's pieces, built once per identity by the node process."""

    directory: Path
    config: NodeConfig
    key: BlsKeypair
    chain: SharedChain
    store: NodeStore
    faults: FaultSwitch
    view: ChainView
    metadata: MetadataCache = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = MetadataCache(self.store)

    @classmethod
    def open(
        cls, directory: Path, config: NodeConfig, key: BlsKeypair, chain: SharedChain
    ) -> NodeParts:
        """Open the node's disk and switches under `directory`."""
        store = NodeStore(directory, fsync=config.fsync)
        faults = FaultSwitch(directory / FAULTS_FILE)
        return cls(directory, config, key, chain, store, faults, ChainView(store.meta("epoch")))

    @property
    def name(self) -> str:
        return self.config.name
