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
from typing import Any

import trio

import codec
from chain.bls import g1_compress
from chain.client import WalrusChain
from codec.params import EncodingParams
from walrusfs.store.errors import NodeError
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

    @classmethod
    async def load(cls, chain: WalrusChain) -> Committee:
        info = await chain.system_info()
        members = await chain.committee()
        position = {m.public_key: i for i, m in enumerate(info.committee_keys)}
        nodes = []
        for m in members:
            if m.public_key not in position:
                continue  # staked but not in this epoch's BLS committee
            nodes.append(
                StorageNode(
                    position[m.public_key],
                    m.name,
                    node_url(m.network_address),
                    g1_compress(m.public_key),
                    m.shards,
                    m.network_public_key,
                )
            )
        nodes.sort(key=lambda n: n.index)
        by_shard = {s: n for n in nodes for s in n.shards}
        return cls(info.epoch, info.n_shards, tuple(nodes), by_shard)


class NodeClient:
    """One keep-alive HTTP/1.1 pool per node (`walrusfs.store.http1`), reads and uploads alike.

    Not httpx, which the client used until session 9: its per-request cost in the event loop
    (~1.8 ms, see `http1`) bounded both the 2000-PUT store and the 334-GET read of an n=1000
    blob. Not HTTP/2 either: in Python its frame handling costs more than the TCP connections it
    saves, and httpcore's HTTP/2 client stalled concurrent large uploads
    (github.com/pydantic/httpx2/issues/1133).
    """

    def __init__(self, timeout: float = 30.0, connections: int = 32) -> None:
        self._timeout = timeout
        self._per_node = max(1, min(CONNECTIONS_PER_NODE, connections))
        self._pools: dict[str, Pool] = {}
        self.counts: Counter[str] = Counter()

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

    async def put_metadata(self, node: StorageNode, blob_id: codec.BlobId, bcs: bytes) -> None:
        await self._request("put_metadata", node, "PUT", f"/v1/blobs/{blob_id}/metadata", bcs)

    async def put_sliver(
        self, node: StorageNode, blob_id: codec.BlobId, pair: int, sliver: codec.Sliver
    ) -> None:
        path = f"/v1/blobs/{blob_id}/slivers/{pair}/{sliver.axis}"
        await self._request("put_sliver", node, "PUT", path, sliver.bcs)

    async def get_metadata(self, node: StorageNode, blob_id: codec.BlobId) -> bytes | None:
        rsp = await self._request("get_metadata", node, "GET", f"/v1/blobs/{blob_id}/metadata")
        return None if rsp.status_code == 404 else rsp.content

    async def get_sliver(
        self, node: StorageNode, blob_id: codec.BlobId, pair: int, axis: codec.Axis
    ) -> bytes | None:
        path = f"/v1/blobs/{blob_id}/slivers/{pair}/{axis}"
        rsp = await self._request("get_sliver", node, "GET", path)
        return None if rsp.status_code == 404 else rsp.content

    async def confirmation(
        self, node: StorageNode, blob_id: codec.BlobId, object_id: str | None
    ) -> tuple[bytes, bytes]:
        """(serialized message, signature) as the node signed them."""
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
