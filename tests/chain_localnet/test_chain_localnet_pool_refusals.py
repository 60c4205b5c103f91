"""What the stand-in refuses on storage pools, and the metadata of pooled blobs, over real gRPC
on localhost, as the deployed contracts do (MystenLabs/walrus `mainnet-contracts/walrus/
sources/system/storage_pool.move`, `system_state_inner.move`, and the Sui framework's
`dynamic_field`/`object_table` under the pool's blob table): each abort by module and code,
with the function it is located in (and the package, 0x2, for the framework's).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import pytest

from chain import errors
from chain import move_types as mt
from chain import pool_types as pt
from chain.client import SystemInfo, WalrusChain
from chain.localnet.digests import object_digest
from chain.localnet.moves.encoding import derive_blob_id
from chain.ptb import Ptb
from codec.params import EncodingParams
from tests.chain_localnet.helpers import _encode, _where
from tests.chain_localnet.pool_helpers import (
    SYS_MUT,
    WAL,
    Owned,
    abort_location,
    call,
    certify,
    contents,
    create_pool,
    get_object,
    list_fields,
    pool_state,
    register,
)
from tests.localnet_harness import N_SHARDS, LocalTestnet

pytestmark = pytest.mark.trio

SUI2 = "0x" + "0" * 63 + "2"
ENC = EncodingParams(N_SHARDS)


async def _aborts(coro: Any) -> errors.MoveAbortError:
    with pytest.raises(errors.MoveAbortError) as info:
        await coro
    return info.value


async def _in_framework(tn: LocalTestnet, exc: errors.MoveAbortError) -> tuple[Any, ...]:
    where = await abort_location(tn, exc.digest)
    return (where.package, where.module, where.function_name, exc.code, exc.name)


def _register_args(pool_id: str, blob_id: int, root_hash: int, size: int, encoding: int) -> Any:
    return [
        SYS_MUT,
        Owned(pool_id),
        ("u256", blob_id),
        ("u256", root_hash),
        ("u64", size),
        ("u8", encoding),
        ("boolean", True),
        WAL,
    ]


async def test_register_refusals(chain: WalrusChain, testnet: LocalTestnet) -> None:
    info = await chain.system_info()
    for epochs in (0, info.max_epochs_ahead + 1):
        exc = await _aborts(create_pool(chain, testnet, 10_000, epochs))
        assert (_where(exc), exc.function) == (
            ("system_state_inner", 2, "EInvalidEpochsAhead"),
            "reserve_space",
        )
    exc = await _aborts(create_pool(chain, testnet, 0, 2))
    assert (_where(exc), exc.function) == (
        ("system_state_inner", 11, "EInvalidResourceSize"),
        "reserve_space_without_payment",
    )

    small, large = _encode(b"s" * 100), _encode(b"L" * 5000)
    small_size = ENC.encoded_size(len(small.data))
    assert ENC.encoded_size(len(large.data)) > small_size
    pool_id = await create_pool(chain, testnet, 2 * small_size, 2)
    wal = (await chain.balances()).wal

    bad_id = small.blob_id.to_u256() ^ 1
    args = _register_args(pool_id, bad_id, small.root_hash, len(small.data), 1)
    exc = await _aborts(call(chain, testnet, "system", "register_pooled_blob", args))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 3, "EInvalidBlobId"),
        "new_pooled_blob",
    )
    other_encoding = derive_blob_id(small.root_hash, 0, len(small.data))
    args = _register_args(pool_id, other_encoding, small.root_hash, len(small.data), 0)
    exc = await _aborts(call(chain, testnet, "system", "register_pooled_blob", args))
    assert (_where(exc), exc.function) == (
        ("encoding", 0, "EInvalidEncodingType"),
        "encoded_blob_length",
    )
    assert (await chain.balances()).wal == wal  # failed transactions pay nothing

    await register(chain, testnet, pool_id, small)
    exc = await _aborts(register(chain, testnet, pool_id, small))  # fits, but the ID is taken
    assert await _in_framework(testnet, exc) == (
        SUI2,
        "dynamic_field",
        "add",
        0,
        "EFieldAlreadyExists",
    )
    exc = await _aborts(register(chain, testnet, pool_id, large))  # does not fit
    assert (_where(exc), exc.function) == (
        ("storage_pool", 6, "EInsufficientCapacity"),
        "add_blob",
    )
    state = await pool_state(testnet, pool_id)
    assert (state.blob_count, state.used, state.inner.blobs.size) == (1, small_size, 1)


async def test_certify_refusals(chain: WalrusChain, testnet: LocalTestnet) -> None:
    a, b, c = _encode(b"deletable a"), _encode(b"permanent b"), _encode(b"short-lived c")
    pool_id = await create_pool(chain, testnet, 100_000, 3)
    short_id = await create_pool(chain, testnet, 100_000, 1)
    obj_a = await register(chain, testnet, pool_id, a, deletable=True)
    obj_b = await register(chain, testnet, pool_id, b, deletable=False)
    obj_c = await register(chain, testnet, short_id, c, deletable=True)
    ida, idb = a.blob_id.to_u256(), b.blob_id.to_u256()

    cases = [
        # (blob, message's blob, message's object (None: permanent), abort)
        (ida, idb, obj_a, ("storage_pool", 3, "EInvalidBlobId")),
        (ida, ida, None, ("storage_pool", 4, "EInvalidBlobPersistenceType")),
        (ida, ida, obj_b, ("storage_pool", 5, "EInvalidBlobObject")),
        (idb, idb, obj_b, ("storage_pool", 4, "EInvalidBlobPersistenceType")),
    ]
    for blob_id, message_id, object_id, abort in cases:
        exc = await _aborts(certify(chain, testnet, pool_id, blob_id, message_id, object_id))
        assert (_where(exc), exc.function) == (abort, "certify")
    await certify(chain, testnet, pool_id, idb)
    exc = await _aborts(certify(chain, testnet, pool_id, idb))
    assert (_where(exc), exc.function) == (("storage_pool", 2, "EAlreadyCertified"), "certify")
    exc = await _aborts(certify(chain, testnet, pool_id, 77))
    assert await _in_framework(testnet, exc) == (
        SUI2,
        "dynamic_field",
        "borrow_child_object_mut",
        1,
        "EFieldDoesNotExist",
    )
    blob = pt.PooledBlob.from_bcs(contents(await get_object(testnet, obj_a)))
    assert blob.certified_epoch is None  # every refusal left it as it was

    testnet.net.advance_epoch()  # the short pool ends at epoch 1
    exc = await _aborts(certify(chain, testnet, short_id, c.blob_id.to_u256(), object_id=obj_c))
    assert (_where(exc), exc.function) == (("storage_pool", 1, "EResourceBounds"), "certify")
    await certify(chain, testnet, pool_id, ida, object_id=obj_a)  # the live pool still takes it


async def test_pooled_blob_metadata(chain: WalrusChain, testnet: LocalTestnet) -> None:
    enc = _encode(b"a pooled blob with attributes")
    pool_id = await create_pool(chain, testnet, 100_000, 2)
    obj = await register(chain, testnet, pool_id, enc)
    blob_id = enc.blob_id.to_u256()
    meta_id = mt.metadata_field_id(obj)

    async def attributes() -> dict[str, str] | None:
        field = await get_object(testnet, meta_id)
        if field is None:
            return None
        return mt.BlobAttributes.from_bcs(contents(field)[32 + 9 :]).as_dict()

    async def with_metadata(function: str, pairs: dict[str, str]) -> Any:
        ref = await chain.object_ref(pool_id)

        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            meta = ptb.move_call(info.package_id, "metadata", "new", [])
            for key, value in pairs.items():
                ptb.move_call(
                    info.package_id,
                    "metadata",
                    "insert_or_update",
                    [meta, ptb.string(key), ptb.string(value)],
                )
            ptb.move_call(
                info.package_id, "storage_pool", function, [ptb.owned(ref), ptb.u256(blob_id), meta]
            )

        return await chain.execute_ptb(build)

    def pool_call(function: str, *args: Any) -> Any:
        return call(chain, testnet, "storage_pool", function, [Owned(pool_id), *args])

    await with_metadata("add_blob_metadata", {"a": "1"})
    assert await attributes() == {"a": "1"}
    field = await get_object(testnet, meta_id)
    assert field is not None and field.owner is not None
    assert (field.owner.kind, field.owner.address) == (pb.OwnerOwnerKind.OBJECT, obj)
    (listed,) = await list_fields(testnet, obj)
    assert listed.kind == pb.DynamicFieldDynamicFieldKind.FIELD
    assert listed.field_id == meta_id and listed.name == pb.Bcs(
        name="vector<u8>", value=mt.METADATA_FIELD_NAME
    )
    exc = await _aborts(with_metadata("add_blob_metadata", {}))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 12, "EDuplicateMetadata"),
        "add_metadata",
    )

    await pool_call(
        "insert_or_update_blob_metadata_pair", ("u256", blob_id), ("string", "b"), ("string", "2")
    )
    assert await attributes() == {"a": "1", "b": "2"}
    exc = await _aborts(pool_call("remove_blob_metadata_pair", ("u256", blob_id), ("string", "zz")))
    assert await _in_framework(testnet, exc) == (SUI2, "vec_map", "get_idx", 1, "EKeyDoesNotExist")
    await pool_call("remove_blob_metadata_pair", ("u256", blob_id), ("string", "a"))
    assert await attributes() == {"b": "2"}
    await pool_call("remove_blob_metadata_pair_if_exists", ("u256", blob_id), ("string", "zz"))
    assert await attributes() == {"b": "2"}
    await with_metadata("add_or_replace_blob_metadata", {"c": "3"})
    assert await attributes() == {"c": "3"}

    await pool_call("take_blob_metadata", ("u256", blob_id))
    assert await attributes() is None and await list_fields(testnet, obj) == []
    exc = await _aborts(pool_call("take_blob_metadata", ("u256", blob_id)))
    assert (_where(exc), exc.function) == (
        ("storage_pool", 13, "EMissingMetadata"),
        "take_metadata",
    )
    exc = await _aborts(pool_call("remove_blob_metadata_pair", ("u256", blob_id), ("string", "c")))
    assert (_where(exc), exc.function) == (("storage_pool", 13, "EMissingMetadata"), "metadata")
    await pool_call("remove_blob_metadata_pair_if_exists", ("u256", blob_id), ("string", "c"))
    assert await attributes() is None  # none, and no field made
    await pool_call(
        "insert_or_update_blob_metadata_pair", ("u256", blob_id), ("string", "d"), ("string", "4")
    )
    assert await attributes() == {"d": "4"}  # created on first use
    await with_metadata("add_or_replace_blob_metadata", {"e": "5"})
    assert await attributes() == {"e": "5"}

    exc = await _aborts(
        pool_call(
            "insert_or_update_blob_metadata_pair", ("u256", 5), ("string", "k"), ("string", "v")
        )
    )
    assert await _in_framework(testnet, exc) == (
        SUI2,
        "dynamic_field",
        "borrow_child_object_mut",
        1,
        "EFieldDoesNotExist",
    )


async def test_a_pool_of_another_version_is_refused(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """`inner`/`inner_mut` assert the pool's version (storage_pool EWrongVersion = 10); the
    ledger is edited to give the pool a version this package does not know."""
    enc = _encode(b"never registered")
    pool_id = await create_pool(chain, testnet, 100_000, 2)
    stored = testnet.net.ledger.get(pool_id)
    assert stored is not None
    changed = pt.StoragePool(pool_id, pt.POOL_VERSION + 1).to_bcs()
    updated = dataclasses.replace(stored, contents=changed, version=stored.version + 1)
    testnet.net.ledger.apply([dataclasses.replace(updated, digest=object_digest(updated))], [])

    exc = await _aborts(call(chain, testnet, "storage_pool", "blob_count", [Owned(pool_id)]))
    assert (_where(exc), exc.function) == (("storage_pool", 10, "EWrongVersion"), "inner")
    exc = await _aborts(register(chain, testnet, pool_id, enc))
    assert (_where(exc), exc.function) == (("storage_pool", 10, "EWrongVersion"), "inner")
