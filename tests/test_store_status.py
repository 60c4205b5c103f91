"""Blob and sliver status as the official client uses them, and committees while shards move,
on the small devnet (4 nodes, 10 shards):

* a resumed upload asks each node that already had the metadata for the status of every sliver
  (large enough to be worth asking) and sends only the ones it lacks, counted on the nodes;
* a blob the chain declared invalid is refused by a read, although its slivers are served;
* during an epoch change that moves shards, a blob certified before it is read from the
  previous committee and writes go to the new one; after the change, reads go to the new one.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import trio

import codec
from chain.client import WalrusChain
from codec.params import EncodingParams
from codec.sliver import Axis
from tests.devnet_harness import (
    RunningDevnet,
    heal_all,
    node_requests,
    nodes,
    register,
    start_devnet,
    upload,
)
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import BlobInvalid, ShardNotAssigned
from walrusfs.store.nodes import ActiveCommittees, Committee

pytestmark = [pytest.mark.trio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(tmp_path_factory.mktemp("status-home"))


@pytest.fixture
async def chain(dn: RunningDevnet) -> AsyncIterator[WalrusChain]:
    chain = await dn.chain()
    yield chain
    await chain.close()


def _delta(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], key: str
) -> dict[str, int]:
    return {n: after[n].get(key, 0) - before[n].get(key, 0) for n in after}


async def test_a_resumed_upload_sends_only_the_slivers_the_nodes_lack(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    data = os.urandom(300_000)  # slivers of 42 and 75 KB: both above the status threshold
    enc = codec.encode(data, 10)
    assert len(enc.pair(0).secondary.data) >= 5_560
    blob = await register(chain, enc, epochs=2, deletable=True)
    _, members = await nodes(chain)
    full, half = members[0], members[1]
    # an upload cut off: all of `full`'s slivers, `half`'s metadata and primaries, the others
    # nothing (as if the process was killed halfway)
    async with httpx.AsyncClient(timeout=30) as client:
        await upload(client, [full], enc, skip=set())
        rsp = await client.put(
            f"{half.url}/v1/blobs/{enc.blob_id}/metadata", content=enc.metadata_bcs
        )
        assert rsp.status_code == 201
        for shard in half.member.shards:
            pair = enc.pair_for_shard(shard)
            rsp = await client.put(
                f"{half.url}/v1/blobs/{enc.blob_id}/slivers/{pair.pair_index}/primary",
                content=pair.primary.bcs,
            )
            assert rsp.status_code == 201
    before = node_requests(dn)
    store = WalrusStore(chain)
    try:
        result = await store.store(data, 2, resume=blob.id)
        assert result.object_id == blob.id
        sent = store.nodes.counts["put_sliver"]
        assert await store.read(enc.blob_id, use_cache=False) == data
    finally:
        await store.close()
    after = node_requests(dn)
    puts = _delta(before, after, "PUT put_sliver")
    asked = _delta(before, after, "GET sliver_status")
    name = {m.index: f"node-{m.devnet_index(dn)}" for m in members}
    expected_puts = {}
    expected_asked = {}
    for m in members:
        shards = len(m.member.shards)
        if m is full:
            expected_puts[name[m.index]], expected_asked[name[m.index]] = 0, 2 * shards
        elif m is half:
            expected_puts[name[m.index]], expected_asked[name[m.index]] = shards, 2 * shards
        else:  # the metadata was new there: nothing to ask, everything sent
            expected_puts[name[m.index]], expected_asked[name[m.index]] = 2 * shards, 0
    assert puts == expected_puts
    assert asked == expected_asked
    assert sent == sum(expected_puts.values())


async def test_a_blob_the_chain_declared_invalid_is_refused(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    data = os.urandom(50_000)
    store = WalrusStore(chain)
    try:
        result = await store.store(data, 2)
    finally:
        await store.close()
    dn.devnet.invalidate_blob(result.blob_id.raw)
    _, members = await nodes(chain)
    # every node learns of it from the chain's events
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=10) as client:
        for m in members:
            while True:
                rsp = await client.get(f"{m.url}/v1/blobs/{result.blob_id}/status")
                if "invalid" in rsp.json()["success"]["data"]:
                    break
                assert time.monotonic() < deadline, "a node never reported the blob invalid"
                await trio.sleep(0.2)
        # its metadata is still served: only the status tells the blob is invalid
        rsp = await client.get(f"{members[0].url}/v1/blobs/{result.blob_id}/metadata")
        assert rsp.status_code == 200
    fresh = WalrusStore(chain)
    try:
        with pytest.raises(BlobInvalid) as refused:
            await fresh.read(result.blob_id)
        assert refused.value.errno == errno.EIO
        assert "invalid" in str(refused.value)
        assert fresh.nodes.counts["blob_status"] >= 1
    finally:
        await fresh.close()


async def test_a_shard_no_node_holds_is_a_clear_error() -> None:
    committee = Committee(3, 10, (), {})
    with pytest.raises(ShardNotAssigned) as missing:
        committee.holder(7)
    assert missing.value.errno == errno.EIO
    assert "shard 7" in str(missing.value) and "epoch 3" in str(missing.value)


async def test_reads_go_to_the_previous_committee_while_shards_move(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    """Runs last: it changes the committee of the module's devnet."""
    before = await ActiveCommittees.load(chain)
    leaving = {n.name: n for n in before.current.nodes}["node-0"].shards
    params = EncodingParams(10)
    while True:  # a blob with a systematic row (read without decoding) on node-0's shards
        data = os.urandom(120_000)
        blob_id = codec.encode(data, 10).blob_id
        if any(params.shard_for_pair(blob_id.raw, r) in leaving for r in range(params.k_p)):
            break
    store = WalrusStore(chain)
    try:
        old = await store.store(data, 5, deletable=False)
    finally:
        await store.close()
    try:
        for i in range(dn.spec.n_nodes):  # no node takes over its shards for now
            dn.devnet.set_faults(i, sync_paused=True)
        dn.devnet.set_stake(0, 1)  # node-0 leaves with almost no stake: its shards move
        dn.devnet.advance_epoch(1)
        committees = await ActiveCommittees.load(chain)
        assert committees.is_change_in_progress()
        assert committees.epoch == before.epoch + 1
        previous, current = committees.previous, committees.current
        assert previous is not None
        moved = {s for s in range(10) if previous.holder(s).name != current.holder(s).name}
        assert moved and "node-0" not in {n.name for n in current.nodes}
        with pytest.raises(Exception, match="in progress"):
            dn.devnet.advance_epoch(1)  # the next epoch waits for the sync

        reader = WalrusStore(chain)
        reader.nodes.trace = []
        try:
            assert await reader.read(old.blob_id) == data
            got = _sliver_reads(reader.nodes.trace, old.blob_id)
            # every sliver came from the shard's holder in the previous epoch
            assert got and all(node == previous.holder(shard).name for node, shard in got)
            from_moved = sum(shard in moved for _, shard in got)
            assert from_moved >= 1, f"no read touched a moved shard: {got}"
            # a write goes to the new committee and is certified by it
            written = await reader.store(os.urandom(30_000), 2)
            assert set(written.signers) <= {n.name for n in current.nodes}
            assert "node-0" not in written.signers
        finally:
            await reader.close()
        assert committees.read_committee(before.epoch) is previous
        assert committees.read_committee(committees.epoch) is current
    finally:
        heal_all(dn)
    deadline = time.monotonic() + 60
    while (await ActiveCommittees.load(chain)).is_change_in_progress():
        assert time.monotonic() < deadline, "the epoch change never finished"
        await trio.sleep(0.3)
    after = WalrusStore(chain)
    after.nodes.trace = []
    try:
        assert await after.read(old.blob_id) == data
        got = _sliver_reads(after.nodes.trace, old.blob_id)
        assert got and all(node == current.holder(shard).name for node, shard in got)
    finally:
        await after.close()


def _sliver_reads(
    trace: list[tuple[str, str, str]], blob_id: codec.BlobId
) -> list[tuple[str, int]]:
    """(node, shard) of every sliver GET of `blob_id` in a NodeClient trace."""
    params = EncodingParams(10)
    out = []
    for kind, node, path in trace:
        if kind != "get_sliver" or str(blob_id) not in path:
            continue
        pair = int(path.split("/")[5])
        axis = path.split("/")[6]
        assert axis == Axis.PRIMARY.value
        out.append((node, params.shard_for_pair(blob_id.raw, pair)))
    return out
