"""The committee as the client sees it, and the storage-node REST calls.

A node's on-chain network address is `host:port`. Real Walrus nodes serve HTTPS; a loopback
address (the devnet) is spoken to in cleartext. Requests go over HTTP/1.1 keep-alive, a pool
per node (see `NodeClient`) that lives as long as the `WalrusStore`, so connections are reused
across blobs.

Every request is counted per kind (`NodeClient.counts`): the tests assert, for example, that a
small range read fetches at most two slivers and that a cached read makes none.
"""

from __future__ import annotations

import base64
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import trio

import codec
from chain import errors as chain_errors
from chain import move_types as mt
from chain.bls import g1_compress
from chain.client import WalrusChain
from codec.params import EncodingParams
from walrusfs.store.errors import NodeError, ShardNotAssigned
from walrusfs.store.http1 import Pool, Response, TransportError

log = logging.getLogger(__name__)

LOOPBACK = ("127.", "localhost", "[::1]")
#: concurrent requests to one node at most (the store's overall limits apply as well)
CONNECTIONS_PER_NODE = 16


@dataclass(frozen=True)
class StorageNode:
    index: int  # member index: the bit of the signers bitmap
    name: str
    url: str
    public_key: bytes  # compressed G1 (48 bytes)
    shards: tuple[int, ...]
    #: SEC1 P-256 key of its TLS certificate (a self-signed one is accepted when it has it)
    network_key: bytes = b""
    node_id: str = ""  # its staking pool's object ID

    @property
    def weight(self) -> int:
        return len(self.shards)


def node_url(network_address: str) -> str:
    scheme = "http" if network_address.startswith(LOOPBACK) else "https"
    return f"{scheme}://{network_address}"


@dataclass(frozen=True)
class Committee:
    epoch: int
    n_shards: int
    nodes: tuple[StorageNode, ...]
    by_shard: dict[int, StorageNode] = field(repr=False)

    @property
    def params(self) -> EncodingParams:
        return EncodingParams(self.n_shards)

    @property
    def quorum(self) -> int:
        """The least shard weight w with 3w >= 2n + 1 (what certify_blob requires)."""
        return (2 * self.n_shards + 1 + 2) // 3

    @property
    def validity(self) -> int:
        """The least shard weight above f (`is_above_validity`: at least one correct node)."""
        return (self.n_shards - 1) // 3 + 1

    def holder(self, shard: int) -> StorageNode:
        """The node holding `shard` in this committee's epoch.

        Raises:
            ShardNotAssigned: no node holds it (an incomplete committee, or a shard index
                out of range).
        """
        node = self.by_shard.get(shard)
        if node is None:
            raise ShardNotAssigned(shard, self.epoch, self.n_shards)
        return node

    @classmethod
    async def load(cls, chain: WalrusChain) -> Committee:
        return (await ActiveCommittees.load(chain)).current


@dataclass(frozen=True)
class ActiveCommittees:
    """The committees a client talks to, as walrus `crates/walrus-sdk/src/active_committees.rs`
    has them: the current one serves writes; while an epoch change moves shards
    (`is_change_in_progress`: the Staking object's `epoch_state` is `EpochChangeSync`, walrus
    `crates/walrus-sui/src/types/move_structs.rs` `EpochState::is_transitioning`) a blob
    certified before the current epoch is read from the previous committee, whose nodes still
    hold its slivers while the new holders fetch them."""

    current: Committee
    previous: Committee | None
    transitioning: bool

    @property
    def epoch(self) -> int:
        return self.current.epoch

    def is_change_in_progress(self) -> bool:
        return self.transitioning

    def write_committee(self) -> Committee:
        return self.current

    def read_committee(self, certified_epoch: int | None) -> Committee:
        """`ActiveCommittees::read_committee`: the previous committee for a blob certified
        before the current epoch while the change is in progress, else the current one (also
        when the certified epoch is unknown, as the SDK reads then)."""
        if (
            self.transitioning
            and self.previous is not None
            and certified_epoch is not None
            and certified_epoch < self.current.epoch
        ):
            return self.previous
        return self.current

    @classmethod
    async def load(cls, chain: WalrusChain) -> ActiveCommittees:
        """Current and previous committee and the epoch state, from System (the BLS committee:
        keys and signer positions) and Staking (shard assignments, `previous_committee`,
        `epoch_state`) with the nodes' pools, as walrus `crates/walrus-sui/src/client/
        read_client.rs` `get_committees_and_state`. Members are matched by node ID.

        Raises:
            chain.errors.ChainError: System and Staking still disagree on the epoch after
                three reads, or a shard holder is missing from the BLS committee.
            chain.errors.ChainUnavailable: the chain could not be read.
        """
        for _ in range(3):
            info = await chain.system_info()
            staking, pools = await chain.staking_state()
            if staking.epoch == info.epoch:
                break  # else an epoch change landed between the two reads: again
        else:
            raise chain_errors.ChainError("System and Staking disagree on the epoch")
        bls = {_norm(m.node_id): (i, m) for i, m in enumerate(info.committee_keys)}

        def build(epoch: int, assignment: list[mt.ShardAssignment], current: bool) -> Committee:
            nodes = []
            for position, a in enumerate(assignment):
                node_id = _norm(a.node_id)
                pool = pools[node_id].node_info
                if current:
                    if node_id not in bls:
                        raise chain_errors.ChainError(
                            f"node {node_id} holds shards but is not in the BLS committee"
                        )
                    index, member = bls[node_id]
                    key = member.public_key
                else:  # reads only: no signer bit, the pool's key
                    index, key = position, pool.public_key
                nodes.append(
                    StorageNode(
                        index,
                        pool.name,
                        node_url(pool.network_address),
                        g1_compress(key),
                        tuple(a.shards),
                        pool.network_public_key,
                        node_id,
                    )
                )
            nodes.sort(key=lambda n: n.index)
            by_shard = {s: n for n in nodes for s in n.shards}
            return Committee(epoch, staking.n_shards, tuple(nodes), by_shard)

        current = build(info.epoch, staking.committee, True)
        previous = None
        if info.epoch > 0 and staking.previous_committee:
            previous = build(info.epoch - 1, staking.previous_committee, False)
        transitioning = staking.epoch_state[0] == EPOCH_CHANGE_SYNC
        return cls(current, previous, transitioning and previous is not None)


#: `EpochState::EpochChangeSync` (the enum's first variant, `staking_inner.move`)
EPOCH_CHANGE_SYNC = 0


def _norm(node_id: str) -> str:
    return "0x" + node_id.removeprefix("0x").rjust(64, "0").lower()


@dataclass(frozen=True)
class BlobStatus:
    """A node's `BlobStatus` (walrus `crates/walrus-storage-node-client/src/api.rs`, serde
    camelCase, externally tagged): "nonexistent", "invalid", "permanent" or "deletable"."""

    kind: str
    initial_certified_epoch: int | None = None
    end_epoch: int | None = None
    is_certified: bool = False

    #: later statuses first, as walrus-sdk `get_verified_blob_status` goes through them (the
    #: `Ord` of `BlobStatus`: invalid > permanent > deletable > nonexistent)
    RANK: ClassVar[dict[str, int]] = {
        "invalid": 3,
        "permanent": 2,
        "deletable": 1,
        "nonexistent": 0,
    }

    @classmethod
    def parse(cls, data: Any) -> BlobStatus:
        """The status from its JSON (the `data` of a node's answer).

        Raises:
            ValueError: not a BlobStatus (KeyError/TypeError for a variant lacking a field).
        """
        if data == "nonexistent":
            return cls("nonexistent")
        if not isinstance(data, dict) or len(data) != 1:
            raise ValueError(f"not a BlobStatus: {data!r}")
        ((kind, body),) = data.items()
        if kind == "invalid":
            return cls("invalid")
        if kind == "permanent":
            return cls(
                "permanent",
                _opt_int(body.get("initialCertifiedEpoch")),
                int(body["endEpoch"]),
                bool(body["isCertified"]),
            )
        if kind == "deletable":
            initial = _opt_int(body.get("initialCertifiedEpoch"))
            return cls("deletable", initial, None, initial is not None)
        raise ValueError(f"unknown BlobStatus variant {kind!r}")

    @property
    def rank(self) -> tuple[int, bool, int]:
        return (self.RANK[self.kind], self.is_certified, self.end_epoch or 0)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


class NodeClient:
    """One keep-alive HTTP/1.1 pool per node (`walrusfs.store.http1`), reads and uploads alike.

    Not httpx: its per-request cost in the event loop (~1.8 ms, see `http1`) would bound both
    the 2000-PUT store and the 334-GET read of an n=1000 blob. Not HTTP/2 either: in Python
    its frame handling costs more than the TCP connections it saves, and httpcore's HTTP/2
    client can stall concurrent large uploads (github.com/pydantic/httpx2/issues/1133).

    Every request raises `NodeError` when the node answers with a status of 300 or more (404
    too, unless the call documents what it returns for it) and `TransportError` when it does
    not answer at all within `timeout` seconds.
    """

    def __init__(self, timeout: float = 30.0, connections: int = 32) -> None:
        self._timeout = timeout
        self._per_node = max(1, min(CONNECTIONS_PER_NODE, connections))
        self._pools: dict[str, Pool] = {}
        self.counts: Counter[str] = Counter()
        #: when a list, every request is appended as (kind, node name, path): tests check
        #: which committee's nodes reads went to
        self.trace: list[tuple[str, str, str]] | None = None

    def _pool(self, node: StorageNode) -> Pool:
        pool = self._pools.get(node.url)
        if pool is None:
            pool = self._pools[node.url] = Pool(
                node.url, self._per_node, self._timeout, pinned_key=node.network_key or None
            )
        return pool

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    @staticmethod
    def _raise(node: StorageNode, rsp: Response) -> None:
        try:
            err = rsp.json()["error"]
            reason = str(err["details"][0]["reason"])
            message = str(err["message"])
        except (ValueError, KeyError, IndexError, TypeError):
            reason, message = "HTTP", rsp.text[:200]
        raise NodeError(node.name, rsp.status_code, reason, message)

    async def _request(
        self, kind: str, node: StorageNode, method: str, path: str, body: bytes | None = None
    ) -> Response:
        self.counts[kind] += 1
        if self.trace is not None:
            self.trace.append((kind, node.name, path))
        rsp = await self._pool(node).request(method, path, body)
        if rsp.status_code >= 300 and rsp.status_code != 404:
            self._raise(node, rsp)
        return rsp

    async def health(self, node: StorageNode) -> dict[str, Any] | None:
        """The node's `/v1/health` data, None when it does not answer in 2 s (for the mount's
        status; the data paths never wait for it)."""
        try:
            with trio.fail_after(2.0):
                rsp = await self._pool(node).request("GET", "/v1/health")
            if rsp.status_code != 200:
                return None
            body = rsp.json()
        except (TransportError, trio.TooSlowError, ValueError):
            return None
        data = body.get("success", {}).get("data", body) if isinstance(body, dict) else None
        return data if isinstance(data, dict) else None

    async def put_metadata(self, node: StorageNode, blob_id: codec.BlobId, bcs: bytes) -> bool:
        """PUT the metadata; True if the node had it already (200, not 201/202): as walrus
        `crates/walrus-storage-node-client/src/client.rs` `store_and_get_metadata_status`
        infers the metadata's status before the write from the answer's code."""
        rsp = await self._request("put_metadata", node, "PUT", f"/v1/blobs/{blob_id}/metadata", bcs)
        if rsp.status_code == 404:
            self._raise(node, rsp)
        return rsp.status_code == 200

    async def sliver_status(
        self, node: StorageNode, blob_id: codec.BlobId, pair: int, axis: codec.Axis
    ) -> str:
        """`StoredOnNodeStatus` of one sliver: "nonexistent", "buffered" or "stored", exactly
        as serde writes the enum (camelCase, walrus `crates/walrus-storage-node-client/src/
        api.rs`); anything else is answered as "unknown" (the caller uploads then)."""
        path = f"/v1/blobs/{blob_id}/slivers/{pair}/{axis}/status"
        rsp = await self._request("sliver_status", node, "GET", path)
        if rsp.status_code == 404:
            return "nonexistent"
        try:
            data = rsp.json()["success"]["data"]
        except (ValueError, KeyError, TypeError):
            return "unknown"
        return data if data in ("nonexistent", "buffered", "stored") else "unknown"

    async def blob_status(self, node: StorageNode, blob_id: codec.BlobId) -> BlobStatus | None:
        """The node's `BlobStatus` of the blob (`GET /v1/blobs/{id}/status`); None when the
        node answers 404 (it does not know the blob: counts as "nonexistent" towards the
        quorum, as in walrus-sdk `get_verified_blob_status`).

        Raises:
            NodeError: a refusal, or an answer that is not a BlobStatus (BAD_REPLY).
        """
        rsp = await self._request("blob_status", node, "GET", f"/v1/blobs/{blob_id}/status")
        if rsp.status_code == 404:
            return None
        try:
            return BlobStatus.parse(rsp.json()["success"]["data"])
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(
                node.name, rsp.status_code, "BAD_REPLY", f"blob status: {exc}"
            ) from None

    async def put_sliver(
        self, node: StorageNode, blob_id: codec.BlobId, pair: int, sliver: codec.Sliver
    ) -> None:
        """PUT one sliver of pair `pair` (the URL index, not the secondary sliver's index);
        a 404 answer is not raised."""
        path = f"/v1/blobs/{blob_id}/slivers/{pair}/{sliver.axis}"
        await self._request("put_sliver", node, "PUT", path, sliver.bcs)

    async def get_metadata(self, node: StorageNode, blob_id: codec.BlobId) -> bytes | None:
        """The node's `BlobMetadataWithId` bytes, unverified; None when it answers 404."""
        rsp = await self._request("get_metadata", node, "GET", f"/v1/blobs/{blob_id}/metadata")
        return None if rsp.status_code == 404 else rsp.content

    async def get_sliver(
        self, node: StorageNode, blob_id: codec.BlobId, pair: int, axis: codec.Axis
    ) -> bytes | None:
        """The node's `SliverData` bytes of pair `pair`, unverified; None when it answers 404."""
        path = f"/v1/blobs/{blob_id}/slivers/{pair}/{axis}"
        rsp = await self._request("get_sliver", node, "GET", path)
        return None if rsp.status_code == 404 else rsp.content

    async def confirmation(
        self, node: StorageNode, blob_id: codec.BlobId, object_id: str | None
    ) -> tuple[bytes, bytes]:
        """(serialized message, signature) as the node signed them, unchecked.

        Args:
            object_id: the deletable Blob object confirmed; None for a permanent blob.

        Raises:
            NodeError: refused (any status of 300 or more, 404 included), or a reply
                without a signed confirmation (BAD_REPLY).
        """
        kind = "permanent" if object_id is None else f"deletable/{object_id}"
        rsp = await self._request(
            "confirmation", node, "GET", f"/v1/blobs/{blob_id}/confirmation/{kind}"
        )
        if rsp.status_code == 404:
            self._raise(node, rsp)
        try:
            signed = rsp.json()["success"]["data"]["signed"]
            return (
                base64.b64decode(signed["serializedMessage"]),
                base64.b64decode(signed["signature"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(node.name, rsp.status_code, "BAD_REPLY", str(exc)) from None
