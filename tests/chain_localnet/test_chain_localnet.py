"""The Walrus chain client against the stand-in over real gRPC on localhost: the system's
state and a blob's whole life (register, certify, extend, attributes, delete), Storage reused,
split and fused, WAL from the exchange, and metadata built in a PTB.

Each test runs pysui's gRPC client (on its asyncio thread, awaited from trio) against a fresh
ledger. WAL is checked by the Move pricing formulas.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

import codec
from chain import errors
from chain import move_types as mt
from chain.client import SystemInfo, WalrusChain
from chain.pricing import extend_cost, reserve_cost, write_cost
from chain.ptb import Ptb
from tests.chain_localnet.helpers import USER, _certify, _encode, _register
from tests.localnet_harness import LocalTestnet

pytestmark = pytest.mark.trio


# -- reads ------------------------------------------------------------------------------------


async def test_system_state_committee_and_balances(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    assert (info.epoch, info.n_shards, info.max_epochs_ahead) == (0, 10, 53)
    assert (info.storage_price, info.write_price) == (100_000, 20_000)
    assert info.package_id == testnet.net.deployment.walrus_pkg
    members = await chain.committee()
    assert sorted(s for m in members for s in m.shards) == list(range(10))
    assert {m.network_address for m in members} == {f"localhost:{9100 + i}" for i in range(4)}
    keys = {m.public_key for m in members}
    assert keys == set(testnet.node_keys)
    balances = await chain.balances()
    assert (balances.sui, balances.wal) == (10**12, 10**12)


# -- the whole life of a blob ----------------------------------------------------------------


async def test_blob_lifecycle_and_storage_reuse(chain: WalrusChain, testnet: LocalTestnet) -> None:
    info = await chain.system_info()
    enc = _encode(b"walrusfs " * 500)
    encoded = codec.EncodingParams(10).encoded_size(len(enc.data))
    wal0 = (await chain.balances()).wal

    estimate = await chain.estimate(len(enc.data), 3)
    assert estimate.reuse is None
    assert estimate.storage == reserve_cost(encoded, 3, info.storage_price)
    assert estimate.write == write_cost(encoded, info.write_price)

    blob, cost, result = await chain.register_blob(
        enc.blob_id.to_u256(),
        enc.root_hash,
        len(enc.data),
        3,
        deletable=True,
        attributes={"path": "/docs/a.txt"},
    )
    assert cost == estimate
    assert (blob.size, blob.deletable, blob.end_epoch, blob.certified_epoch) == (
        len(enc.data),
        True,
        3,
        None,
    )
    assert blob.storage.storage_size == encoded
    assert [t.rsplit("::", 1)[1] for t, _ in result.events] == ["BlobRegistered"]
    assert mt.BlobRegistered.from_bcs(result.events[0][1]).object_id == blob.id
    wal1 = (await chain.balances()).wal
    assert wal0 - wal1 == estimate.total  # storage for 3 epochs + write fee, nothing else
    assert await chain.attributes(blob.id) == {"path": "/docs/a.txt"}

    await _certify(chain, testnet, blob)
    certified = await chain.blob(blob.id)
    assert certified.certified_epoch == 0

    paid, _ = await chain.extend_blob(blob.id, 2)
    assert paid == extend_cost(encoded, 2, info.storage_price)
    assert (await chain.blob(blob.id)).end_epoch == 5
    wal2 = (await chain.balances()).wal
    assert wal1 - wal2 == paid

    await chain.set_attributes(blob.id, {"mode": "0644", "path": "/docs/b.txt"})
    await chain.remove_attributes(blob.id, ["mode", "absent"])
    assert await chain.attributes(blob.id) == {"path": "/docs/b.txt"}

    storage = await chain.delete_blob(blob.id)
    assert (storage.start_epoch, storage.end_epoch, storage.storage_size) == (0, 5, encoded)
    assert await chain.blobs() == []
    assert [s.id for s in await chain.storage_resources()] == [storage.id]
    with pytest.raises(errors.ObjectNotFound):
        await chain.blob(blob.id)

    # The next blob of the same size reuses that Storage: no reserve_space, only the write fee.
    enc2 = _encode(b"another file " * 300)
    estimate2 = await chain.estimate(len(enc2.data), 3)
    assert estimate2.reuse is not None and estimate2.reuse.id == storage.id
    assert estimate2.storage == 0
    blob2, cost2, result2 = await chain.register_blob(
        enc2.blob_id.to_u256(), enc2.root_hash, len(enc2.data), 3
    )
    assert blob2.storage.id == storage.id
    assert blob2.end_epoch == 3  # as asked: epochs 3..5 of the Storage are split off
    assert (await chain.balances()).wal == wal2 - cost2.write
    # what the smaller, shorter blob does not need stays in the wallet
    encoded2 = codec.EncodingParams(10).encoded_size(len(enc2.data))
    assert blob2.storage.storage_size == encoded2 < encoded
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch, s.end_epoch, s.storage_size) for s in rest) == [
        (0, 5, encoded - encoded2),
        (3, 5, encoded2),
    ]
    assert {s.id for s in result2.created["storage_resource::Storage"]} == {s.id for s in rest}


async def test_reuse_picks_the_smallest_adequate_storage(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    big, small = 2_000_000, 1_000_000

    def reserve(size: int) -> Any:
        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
            res = ptb.move_call(
                info.package_id, "system", "reserve_space", [system, ptb.u64(size), ptb.u32(4), wal]
            )
            ptb.transfer([res], USER.address)

        return build

    await chain.execute_ptb(reserve(big), wal_needed=reserve_cost(big, 4, info.storage_price))
    await chain.execute_ptb(reserve(small), wal_needed=reserve_cost(small, 4, info.storage_price))
    enc = _encode(b"x" * 1000)
    estimate = await chain.estimate(len(enc.data), 2)
    assert estimate.reuse is not None and estimate.reuse.storage_size == small
    # Storage that ends too early is not reused.
    assert (await chain.estimate(len(enc.data), 5)).reuse is None

    # Registering splits off what the blob does not need: the rest stays in the wallet.
    blob, cost, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), 2
    )
    assert cost.storage == 0 and blob.storage.storage_size == cost.encoded_size
    assert blob.end_epoch == info.epoch + 2
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch - info.epoch, s.storage_size) for s in rest) == sorted(
        [(0, big), (0, small - cost.encoded_size), (2, cost.encoded_size)]
    )


async def test_storage_of_one_period_is_fused_for_a_larger_blob(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """Three freed resources, none large enough alone: the fewest that together are get
    fused (fuse_amount) and the excess split off, instead of reserving new space."""
    info = await chain.system_info()
    enc = _encode(os.urandom(1_000_000))
    need = codec.EncodingParams(info.n_shards).encoded_size(len(enc.data))
    sizes = [need // 2, need // 2 + 1000, need // 3]

    def reserve(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        for size in sizes:
            res = ptb.move_call(
                info.package_id, "system", "reserve_space", [system, ptb.u64(size), ptb.u32(4), wal]
            )
            ptb.transfer([res], USER.address)

    await chain.execute_ptb(
        reserve, wal_needed=sum(reserve_cost(x, 4, info.storage_price) for x in sizes)
    )
    estimate = await chain.estimate(len(enc.data), 3)
    assert estimate.storage == 0 and estimate.reuse is not None and len(estimate.fuse) == 1
    wal = (await chain.balances()).wal
    blob, cost, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), 3
    )
    assert blob.storage.storage_size == need and blob.end_epoch == info.epoch + 3
    assert (await chain.balances()).wal == wal - cost.write
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch - info.epoch, s.storage_size) for s in rest) == sorted(
        [(0, need // 3), (0, need // 2 + need // 2 + 1000 - need), (3, need)]
    )


async def test_get_wal_from_the_exchange(chain: WalrusChain) -> None:
    before = await chain.balances()
    result = await chain.get_wal(5 * 10**9)
    after = await chain.balances()
    assert after.wal - before.wal == 5 * 10**9  # rate 1:1
    assert before.sui - after.sui == 5 * 10**9 + result.gas_used


async def test_metadata_built_in_a_ptb_and_missing_key_abort(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """`metadata::new` + `insert_or_update` + `add_metadata` in one PTB; removing an absent key
    with `remove_metadata_pair` aborts in `sui::vec_map` (EKeyDoesNotExist = 1)."""
    blob = await _register(chain, _encode(b"metadata in a ptb"))
    ref = await chain.object_ref(blob.id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        meta = ptb.move_call(info.package_id, "metadata", "new", [])
        ptb.move_call(
            info.package_id,
            "metadata",
            "insert_or_update",
            [meta, ptb.string("a"), ptb.string("1")],
        )
        ptb.move_call(info.package_id, "blob", "add_metadata", [ptb.owned(ref), meta])

    await chain.execute_ptb(build)
    assert await chain.attributes(blob.id) == {"a": "1"}
    ref = await chain.object_ref(blob.id)

    def twice(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        meta = ptb.move_call(info.package_id, "metadata", "new", [])
        ptb.move_call(info.package_id, "blob", "add_metadata", [ptb.owned(ref), meta])

    with pytest.raises(errors.MoveAbortError) as dup:
        await chain.execute_ptb(twice)
    assert (dup.value.module, dup.value.code, dup.value.name) == ("blob", 7, "EDuplicateMetadata")
    ref = await chain.object_ref(blob.id)

    def remove_absent(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id, "blob", "remove_metadata_pair", [ptb.owned(ref), ptb.string("zz")]
        )

    with pytest.raises(errors.MoveAbortError) as missing:
        await chain.execute_ptb(remove_absent)
    assert (missing.value.module, missing.value.code) == ("vec_map", 1)
    assert await chain.attributes(blob.id) == {"a": "1"}
