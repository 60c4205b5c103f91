"""The store/read client (`walrusfs.store`) against a devnet of real processes (10 shards)."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import codec
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from chain import errors as chain_errors
from chain.client import WalrusChain
from chain.wallet import Keypair
from tests.devnet_harness import N_SHARDS, RunningDevnet, SharedDevnets, heal_all
from walrusfs.store.client import WalrusStore
from walrusfs.store.nodes import Committee, StorageNode

pytestmark = [pytest.mark.trio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("store-home"))


@pytest.fixture(autouse=True)
def _all_nodes_up(dn: RunningDevnet) -> Iterator[None]:
    yield
    heal_all(dn)


def _store(chain: WalrusChain, cache_dir: Path | None = None, **kw: Any) -> WalrusStore:
    cache = SliverCache(cache_dir, 1 << 30) if cache_dir is not None else None
    return WalrusStore(chain, cache=cache, deadline=10.0, grace=0.5, **kw)


@pytest.fixture
async def store(chain: WalrusChain, tmp_path: Path) -> AsyncIterator[WalrusStore]:
    s = _store(chain, tmp_path / "cache", ranges=RangeCache(1 << 20))
    try:
        yield s
    finally:
        await s.close()


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def _node_index(store: WalrusStore, dn: RunningDevnet, shard: int) -> tuple[int, str]:
    """(devnet index, node name) of the node holding `shard`."""
    committee = await store.committee()
    node = committee.by_shard[shard]
    port = int(node.url.rsplit(":", 1)[1])
    return dn.spec.node_ports.index(port), node.name


@pytest.mark.parametrize("size", [0, 1, 4096, 100_000, 1_500_000])
async def test_round_trip(store: WalrusStore, size: int) -> None:
    data = _data(size, size)
    result = await store.store(data, epochs=2)
    assert result.blob_id == codec.blob_id_of(data, N_SHARDS)
    assert result.size == size
    assert await store.read(result.blob_id, use_cache=False) == data
    assert await store.read(result.blob_id) == data


async def test_store_with_one_node_down_and_read_with_two_down(
    store: WalrusStore, dn: RunningDevnet
) -> None:
    first, _ = await _node_index(store, dn, 2)  # a 3-shard node: 7 shards remain
    dn.devnet.node_stop(first)
    data = _data(300_000, 11)
    result = await store.store(data, epochs=2)
    assert len(result.signers) == 3
    blob = await store.chain.blob(result.object_id)
    assert blob.certified_epoch is not None
    dn.devnet.node_start(first)
    second, _ = await _node_index(store, dn, 7)  # the other 3-shard node: 4 = k_p remain
    dn.devnet.node_stop(first, kill=True)
    dn.devnet.node_stop(second)
    assert await store.read(result.blob_id, use_cache=False) == data


async def test_corrupting_node_is_named_and_bytes_are_right(
    store: WalrusStore, dn: RunningDevnet, caplog: pytest.LogCaptureFixture
) -> None:
    data = _data(200_000, 12)
    result = await store.store(data, epochs=2)
    params = codec.EncodingParams(N_SHARDS)
    # Corrupt the node holding systematic row 0, so the read must meet it.
    index, name = await _node_index(store, dn, params.shard_for_pair(result.blob_id.raw, 0))
    dn.devnet.set_faults(index, corrupt=True)
    with caplog.at_level(logging.WARNING, logger="walrusfs.store.slivers"):
        assert await store.read(result.blob_id, use_cache=False) == data
    assert any(name in r.getMessage() and "bad" in r.getMessage() for r in caplog.records), (
        caplog.text
    )


async def test_range_read_fetches_only_its_rows_and_cache_hits_make_no_requests(
    chain: WalrusChain, tmp_path: Path
) -> None:
    writer = WalrusStore(chain, grace=30.0)  # every node holds its slivers
    data = _data(1_500_000, 13)
    result = await writer.store(data, epochs=2)
    assert len(result.signers) == 4
    await writer.close()
    reader = _store(chain, tmp_path / "c", ranges=RangeCache(1 << 20))
    try:
        got = await reader.read(result.blob_id, 700_000, 4096)
        assert got == data[700_000:704_096]
        assert reader.nodes.counts["get_sliver"] <= 2
        before = sum(reader.nodes.counts.values())
        # Same range again, and a different range within the same row: from the caches.
        assert await reader.read(result.blob_id, 700_000, 4096) == got
        assert await reader.read(result.blob_id, 700_100, 100) == data[700_100:700_200]
        assert sum(reader.nodes.counts.values()) == before
    finally:
        await reader.close()
    # A new client over the same cache directory: the disk cache survives, still no requests.
    again = _store(chain, tmp_path / "c")
    try:
        assert await again.read(result.blob_id, 700_000, 4096) == got
        assert sum(again.nodes.counts.values()) == 0
    finally:
        await again.close()


async def test_corrupt_cache_entry_is_refetched(chain: WalrusChain, tmp_path: Path) -> None:
    s = _store(chain, tmp_path / "c")
    try:
        data = _data(50_000, 14)
        result = await s.store(data, epochs=2)
        assert await s.read(result.blob_id) == data
        for path in (tmp_path / "c" / str(result.blob_id)).glob("p*"):
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
        before = s.nodes.counts["get_sliver"]
        assert await s.read(result.blob_id) == data
        assert s.nodes.counts["get_sliver"] > before
    finally:
        await s.close()


async def test_delete_then_store_reuses_the_storage(store: WalrusStore) -> None:
    first = await store.store(_data(60_000, 15), epochs=3)
    assert not first.already_certified
    await store.delete(first.object_id)
    second = await store.store(_data(60_000, 16), epochs=3)
    assert second.reused_storage and second.cost < first.cost


async def test_same_blob_twice_reuses_the_certified_blob(store: WalrusStore) -> None:
    data = _data(30_000, 17)
    first = await store.store(data, epochs=2)
    again = await store.store(data, epochs=4)
    assert again.already_certified and again.object_id == first.object_id
    assert again.extended_by == 2 and again.end_epoch == first.end_epoch + 2
    puts = store.nodes.counts["put_sliver"]
    third = await store.store(data, epochs=1)
    assert third.already_certified and store.nodes.counts["put_sliver"] == puts


async def test_quilt_of_many_files_read_patch_by_patch(store: WalrusStore) -> None:
    # 10 shards fit at most 6 patches (k_s - 1 columns); 500 files: tests/test_store_large.py.
    items = [
        codec.QuiltItem(f"file-{i:03}.txt", _data(50 + i * 7, 100 + i), {"n": str(i)})
        for i in range(6)
    ]
    result = await store.store_quilt(items, epochs=2)
    assert set(result.patches) == {it.identifier for it in items}
    for item in items:
        patch = await store.read_patch(result.patches[item.identifier], use_cache=False)
        assert patch.identifier == item.identifier and patch.data == item.data
        assert patch.tags == {"n": item.tags["n"]}


async def test_no_wal_fails_before_uploading(dn: RunningDevnet, chain: WalrusChain) -> None:
    poor = Keypair.generate()

    def fund(ptb: Any, info: Any, wal: Any) -> None:
        (coin,) = ptb.split_coins(ptb.gas(), [ptb.u64(10**9)])
        ptb.transfer([coin], poor.address)

    await chain.execute_ptb(fund)
    poor_chain = WalrusChain(dn.spec.profile(), poor)
    s = _store(poor_chain)
    try:
        with pytest.raises(chain_errors.InsufficientWal) as info:
            await s.store(_data(10_000, 18), epochs=2)
        assert "needs" in str(info.value) and "WAL" in str(info.value)
        assert info.value.need > 0 and info.value.have == 0
        assert sum(v for k, v in s.nodes.counts.items() if k.startswith("put")) == 0
    finally:
        await s.close()
        await poor_chain.close()


async def test_committee_quorum(store: WalrusStore) -> None:
    committee: Committee = await store.committee()
    assert committee.quorum == 7  # 3*7 >= 21
    assert sum(n.weight for n in committee.nodes) == N_SHARDS


async def test_a_node_that_times_out_does_not_sink_the_store(
    store: WalrusStore, chain: WalrusChain, dn: RunningDevnet
) -> None:
    """Upload failures arrive grouped from the per-sliver tasks; a node whose every request
    times out must count as one failed node, and the others still certify the blob."""
    index, name = await _node_index(store, dn, 2)  # a 3-shard node: 7 shards remain
    # The failure must land before the grace period after quorum would cut the node off.
    s = WalrusStore(chain, timeout=0.5, deadline=1.0, grace=10.0)
    put_metadata = s.nodes.put_metadata

    async def then_slow(node: StorageNode, blob_id: codec.BlobId, bcs: bytes) -> bool:
        # The metadata lands; every sliver PUT to this node then times out.
        stored = await put_metadata(node, blob_id, bcs)
        if node.name == name:
            dn.devnet.set_faults(index, delay_ms=3000)
        return stored

    s.nodes.put_metadata = then_slow  # type: ignore[method-assign]
    try:
        result = await s.store(_data(20_000, 19), epochs=2)
        assert name not in result.signers and len(result.signers) == 3
        assert (await chain.blob(result.object_id)).certified_epoch is not None
    finally:
        await s.close()
