"""The devnet as real processes: `walrusfs devnet up` in a temporary WALRUSFS_HOME, storage
nodes spoken to over HTTP, the chain flow through `WalrusChain`, and fault drills by stopping,
killing and corrupting nodes."""

from __future__ import annotations

import json
import os
import random
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

import codec
from chain.client import WalrusChain
from tests.devnet_harness import (
    N_SHARDS,
    Node,
    RunningDevnet,
    certificate,
    confirmations,
    error_reason,
    get_sliver,
    heal_all,
    node_of_shard,
    nodes,
    register,
    start_devnet,
    upload,
    walrusfs,
)

pytestmark = [pytest.mark.trio, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("devnet-home"))


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as c:
        yield c


@pytest.fixture(autouse=True)
def _all_nodes_up(dn: RunningDevnet) -> Iterator[None]:
    yield
    heal_all(dn)


def _data(size: int, seed: int) -> bytes:
    """Incompressible and distinct per seed (the deletion test searches disks for it)."""
    return random.Random(seed).randbytes(size)


async def _store(
    chain: WalrusChain,
    client: httpx.AsyncClient,
    data: bytes,
    *,
    skip: set[int] | None = None,
    epochs: int = 2,
    deletable: bool = False,
) -> tuple[codec.EncodedBlob, str]:
    """Register, upload, confirm, certify; returns the encoding and the Blob object ID."""
    enc = codec.encode(data, N_SHARDS)
    info, all_nodes = await nodes(chain)
    blob = await register(chain, enc, epochs, deletable)
    await upload(client, all_nodes, enc, skip or set())
    confirmed = await confirmations(client, all_nodes, enc.blob_id, blob.id if deletable else None)
    cert = certificate(info, confirmed)
    assert cert is not None, f"no quorum from members {sorted(confirmed)}"
    await chain.certify_blob(blob.id, *cert)
    return enc, blob.id


async def _read_primary(
    client: httpx.AsyncClient, all_nodes: list[Node], enc: codec.EncodedBlob
) -> bytes:
    """Fetch metadata and primary slivers from whichever nodes answer; verify; decode."""
    meta = None
    slivers = []
    for node in all_nodes:
        try:
            rsp = await client.get(f"{node.url}/v1/blobs/{enc.blob_id}/metadata")
        except httpx.TransportError:
            continue
        if rsp.status_code == 200 and meta is None:
            meta = codec.verify_metadata(enc.blob_id, rsp.content, N_SHARDS)
        for shard in node.member.shards:
            pair = enc.pair_for_shard(shard).pair_index
            rsp = await get_sliver(client, node, enc.blob_id, pair, "primary")
            assert rsp.status_code == 200, rsp.text
            slivers.append(codec.Sliver(rsp.content, "primary"))
    assert meta is not None, "no node served the metadata"
    return codec.decode(slivers, meta)


async def _status_when(
    client: httpx.AsyncClient, node: Node, blob_id: codec.BlobId, ready: Callable[[Any], bool]
) -> Any:
    """The node's blob status once `ready` holds: nodes learn of certification from chain
    events, a poll interval after the transaction."""
    with trio.fail_after(10):
        while True:
            rsp = await client.get(f"{node.url}/v1/blobs/{blob_id}/status")
            status = rsp.json()["success"]["data"]
            if ready(status):
                return status
            await trio.sleep(0.1)


async def _gone_from_every_disk(dn: RunningDevnet, enc: codec.EncodedBlob) -> None:
    """Wait until no node has the blob's directory, then check that no file on any node
    still holds its bytes (the index keeps IDs and epochs only)."""
    with trio.fail_after(30):
        while any(_blob_dir(dn, i, enc.blob_id).exists() for i in range(dn.spec.n_nodes)):
            await trio.sleep(0.1)
    probe = enc.pair(0).primary.data.tobytes()[:64]
    for i in range(dn.spec.n_nodes):
        for dirpath, _, files in os.walk(dn.devnet.node_dir(i)):
            for name in files:
                assert probe not in Path(dirpath, name).read_bytes(), (dirpath, name)


def _blob_dir(dn: RunningDevnet, index: int, blob_id: codec.BlobId) -> Path:
    return dn.devnet.node_dir(index) / "blobs" / str(blob_id)


# -- the launcher ------------------------------------------------------------------------------


async def test_up_is_idempotent_and_status_reports_every_service(dn: RunningDevnet) -> None:
    before = json.loads(dn.cli("devnet", "status", "--json").stdout)
    again = dn.cli("devnet", "up")
    assert "running" in again.stdout
    after = json.loads(dn.cli("devnet", "status", "--json").stdout)
    assert [s["pid"] for s in after["services"]] == [s["pid"] for s in before["services"]]
    assert after["nShards"] == N_SHARDS and after["epoch"] == 0
    names = [s["name"] for s in after["services"]]
    assert names == ["sui", "node-0", "node-1", "node-2", "node-3", "relay"]
    assert all(s["running"] and s["healthy"] for s in after["services"])
    assert [s["detail"]["shards"] for s in after["services"][1:5]] == [2, 3, 2, 3]
    assert len({s["port"] for s in after["services"]}) == 6
    assert after["services"][5]["detail"]["url"] == dn.spec.relay_url
    text = dn.cli("devnet", "status").stdout
    assert "node-3" in text and "relay" in text and "healthy" in text


async def test_committee_on_chain_matches_nodes(dn: RunningDevnet, chain: WalrusChain) -> None:
    info, all_nodes = await nodes(chain)
    assert info.n_shards == N_SHARDS
    shards = sorted(s for n in all_nodes for s in n.member.shards)
    assert shards == list(range(N_SHARDS))
    ports = {n.port for n in all_nodes}
    assert ports == set(dn.spec.node_ports)


async def test_nodes_listen_on_loopback_only(dn: RunningDevnet) -> None:
    listening: set[tuple[str, int]] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if state == "0A":  # LISTEN
            addr, hex_port = local.split(":")
            listening.add((addr, int(hex_port, 16)))
    for port in [dn.spec.sui_port, *dn.spec.node_ports]:
        assert ("0100007F", port) in listening, port
        assert ("00000000", port) not in listening, port


async def test_bad_cli_input_has_stable_exit_codes(dn: RunningDevnet, tmp_path: Path) -> None:
    assert dn.cli("devnet", "node", "stop", "9", check=False).returncode == 2
    assert dn.cli("devnet", "up", "--epoch-duration", "soon", check=False).returncode == 2
    empty = tmp_path / "empty-home"
    proc = walrusfs(empty, "devnet", "status", check=False)
    assert proc.returncode == 5 and "walrusfs devnet up" in proc.stderr


async def test_a_devnet_that_cannot_start_says_why(dn: RunningDevnet) -> None:
    """Another program on a node's port: `up` fails at once (not after its 60 s wait for
    the node) with exit 5 and the port, and works again once the port is free."""
    port = dn.spec.node_ports[3]
    dn.cli("devnet", "node", "stop", "3")
    squatter = socket.socket()
    try:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        proc = dn.cli("devnet", "up", check=False, timeout=30)
        assert proc.returncode == 5, proc.stderr
        assert f"port {port} of its node-3 is taken by another process" in proc.stderr
    finally:
        squatter.close()
        dn.cli("devnet", "up")
    assert dn.devnet.pid("node-3") is not None


# -- store, certify, read ----------------------------------------------------------------------


async def test_store_certify_and_status(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(100_000, 1)
    enc, _ = await _store(chain, client, data)
    _, all_nodes = await nodes(chain)
    for node in all_nodes:
        status = (
            await _status_when(client, node, enc.blob_id, lambda s: s["permanent"]["isCertified"])
        )["permanent"]
        assert status["endEpoch"] == 2
        assert status["initialCertifiedEpoch"] == 0
        rsp = await client.get(f"{node.url}/v1/blobs/{enc.blob_id}/metadata/status")
        assert rsp.json() == {"success": {"code": 200, "data": "stored"}}
    assert await _read_primary(client, all_nodes, enc) == data


async def test_http2(dn: RunningDevnet, chain: WalrusChain) -> None:
    _, all_nodes = await nodes(chain)
    async with httpx.AsyncClient(http1=False, http2=True) as h2:
        rsp = await h2.get(f"{all_nodes[0].url}/v1/health")
    assert rsp.http_version == "HTTP/2"
    assert rsp.json()["success"]["data"]["nodeStatus"] == "Active"


async def test_nodes_publish_p256_network_keys(dn: RunningDevnet, chain: WalrusChain) -> None:
    """What a client pins a node's self-signed TLS certificate to: a compressed P-256 point,
    one per node, distinct."""
    members = await chain.committee()
    keys = [m.network_public_key for m in members]
    assert len(set(keys)) == len(keys) == dn.spec.n_nodes
    for key in keys:
        assert len(key) == 33
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)  # raises if not


async def test_one_node_stopped_still_certifies(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    _, all_nodes = await nodes(chain)
    down = node_of_shard(all_nodes, 2)  # 3 shards down: 7 of 10 remain, 3*7 >= 21
    dn.cli("devnet", "node", "stop", str(down.devnet_index(dn)))
    data = _data(50_000, 2)
    _, blob_id = await _store(chain, client, data, skip={down.index})
    blob = await chain.blob(blob_id)
    assert blob.certified_epoch == 0


async def test_two_nodes_stopped_still_decodes(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(300_000, 3)
    enc, _ = await _store(chain, client, data)
    _, all_nodes = await nodes(chain)
    # The two 3-shard nodes: 6 shards gone, 4 = k_p remain.
    dn.cli("devnet", "node", "stop", str(node_of_shard(all_nodes, 2).devnet_index(dn)))
    dn.cli("devnet", "node", "stop", str(node_of_shard(all_nodes, 7).devnet_index(dn)), "--kill")
    assert await _read_primary(client, all_nodes, enc) == data


async def test_restarted_node_keeps_its_slivers(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(70_000, 4)
    enc, _ = await _store(chain, client, data)
    _, all_nodes = await nodes(chain)
    node = node_of_shard(all_nodes, 2)
    idx = node.devnet_index(dn)
    dn.cli("devnet", "node", "stop", str(idx), "--kill")
    # What a kill -9 in the middle of a write leaves: a temporary file, never a torn record.
    torn = _blob_dir(dn, idx, enc.blob_id) / ".tmp-0.primary.1.2"
    torn.write_bytes(b"WSN1" + b"\0" * 100)
    dn.cli("devnet", "node", "start", str(idx))
    assert not torn.exists()
    for shard in node.member.shards:
        pair = enc.pair_for_shard(shard)
        for sliver in (pair.primary, pair.secondary):
            rsp = await get_sliver(client, node, enc.blob_id, pair.pair_index, sliver.axis)
            assert rsp.status_code == 200 and rsp.content == sliver.bcs
    got = await confirmations(client, [node], enc.blob_id)
    assert node.index in got


# -- rejections --------------------------------------------------------------------------------


async def test_node_rejects_bad_uploads(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    _, all_nodes = await nodes(chain)
    enc = codec.encode(_data(20_000, 5), N_SHARDS)
    other = codec.encode(_data(20_000, 6), N_SHARDS)  # same size, different content
    node = node_of_shard(all_nodes, 0)
    pair = enc.pair_for_shard(0)
    base = f"{node.url}/v1/blobs/{enc.blob_id}"

    # Not registered: metadata and slivers refused.
    rsp = await client.put(f"{base}/metadata", content=enc.metadata_bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "NOT_REGISTERED"
    body = rsp.json()["error"]
    assert body["status"] == "FAILED_PRECONDITION"
    assert body["details"][0]["domain"] == "storage.walrus.space"
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=pair.primary.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "NOT_REGISTERED"

    await register(chain, enc)
    # Sliver before metadata.
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=pair.primary.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "METADATA_NOT_FOUND"
    # Metadata of another blob under this blob's ID.
    rsp = await client.put(f"{base}/metadata", content=other.metadata_bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "INVALID_METADATA"
    assert rsp.json()["error"]["status"] == "INVALID_ARGUMENT"
    rsp = await client.put(f"{base}/metadata", content=enc.metadata_bcs)
    assert rsp.status_code == 201
    rsp = await client.put(f"{base}/metadata", content=enc.metadata_bcs)
    assert rsp.status_code == 200
    # A sliver of the other blob at the right index: shape fine, Merkle root wrong.
    wrong = other.pair(pair.pair_index).primary
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=wrong.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "INVALID_SLIVER"
    # The secondary sliver under the primary URL: index mismatch.
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=pair.secondary.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "SLIVER_INDEX_MISMATCH"
    # A shard this node does not hold.
    foreign = next(s for s in range(N_SHARDS) if s not in node.member.shards)
    fpair = enc.pair_for_shard(foreign)
    rsp = await client.put(f"{base}/slivers/{fpair.pair_index}/primary", content=fpair.primary.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "SHARD_NOT_ASSIGNED"
    rsp = await client.put(f"{base}/slivers/{N_SHARDS}/primary", content=pair.primary.bcs)
    assert rsp.status_code == 400 and error_reason(rsp) == "INDEX_OUT_OF_RANGE"
    # Oversized bodies: announced by Content-Length, and streamed without one.
    huge = b"\0" * (8 << 20)
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=huge)
    assert rsp.status_code == 413 and error_reason(rsp) == "PAYLOAD_TOO_LARGE"

    async def stream() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"\0" * (256 << 10)

    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=stream())
    assert rsp.status_code == 413 and error_reason(rsp) == "PAYLOAD_TOO_LARGE"
    rsp = await client.put(f"{base}/metadata", content=enc.metadata_bcs + b"\0" * 100)
    assert rsp.status_code == 413
    # Nothing partial was kept, and the good sliver is still accepted.
    rsp = await client.get(f"{base}/slivers/{pair.pair_index}/primary/status")
    assert rsp.json()["success"]["data"] == "nonexistent"
    rsp = await client.put(f"{base}/slivers/{pair.pair_index}/primary", content=pair.primary.bcs)
    assert rsp.status_code == 201
    # No confirmation while slivers are missing.
    rsp = await client.get(f"{base}/confirmation/permanent")
    assert rsp.status_code == 400 and error_reason(rsp) == "MISSING_SLIVERS"
    rsp = await client.get(f"{node.url}/v1/blobs/not-a-blob-id/metadata")
    assert rsp.status_code == 400 and error_reason(rsp) == "INVALID_BLOB_ID"


# -- deletion and expiry -----------------------------------------------------------------------


async def test_deleted_blob_leaves_every_disk(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(40_000, 7)
    enc, blob_id = await _store(chain, client, data, deletable=True)
    dirs = [_blob_dir(dn, i, enc.blob_id) for i in range(dn.spec.n_nodes)]
    assert all(d.is_dir() for d in dirs)
    _, all_nodes = await nodes(chain)
    status = await _status_when(
        client,
        all_nodes[0],
        enc.blob_id,
        lambda s: s["deletable"]["deletableCounts"]["count_deletable_certified"] == 1,
    )
    assert status["deletable"]["deletableCounts"]["count_deletable_total"] == 1
    await chain.delete_blob(blob_id)
    await _gone_from_every_disk(dn, enc)
    rsp = await client.get(f"{all_nodes[0].url}/v1/blobs/{enc.blob_id}/status")
    assert rsp.json()["success"]["data"] == "nonexistent"


async def test_expired_blob_leaves_every_disk(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(30_000, 8)
    enc, blob_id = await _store(chain, client, data, epochs=1)
    keeper, _ = await _store(chain, client, _data(30_000, 9), epochs=5)
    dirs = [_blob_dir(dn, i, enc.blob_id) for i in range(dn.spec.n_nodes)]
    assert all(d.is_dir() for d in dirs)
    epoch = json.loads(dn.cli("devnet", "status", "--json").stdout)["epoch"]
    # At least one epoch; more if the blob reused a longer Storage resource.
    end = (await chain.blob(blob_id)).end_epoch
    assert epoch < end < epoch + 5
    out = dn.cli("devnet", "epoch", "advance", str(end - epoch)).stdout
    assert out.strip() == f"epoch {end}"
    await _gone_from_every_disk(dn, enc)
    assert all(_blob_dir(dn, i, keeper.blob_id).is_dir() for i in range(dn.spec.n_nodes))
    _, all_nodes = await nodes(chain)
    rsp = await client.get(f"{all_nodes[0].url}/v1/blobs/{enc.blob_id}/confirmation/permanent")
    assert rsp.status_code == 400 and error_reason(rsp) == "NOT_REGISTERED"


# -- test switches and disk faults -------------------------------------------------------------


async def test_fault_switches(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(60_000, 10)
    enc, _ = await _store(chain, client, data)
    meta = enc.verified_metadata()
    _, all_nodes = await nodes(chain)
    node = all_nodes[0]
    idx = node.devnet_index(dn)
    pair = enc.pair_for_shard(node.member.shards[0]).pair_index

    dn.cli("devnet", "node", "corrupt", str(idx))
    rsp = await get_sliver(client, node, enc.blob_id, pair, "primary")
    with pytest.raises(codec.SliverVerificationError):
        codec.verify_sliver(codec.Sliver(rsp.content, "primary"), meta)
    status = json.loads(dn.cli("devnet", "status", "--json").stdout)
    assert status["services"][idx + 1]["detail"]["faults"] == {"corrupt": True}

    dn.cli("devnet", "node", "refuse", str(idx))
    rsp = await client.get(f"{node.url}/v1/health")
    assert rsp.status_code == 503 and rsp.json()["error"]["status"] == "UNAVAILABLE"

    dn.cli("devnet", "node", "heal", str(idx))
    dn.cli("devnet", "node", "slow", str(idx), "--ms", "3000")
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{node.url}/v1/health", timeout=0.5)

    dn.cli("devnet", "node", "heal", str(idx))
    rsp = await get_sliver(client, node, enc.blob_id, pair, "primary")
    codec.verify_sliver(codec.Sliver(rsp.content, "primary"), meta)


async def test_corrupt_file_on_disk_is_never_served(
    dn: RunningDevnet, chain: WalrusChain, client: httpx.AsyncClient
) -> None:
    data = _data(60_000, 11)
    enc, _ = await _store(chain, client, data)
    _, all_nodes = await nodes(chain)
    node = all_nodes[2]
    idx = node.devnet_index(dn)
    pair = enc.pair_for_shard(node.member.shards[0]).pair_index
    path = _blob_dir(dn, idx, enc.blob_id) / f"{pair}.primary"
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0x01  # one bit of rot
    path.write_bytes(bytes(raw))
    rsp = await get_sliver(client, node, enc.blob_id, pair, "primary")
    assert rsp.status_code == 404 and error_reason(rsp) == "SLIVER_NOT_FOUND"
    assert not path.exists()
    assert "checksum mismatch" in dn.devnet.log_tail(f"node-{idx}", 50)
    # The blob still reads from the others, and re-uploading the sliver repairs the node.
    assert await _read_primary(client, [n for n in all_nodes if n is not node], enc) == data
    rsp = await client.put(
        f"{node.url}/v1/blobs/{enc.blob_id}/slivers/{pair}/primary",
        content=enc.pair(pair).primary.bcs,
    )
    assert rsp.status_code == 201
