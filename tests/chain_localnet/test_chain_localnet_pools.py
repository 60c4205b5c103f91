"""Storage pools on the stand-in, over real gRPC on localhost, against the deployed contracts
(MystenLabs/walrus `mainnet-contracts/walrus/sources/system.move` "Storage Pool",
`system/system_state_inner.move`, `system/storage_pool.move`): PTBs built with `Ptb` and run
by the chain client; objects read back as a full node serves them (GetObject on the pool, its
inner-state field and a PooledBlob, ListDynamicFields on the blob table); every abort of these
paths checked by module and code (and, for the Sui framework's, package and function).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import pytest

from chain import errors
from chain import move_types as mt
from chain import pool_types as pt
from chain.client import SystemInfo, WalrusChain
from chain.localnet.txcontext import Tx
from chain.ptb import Ptb
from codec.params import BYTES_PER_UNIT_SIZE, EncodingParams, storage_units
from tests.chain_localnet.helpers import USER, _encode, _where
from tests.chain_localnet.pool_helpers import (
    SYS,
    SYS_MUT,
    WAL,
    Owned,
    abort_location,
    call,
    certify,
    contents,
    create_pool,
    created,
    events,
    get_object,
    list_fields,
    list_owned,
    pool_state,
    register,
)
from tests.localnet_harness import N_SHARDS, LocalTestnet, localnet

pytestmark = pytest.mark.trio

SUI2 = "0x" + "0" * 63 + "2"
ENC = EncodingParams(N_SHARDS)


def _size(data: bytes) -> int:
    return ENC.encoded_size(len(data))


async def _aborts(coro: Any) -> errors.MoveAbortError:
    with pytest.raises(errors.MoveAbortError) as info:
        await coro
    return info.value


async def _framework_abort(tn: LocalTestnet, exc: errors.MoveAbortError) -> tuple[Any, ...]:
    """(package, module, function, code) of an abort, read back from the transaction."""
    where = await abort_location(tn, exc.digest)
    return (where.package, where.module, where.function_name, exc.code)


def _accessor(tn: LocalTestnet, name: str, pool_id: str, *args: Any) -> Any:
    """The value `storage_pool::name` returns, run by the stand-in's twin on the ledger."""
    dep = tn.net.deployment
    fn = tn.net.executor.interpreter.functions[(dep.walrus_pkg, "storage_pool", name)]
    tx = Tx(tn.net.ledger, dep.decode, USER.address, bytes(32), 0)
    pool = tx.load(pool_id)
    assert pool is not None
    return fn.impl(tx, pool, *args)[0]


# -- a pool's life, as a full node serves it -----------------------------------------------------


async def test_create_register_certify_read_back_over_grpc(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    pkg = info.type_package
    a, b = _encode(b"pooled blob a"), _encode(b"pooled blob b, permanent")
    capacity = 3 * _size(a.data)
    wal0 = (await chain.balances()).wal
    used0 = testnet.net.system_state().used_capacity_size

    result = await call(
        chain,
        testnet,
        "system",
        "create_storage_pool",
        [SYS_MUT, ("u64", capacity), ("u32", 3), WAL],
        keep=True,
    )
    (pool_id,) = created(result, "storage_pool::StoragePool")
    assert (await chain.balances()).wal == wal0 - info.storage_price * storage_units(capacity) * 3
    assert testnet.net.system_state().used_capacity_size == used0 + capacity
    (ev,) = events(result, "StoragePoolCreated")
    assert pt.StoragePoolCreated.from_bcs(ev) == pt.StoragePoolCreated(0, pool_id, capacity, 0, 3)

    pool = await get_object(testnet, pool_id)
    assert pool is not None and pool.owner is not None
    assert pool.object_type == f"{pkg}::storage_pool::StoragePool"
    assert (pool.owner.kind, pool.owner.address) == (pb.OwnerOwnerKind.ADDRESS, USER.address)
    assert pool.has_public_transfer
    assert pt.StoragePool.from_bcs(contents(pool)) == pt.StoragePool(pool_id, pt.POOL_VERSION)
    owned = await list_owned(testnet, USER.address, f"{pkg}::storage_pool::StoragePool")
    assert [o.object_id for o in owned] == [pool_id]
    inner = await get_object(testnet, pt.pool_inner_id(pool_id))
    assert inner is not None and inner.owner is not None
    assert inner.object_type == (
        f"{SUI2}::dynamic_field::Field<u64, {pkg}::storage_pool::StoragePoolInnerV1>"
    )
    assert (inner.owner.kind, inner.owner.address) == (pb.OwnerOwnerKind.OBJECT, pool_id)
    assert not inner.has_public_transfer
    state = await pool_state(testnet, pool_id)
    assert (state.start_epoch, state.end_epoch, state.capacity) == (0, 3, capacity)
    assert (state.used, state.blob_count, state.inner.blobs.size) == (0, 0, 0)
    (root_field,) = await list_fields(testnet, pool_id)
    assert root_field.kind == pb.DynamicFieldDynamicFieldKind.FIELD
    assert root_field.name == pb.Bcs(name="u64", value=(1).to_bytes(8, "little"))
    assert root_field.value_type == f"{pkg}::storage_pool::StoragePoolInnerV1"
    assert await list_fields(testnet, state.table_id) == []

    wal1 = (await chain.balances()).wal
    result = await call(
        chain,
        testnet,
        "system",
        "register_pooled_blob",
        [
            SYS_MUT,
            Owned(pool_id),
            ("u256", a.blob_id.to_u256()),
            ("u256", a.root_hash),
            ("u64", len(a.data)),
            ("u8", 1),
            ("boolean", True),
            WAL,
        ],
    )
    (ev,) = events(result, "PooledBlobRegistered")
    registered = pt.PooledBlobRegistered.from_bcs(ev)
    obj_a = registered.object_id
    assert registered == pt.PooledBlobRegistered(
        0, a.blob_id.to_u256(), len(a.data), 1, True, obj_a, pool_id
    )
    obj_b = await register(chain, testnet, pool_id, b, deletable=False)
    write = info.write_price * (storage_units(_size(a.data)) + storage_units(_size(b.data)))
    assert (await chain.balances()).wal == wal1 - write
    assert testnet.net.system_state().used_capacity_size == used0 + capacity  # no new capacity

    state = await pool_state(testnet, pool_id)
    assert state.used == _size(a.data) + _size(b.data)
    assert (state.blob_count, state.inner.blobs.size) == (2, 2)
    children = {a.blob_id.to_u256(): obj_a, b.blob_id.to_u256(): obj_b}
    fields = await list_fields(testnet, state.table_id)
    assert sorted(f.field_id or "" for f in fields) == sorted(
        pt.pooled_blob_field_id(state.table_id, blob_id) for blob_id in children
    )
    for field in fields:
        assert field.name is not None and field.name.value is not None
        blob_id = int.from_bytes(field.name.value, "little")
        child = children[blob_id]
        assert field.kind == pb.DynamicFieldDynamicFieldKind.OBJECT
        assert field.parent == state.table_id
        assert field.name == pb.Bcs(name="u256", value=blob_id.to_bytes(32, "little"))
        assert field.value == pb.Bcs(name=f"{SUI2}::object::ID", value=bytes.fromhex(child[2:]))
        assert field.value_type == f"{pkg}::storage_pool::PooledBlob"
        assert field.child_id == child
        assert field.field_object is not None and field.field_object.owner is not None
        assert field.field_object.object_type == (
            f"{SUI2}::dynamic_field::Field<{SUI2}::dynamic_object_field::Wrapper<u256>, "
            f"{SUI2}::object::ID>"
        )
        assert field.field_object.owner.address == state.table_id
        assert field.child_object is not None and field.child_object.object_id == child

    pooled = await get_object(testnet, obj_a)
    assert pooled is not None and pooled.owner is not None
    assert pooled.object_type == f"{pkg}::storage_pool::PooledBlob"
    field_a = pt.pooled_blob_field_id(state.table_id, a.blob_id.to_u256())
    assert (pooled.owner.kind, pooled.owner.address) == (pb.OwnerOwnerKind.OBJECT, field_a)
    assert pooled.has_public_transfer  # key + store, as a dynamic object field's value
    assert pt.PooledBlob.from_bcs(contents(pooled)) == pt.PooledBlob(
        obj_a, 0, a.blob_id.to_u256(), len(a.data), 1, None, pool_id, True
    )

    result = await certify(chain, testnet, pool_id, a.blob_id.to_u256(), object_id=obj_a)
    (ev,) = events(result, "PooledBlobCertified")
    assert pt.PooledBlobCertified.from_bcs(ev) == pt.PooledBlobCertified(
        0, a.blob_id.to_u256(), True, obj_a, pool_id
    )
    await certify(chain, testnet, pool_id, b.blob_id.to_u256())
    for obj in (obj_a, obj_b):
        assert pt.PooledBlob.from_bcs(contents(await get_object(testnet, obj))).certified_epoch == 0

    # the accessors (values as the twin returns them; then called in a PTB, which must run)
    expected = {
        "start_epoch": 0,
        "end_epoch": 3,
        "reserved_encoded_capacity_bytes": capacity,
        "used_encoded_bytes": state.used,
        "available_encoded_bytes": capacity - state.used,
        "blob_count": 2,
        "object_id": pool_id,
    }
    for name, value in expected.items():
        assert _accessor(testnet, name, pool_id) == value, name
    assert _accessor(testnet, "contains_blob", pool_id, a.blob_id.to_u256()) is True
    assert _accessor(testnet, "contains_blob", pool_id, 12345) is False
    assert _accessor(testnet, "blob_object_id", pool_id, b.blob_id.to_u256()) == obj_b
    pool_ref = await chain.object_ref(pool_id)

    def read_all(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        arg = ptb.owned(pool_ref)
        for name in expected:
            ptb.move_call(info.package_id, "storage_pool", name, [arg])
        for name in ("contains_blob", "blob_object_id"):
            ptb.move_call(
                info.package_id, "storage_pool", name, [arg, ptb.u256(a.blob_id.to_u256())]
            )

    await chain.execute_ptb(read_all)
    exc = await _aborts(
        call(chain, testnet, "storage_pool", "blob_object_id", [Owned(pool_id), ("u256", 7)])
    )
    assert await _framework_abort(testnet, exc) == (SUI2, "dynamic_field", "borrow_child_object", 1)
    assert exc.name == "EFieldDoesNotExist"


async def test_create_with_storage_keeps_its_id_and_destroy_returns_it(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    result = await call(
        chain,
        testnet,
        "system",
        "reserve_space",
        [SYS_MUT, ("u64", 50_000), ("u32", 2), WAL],
        keep=True,
    )
    (storage_id,) = created(result, "storage_resource::Storage")
    result = await call(
        chain,
        testnet,
        "system",
        "create_storage_pool_with_storage",
        [SYS, Owned(storage_id)],
        keep=True,
    )
    (pool_id,) = created(result, "storage_pool::StoragePool")
    (ev,) = events(result, "StoragePoolCreated")
    assert pt.StoragePoolCreated.from_bcs(ev) == pt.StoragePoolCreated(0, pool_id, 50_000, 0, 2)
    state = await pool_state(testnet, pool_id)
    assert state.inner.storage == mt.Storage(storage_id, 0, 2, 50_000)
    assert await get_object(testnet, storage_id) is None  # wrapped in the pool's state

    enc = _encode(b"keeps the pool from being destroyed")
    await register(chain, testnet, pool_id, enc, deletable=True)
    exc = await _aborts(
        call(chain, testnet, "storage_pool", "destroy", [Owned(pool_id)], keep=True)
    )
    assert _where(exc) == ("storage_pool", 7, "EPoolNotEmpty")
    await call(
        chain,
        testnet,
        "system",
        "delete_pooled_blob",
        [SYS, Owned(pool_id), ("u256", enc.blob_id.to_u256())],
    )
    result = await call(chain, testnet, "storage_pool", "destroy", [Owned(pool_id)], keep=True)
    assert created(result, "storage_resource::Storage") == [storage_id]  # unwrapped
    assert await get_object(testnet, pool_id) is None
    assert await get_object(testnet, pt.pool_inner_id(pool_id)) is None
    back = await get_object(testnet, storage_id)
    assert back is not None and back.owner is not None and back.owner.address == USER.address
    assert mt.Storage.from_bcs(contents(back)) == mt.Storage(storage_id, 0, 2, 50_000)

    # a Storage that has not started cannot back a pool
    result = await call(
        chain,
        testnet,
        "system",
        "reserve_space_for_epochs",
        [SYS_MUT, ("u64", 1000), ("u32", 1), ("u32", 3), WAL],
        keep=True,
    )
    (future,) = created(result, "storage_resource::Storage")
    exc = await _aborts(
        call(
            chain,
            testnet,
            "system",
            "create_storage_pool_with_storage",
            [SYS, Owned(future)],
            keep=True,
        )
    )
    assert _where(exc) == ("system_state_inner", 2, "EInvalidEpochsAhead")
    assert exc.function == "create_storage_pool_with_storage"


# -- deleting and burning ------------------------------------------------------------------------


async def test_delete_gives_capacity_back_to_the_pool_without_refund(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    enc, perm = _encode(b"deleted from the pool"), _encode(b"permanent in the pool")
    pool_id = await create_pool(chain, testnet, 2 * _size(enc.data) + _size(perm.data), 2)
    obj = await register(chain, testnet, pool_id, enc, deletable=True)
    await register(chain, testnet, pool_id, perm, deletable=False)
    blob_id = enc.blob_id.to_u256()
    await call(
        chain,
        testnet,
        "storage_pool",
        "insert_or_update_blob_metadata_pair",
        [Owned(pool_id), ("u256", blob_id), ("string", "k"), ("string", "v")],
    )
    await certify(chain, testnet, pool_id, blob_id, object_id=obj)
    state = await pool_state(testnet, pool_id)
    wal, used_system = (await chain.balances()).wal, testnet.net.system_state().used_capacity_size

    result = await call(
        chain, testnet, "system", "delete_pooled_blob", [SYS, Owned(pool_id), ("u256", blob_id)]
    )
    (ev,) = events(result, "PooledBlobDeleted")
    assert pt.PooledBlobDeleted.from_bcs(ev) == pt.PooledBlobDeleted(0, blob_id, obj, True, pool_id)
    assert (await chain.balances()).wal == wal  # no refund
    assert testnet.net.system_state().used_capacity_size == used_system  # the pool keeps it
    after = await pool_state(testnet, pool_id)
    assert after.used == state.used - _size(enc.data) == _size(perm.data)
    assert (after.blob_count, after.inner.blobs.size, after.capacity) == (1, 1, state.capacity)
    for gone in (obj, pt.pooled_blob_field_id(state.table_id, blob_id), mt.metadata_field_id(obj)):
        assert await get_object(testnet, gone) is None
    assert len(await list_fields(testnet, state.table_id)) == 1

    exc = await _aborts(
        call(
            chain,
            testnet,
            "system",
            "delete_pooled_blob",
            [SYS, Owned(pool_id), ("u256", perm.blob_id.to_u256())],
        )
    )
    assert _where(exc) == ("storage_pool", 0, "EBlobNotDeletable")
    assert exc.function == "delete_blob_object"
    exc = await _aborts(
        call(chain, testnet, "system", "delete_pooled_blob", [SYS, Owned(pool_id), ("u256", 9)])
    )
    assert await _framework_abort(testnet, exc) == (SUI2, "dynamic_field", "borrow_child_object", 1)

    # the freed capacity takes the blob again; deleted and registered again in one PTB, the
    # table entry is the same field (mutated), the PooledBlob a new object
    first = await register(chain, testnet, pool_id, enc, deletable=True)
    pool_ref = await chain.object_ref(pool_id)

    def again(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        pool = ptb.owned(pool_ref)
        ptb.move_call(
            info.package_id, "system", "delete_pooled_blob", [system, pool, ptb.u256(blob_id)]
        )
        ptb.move_call(
            info.package_id,
            "system",
            "register_pooled_blob",
            [
                system,
                pool,
                ptb.u256(blob_id),
                ptb.u256(enc.root_hash),
                ptb.u64(len(enc.data)),
                ptb.u8(1),
                ptb.boolean(True),
                wal,
            ],
        )

    result = await chain.execute_ptb(again, wal_needed=1)
    (ev,) = events(result, "PooledBlobRegistered")
    second = pt.PooledBlobRegistered.from_bcs(ev).object_id
    assert second != first and await get_object(testnet, first) is None
    field = await get_object(testnet, pt.pooled_blob_field_id(state.table_id, blob_id))
    assert contents(field)[64:] == bytes.fromhex(second[2:])
    assert (await pool_state(testnet, pool_id)).blob_count == 2


async def test_burn_expired_pool_blobs_then_destroy(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    enc = _encode(b"burned with its pool")
    pool_id = await create_pool(chain, testnet, _size(enc.data), 1)
    blob_id = enc.blob_id.to_u256()
    obj = await register(chain, testnet, pool_id, enc, deletable=False)
    await call(
        chain,
        testnet,
        "storage_pool",
        "insert_or_update_blob_metadata_pair",
        [Owned(pool_id), ("u256", blob_id), ("string", "k"), ("string", "v")],
    )
    burn = [SYS, Owned(pool_id), ("u256", blob_id)]
    exc = await _aborts(call(chain, testnet, "system", "burn_expired_pooled_blob", burn))
    assert (_where(exc), exc.function) == (
        ("system_state_inner", 2, "EInvalidEpochsAhead"),
        "burn_expired_pooled_blob",
    )

    testnet.net.advance_epoch()  # the pool ends at epoch 1
    other = _encode(b"too late for this pool")
    expired = {
        "delete_pooled_blob": [SYS, Owned(pool_id), ("u256", blob_id)],
        "register_pooled_blob": [
            SYS_MUT,
            Owned(pool_id),
            ("u256", other.blob_id.to_u256()),
            ("u256", other.root_hash),
            ("u64", len(other.data)),
            ("u8", 1),
            ("boolean", True),
            WAL,
        ],
        "extend_storage_pool": [SYS_MUT, Owned(pool_id), ("u32", 1), WAL],
        "increase_storage_pool_capacity": [SYS_MUT, Owned(pool_id), ("u64", 1000), WAL],
        "decrease_storage_pool_capacity_by_size": [SYS, Owned(pool_id), ("u64", 1)],
    }
    for function, args in expired.items():
        exc = await _aborts(call(chain, testnet, "system", function, args))
        assert (_where(exc), exc.function) == (
            ("system_state_inner", 2, "EInvalidEpochsAhead"),
            function,
        )

    result = await call(chain, testnet, "system", "burn_expired_pooled_blob", burn)
    assert result.events == []  # no event: the nodes may have dropped the blob already
    state = await pool_state(testnet, pool_id)
    assert (state.blob_count, state.used, state.inner.blobs.size) == (0, 0, 0)
    for gone in (obj, pt.pooled_blob_field_id(state.table_id, blob_id), mt.metadata_field_id(obj)):
        assert await get_object(testnet, gone) is None
    result = await call(chain, testnet, "storage_pool", "destroy", [Owned(pool_id)], keep=True)
    assert created(result, "storage_resource::Storage") == [state.inner.storage.id]


# -- lifetime and capacity -----------------------------------------------------------------------


async def test_extend_and_increase_pay_and_account_capacity(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    capacity = 2 * BYTES_PER_UNIT_SIZE + 5  # 3 storage units
    pool_id = await create_pool(chain, testnet, capacity, 2)

    def ring() -> list[int]:
        accounting = testnet.net.system_state().future_accounting
        return [accounting.lookup(i).used_capacity for i in range(6)]

    before, wal = ring(), (await chain.balances()).wal
    result = await call(
        chain, testnet, "system", "extend_storage_pool", [SYS_MUT, Owned(pool_id), ("u32", 3), WAL]
    )
    assert wal - (await chain.balances()).wal == info.storage_price * 3 * 3
    (ev,) = events(result, "StoragePoolExtended")
    assert pt.StoragePoolExtended.from_bcs(ev) == pt.StoragePoolExtended(0, pool_id, 5)
    assert (await pool_state(testnet, pool_id)).end_epoch == 5
    assert ring() == [u + (capacity if 2 <= i < 5 else 0) for i, u in enumerate(before)]

    extra = BYTES_PER_UNIT_SIZE + 1  # 2 units, for the 5 epochs left
    before, wal = ring(), (await chain.balances()).wal
    used_now = testnet.net.system_state().used_capacity_size
    await call(
        chain,
        testnet,
        "system",
        "increase_storage_pool_capacity",
        [SYS_MUT, Owned(pool_id), ("u64", extra), WAL],
    )
    assert wal - (await chain.balances()).wal == info.storage_price * 2 * 5
    assert (await pool_state(testnet, pool_id)).capacity == capacity + extra
    assert ring() == [u + (extra if i < 5 else 0) for i, u in enumerate(before)]
    assert testnet.net.system_state().used_capacity_size == used_now + extra

    exc = await _aborts(
        call(
            chain,
            testnet,
            "system",
            "increase_storage_pool_capacity",
            [SYS_MUT, Owned(pool_id), ("u64", 0), WAL],
        )
    )
    assert _where(exc) == ("system_state_inner", 11, "EInvalidResourceSize")
    for epochs in (0, info.max_epochs_ahead):  # nothing, or past max_epochs_ahead
        exc = await _aborts(
            call(
                chain,
                testnet,
                "system",
                "extend_storage_pool",
                [SYS_MUT, Owned(pool_id), ("u32", epochs), WAL],
            )
        )
        assert _where(exc) == ("system_state_inner", 2, "EInvalidEpochsAhead")


async def test_capacity_with_storage_and_decrease(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    enc = _encode(b"uses part of the pool")
    pool_id = await create_pool(chain, testnet, 100_000, 3)
    await register(chain, testnet, pool_id, enc)
    used = _size(enc.data)

    async def reserve(size: int, start: int, end: int) -> str:
        result = await call(
            chain,
            testnet,
            "system",
            "reserve_space_for_epochs",
            [SYS_MUT, ("u64", size), ("u32", start), ("u32", end), WAL],
            keep=True,
        )
        (storage_id,) = created(result, "storage_resource::Storage")
        return storage_id

    def absorb(storage_id: str) -> Any:
        args = [SYS, Owned(pool_id), Owned(storage_id)]
        return call(chain, testnet, "system", "increase_storage_pool_capacity_with_storage", args)

    wal = (await chain.balances()).wal
    fits = await reserve(20_000, 0, 3)
    spent = wal - (await chain.balances()).wal
    await absorb(fits)
    assert (await chain.balances()).wal == wal - spent  # no second payment
    assert (await pool_state(testnet, pool_id)).capacity == 120_000
    assert await get_object(testnet, fits) is None  # destroyed into the pool
    exc = await _aborts(absorb(await reserve(1000, 0, 2)))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 11, "EIncompatibleEndEpoch"),
        "increase_capacity_with_storage",
    )
    exc = await _aborts(absorb(await reserve(1000, 1, 3)))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 1, "EResourceBounds"),
        "increase_capacity_with_storage",
    )

    def decrease(function: str, arg: tuple[str, int]) -> Any:
        return call(chain, testnet, "system", function, [SYS, Owned(pool_id), arg], keep=True)

    result = await decrease("decrease_storage_pool_capacity_by_size", ("u64", 30_000))
    (split,) = result.created["storage_resource::Storage"]
    assert (split.start_epoch, split.end_epoch, split.storage_size) == (0, 3, 30_000)
    state = await pool_state(testnet, pool_id)
    assert (state.capacity, state.used) == (90_000, used)
    assert state.inner.storage.id != split.id
    exc = await _aborts(decrease("decrease_storage_pool_capacity_by_size", ("u64", 0)))
    assert (_where(exc), exc.function) == (
        ("system", 2, "EZeroExtractSize"),
        "decrease_storage_pool_capacity_by_size",
    )
    exc = await _aborts(decrease("decrease_storage_pool_capacity_by_size", ("u64", 90_001 - used)))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 6, "EInsufficientCapacity"),
        "decrease_capacity_by_size",
    )

    by_percent = "decrease_storage_pool_unused_capacity_by_percent"
    result = await decrease(by_percent, ("u8", 50))
    (half,) = result.created["storage_resource::Storage"]
    assert half.storage_size == (90_000 - used) * 50 // 100
    assert (await pool_state(testnet, pool_id)).capacity == 90_000 - half.storage_size
    exc = await _aborts(decrease(by_percent, ("u8", 101)))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 14, "EInvalidPercent"),
        "decrease_unused_capacity_by_percent",
    )
    exc = await _aborts(decrease(by_percent, ("u8", 0)))
    assert (_where(exc), exc.function) == (("system", 2, "EZeroExtractSize"), by_percent)


async def test_capacity_beyond_the_system_aborts(tmp_path: Path) -> None:
    """`reserve_space_without_payment` and `account_capacity` abort with EStorageExceeded
    when an epoch's used capacity would pass the System's total."""
    with localnet(tmp_path, [USER], total_capacity=1_000_000) as tn:
        chain = WalrusChain(tn.profile, USER)
        try:
            exc = await _aborts(create_pool(chain, tn, 1_000_001, 2))
            assert (_where(exc), exc.function) == (
                ("system_state_inner", 1, "EStorageExceeded"),
                "reserve_space_without_payment",
            )
            pool_id = await create_pool(chain, tn, 600_000, 2)
            exc = await _aborts(
                call(
                    chain,
                    tn,
                    "system",
                    "increase_storage_pool_capacity",
                    [SYS_MUT, Owned(pool_id), ("u64", 400_001), WAL],
                )
            )
            assert (_where(exc), exc.function) == (
                ("system_state_inner", 1, "EStorageExceeded"),
                "account_capacity",
            )
            # epoch 2 holds 500,000 reserved bytes: the pool's 600,000 do not fit beside them
            await call(
                chain,
                tn,
                "system",
                "reserve_space_for_epochs",
                [SYS_MUT, ("u64", 500_000), ("u32", 2), ("u32", 3), WAL],
                keep=True,
            )
            exc = await _aborts(
                call(
                    chain,
                    tn,
                    "system",
                    "extend_storage_pool",
                    [SYS_MUT, Owned(pool_id), ("u32", 1), WAL],
                )
            )
            assert (_where(exc), exc.function) == (
                ("system_state_inner", 1, "EStorageExceeded"),
                "account_capacity",
            )
        finally:
            await chain.close()
