"""Blobs in a Walrus storage pool (`walrusfs/store/pooled.py`, `chain/pools.py`) against a
devnet of real processes: the stand-in runs the deployed `storage_pool.move` twin and the
nodes store pooled blobs until their pool ends."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

import codec
from chain import errors as chain_errors
from chain.client import WalrusChain
from tests.devnet_harness import N_SHARDS, RunningDevnet, SharedDevnets
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import BlobNotFound, PooledLifetime

pytestmark = [pytest.mark.trio, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("pools-home"))


@pytest.fixture
async def store(chain: WalrusChain, tmp_path: Path) -> AsyncIterator[WalrusStore]:
    s = WalrusStore(chain, deadline=10.0, grace=0.5)
    try:
        yield s
    finally:
        await s.close()


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _wal(balance_before: int, balance_after: int) -> int:
    return balance_before - balance_after


async def test_pooled_blobs_round_trip_and_a_delete_frees_capacity_for_the_next(
    store: WalrusStore, chain: WalrusChain
) -> None:
    pool, paid = await store.create_pool(1 << 20, 3)
    assert paid > 0
    a, b = _data(50_000, 1), _data(70_000, 2)
    ra = await store.store(a, 3, pool=pool)
    rb = await store.store(b, 3, pool=pool)
    state = await chain.pools.get(pool)
    params = codec.EncodingParams(N_SHARDS)
    assert state.blob_count == 2
    assert state.used == params.encoded_size(len(a)) + params.encoded_size(len(b))
    assert state.capacity >= state.used
    assert ra.pool == rb.pool == pool and ra.end_epoch == state.end_epoch
    assert await store.read(ra.blob_id, use_cache=False) == a
    assert await store.read(rb.blob_id, use_cache=False) == b
    pooled = await chain.pools.blob(state, rb.blob_id.to_u256())
    assert pooled is not None and pooled.is_certified and pooled.id == rb.object_id

    status = await store.blob_status(rb.blob_id)
    assert status is not None and status.kind == "deletable" and status.is_certified

    # a delete returns the blob's capacity to the pool; the next blob of that size uses it
    capacity = state.capacity
    await store.delete(rb.object_id, pool)
    with trio.fail_after(60):  # the nodes follow the PooledBlobDeleted event and drop it
        while True:
            fresh = WalrusStore(chain)  # a store remembers a status for minutes
            try:
                await fresh.blob_status(rb.blob_id)
            except BlobNotFound:
                break
            finally:
                await fresh.close()
            await trio.sleep(0.5)
    after_delete = await chain.pools.get(pool)
    assert after_delete.blob_count == 1
    assert after_delete.used == params.encoded_size(len(a))
    assert after_delete.capacity == capacity
    c = _data(70_000, 3)
    wal_before = (await chain.balances()).wal
    rc = await store.store(c, 3, pool=pool)
    wal_spent = wal_before - (await chain.balances()).wal
    after_reuse = await chain.pools.get(pool)
    assert after_reuse.capacity == capacity, "the freed capacity was not reused"
    info = await chain.system_info()
    assert (
        wal_spent
        == rc.cost
        == codec.params.storage_units(params.encoded_size(len(c))) * (info.write_price)
    ), "a blob in freed capacity pays the write fee only"
    assert await store.read(rc.blob_id, use_cache=False) == c


async def test_one_extension_renews_every_blob_of_the_pool(
    store: WalrusStore, chain: WalrusChain
) -> None:
    pool, _ = await store.create_pool(1 << 20, 2)
    results = [await store.store(_data(10_000 + i, 10 + i), 2, pool=pool) for i in range(3)]
    end = (await chain.pools.get(pool)).end_epoch
    paid, new_end = await store.extend_pool(pool, 4, 0.1)
    assert new_end == end + 4 and paid > 0
    seen = {b.id: b for b in await chain.blobs() if b.pool == pool}
    assert {r.object_id for r in results} <= set(seen)
    assert all(seen[r.object_id].end_epoch == new_end for r in results)


async def test_the_same_bytes_again_reuse_the_pooled_blob(
    store: WalrusStore, chain: WalrusChain
) -> None:
    pool, _ = await store.create_pool(1 << 20, 2)
    data = _data(20_000, 99)
    first = await store.store(data, 2, pool=pool, attributes={"walrusfs:file": "record A"})
    again = await store.store(data, 2, pool=pool, attributes={"walrusfs:file": "record B"})
    assert again.object_id == first.object_id
    assert again.already_certified and again.cost == 0
    assert (await chain.pools.get(pool)).blob_count == 1
    # each file keeps its record on the shared blob (what `fsck --rebuild` reads)
    await store.store(data, 2, pool=pool, attributes={"walrusfs:file": "record B"})
    assert await chain.attributes(first.object_id) == {
        "walrusfs:file": "record A",
        "walrusfs:file:1": "record B",
    }


async def test_the_pool_contract_s_refusals_arrive_as_typed_errors(
    store: WalrusStore, chain: WalrusChain
) -> None:
    """What a caller handles by class: the blob ID is in the pool already (its table is keyed
    by blob ID), the pool has no such blob, the pool has less unused capacity than asked."""
    pool, _ = await store.create_pool(1 << 20, 2)
    data = _data(5_000, 7)
    stored = await store.store(data, 2, pool=pool)
    enc = codec.encode(data, N_SHARDS)
    with pytest.raises(chain_errors.BlobInPoolAlready):
        await chain.pools.register(
            pool,
            stored.blob_id.to_u256(),
            int.from_bytes(enc.root_hash, "little"),
            len(data),
            deletable=True,
        )
    with pytest.raises(chain_errors.NotInPool):
        await chain.pools.delete(pool, [stored.blob_id.to_u256() ^ 1])
    state = await chain.pools.get(pool)
    with pytest.raises(chain_errors.PoolFull):
        await chain.pools.shrink(pool, state.available + 1)
    assert (await chain.pools.get(pool)).blob_count == 1  # nothing changed


async def test_every_pool_operation_and_its_refusals_by_class(
    store: WalrusStore, chain: WalrusChain
) -> None:
    """The pool's other entry points through the client (destroy, create from a Storage,
    absorb, shrink by percent) and the aborts a caller tells apart by class."""
    a, _ = await store.create_pool(1 << 20, 2)
    b, _ = await store.create_pool(1 << 20, 3)
    storage = await chain.pools.destroy(a)  # empty: its Storage comes back
    assert storage.storage_size == 1 << 20
    with pytest.raises(chain_errors.IncompatibleEndEpoch):
        await chain.pools.absorb(b, storage.id)  # it ends before b
    c = await chain.pools.create_with_storage(storage.id)
    assert c.capacity == 1 << 20 and c.end_epoch == storage.end_epoch

    permanent = await store.store(_data(3_000, 11), 3, pool=b, deletable=False)
    with pytest.raises(chain_errors.BlobNotDeletable):
        await chain.pools.delete(b, [permanent.blob_id.to_u256()])
    with pytest.raises(chain_errors.PoolNotEmpty):
        await chain.pools.destroy(b)
    with pytest.raises(chain_errors.InvalidPercent):
        await chain.pools.shrink_by_percent(b, 101)
    with pytest.raises(chain_errors.NothingToExtract):
        await chain.pools.shrink(b, 0)
    before = await chain.pools.get(b)
    taken = await chain.pools.shrink_by_percent(b, 100)
    after = await chain.pools.get(b)
    assert taken.storage_size == before.available and after.available == 0
    assert after.used == before.used and after.blob_count == 1
    assert await store.read(permanent.blob_id, use_cache=False) == _data(3_000, 11)


async def test_a_pooled_blob_is_deleted_through_its_pool_and_not_extended_alone(
    store: WalrusStore, chain: WalrusChain
) -> None:
    """`walrusfs blob delete` and `blob extend` name a blob by its object: for a pooled one
    the delete goes through its pool (found from the object), and an extension of it alone
    is refused with the reason (its lifetime is the pool's)."""
    pool, _ = await store.create_pool(1 << 20, 2)
    stored = await store.store(_data(8_000, 21), 2, pool=pool)
    with pytest.raises(PooledLifetime, match="storage pool"):
        await store.extend(stored.object_id, 1)
    await store.delete(stored.object_id)  # no pool named: the object names it
    assert (await chain.pools.get(pool)).blob_count == 0


async def test_equal_bytes_stored_at_once_share_one_entry(
    store: WalrusStore, chain: WalrusChain
) -> None:
    """Two uploads of the same bytes at the same time (a sparse file's equal chunks): both
    look before either registers; the second registration is refused by the pool's table
    (one entry per blob ID) and continues the first's entry. Both succeed, on one blob."""
    pool, _ = await store.create_pool(1 << 20, 2)
    data = _data(30_000, 31)
    results = []

    async def one() -> None:
        results.append(await store.store(data, 2, pool=pool))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    assert results[0].object_id == results[1].object_id
    assert (await chain.pools.get(pool)).blob_count == 1
    assert await store.read(results[0].blob_id, use_cache=False) == data
