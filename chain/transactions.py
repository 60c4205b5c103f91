"""The Walrus transactions: register (reusing owned Storage), certify, extend, delete, blob
attributes, and the SUI-for-WAL exchange.

Coroutines of the asyncio thread; each builds its programmable transaction and hands it to
`chain.executor.Executor`, which checks the money, signs and executes it. Each raises what
the `chain.client.WalrusChain` method of the same name documents.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from chain import errors, reads
from chain import move_types as mt
from chain import pool_types as pt
from chain.executor import Executor
from chain.pricing import extend_cost
from chain.ptb import Ptb
from chain.records import CostEstimate, SystemInfo, TxResult
from chain.storage_reuse import splits
from chain.transport import contents, object_ref, shared_version
from codec.params import ENCODING_TYPE_RS2

P = ParamSpec("P")
R = TypeVar("R")


def in_turn(
    fn: Callable[Concatenate[Executor, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Executor, P], Coroutine[Any, Any, R]]:
    """Run the whole transaction, from reading the owned objects it names to its effects, in
    the wallet's `Executor.turn`: a ref read before another transaction of the wallet consumed
    the object would be stale (a mount and its worker sign from two processes)."""

    @functools.wraps(fn)
    async def wrapper(tx: Executor, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with tx.turn():
            return await fn(tx, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class RelayTip:
    """An upload relay's tip, paid in the transaction that registers the blob it is for, as
    the TypeScript SDK does (`sendUploadRelayTip` before `registerBlob`, ts-sdks
    packages/walrus/src/client.ts): the relay reads the auth package as the transaction's
    first input and looks for its own SUI balance change (walrus
    crates/walrus-upload-relay/src/tip/check.rs), so the package comes before every other
    input, the WAL coin included.

    Args:
        auth_package: the 72 bytes binding the tip to the blob's bytes
            (`walrusfs.store.relay.auth_package`).
        amount: MIST, split from the gas coin.
        address: the relay's, from its tip configuration.
    """

    auth_package: bytes
    amount: int
    address: str

    def add_to(self, ptb: Ptb) -> None:
        ptb.pure(self.auth_package)
        (coin,) = ptb.split_coins(ptb.gas(), [ptb.u64(self.amount)])
        ptb.transfer([coin], self.address)


def system_arg(tx: Executor, ptb: Ptb, info: SystemInfo, mutable: bool) -> Any:
    """The shared System object as an argument."""
    return ptb.shared(tx.rpc.profile.system_object, info.system_initial_version, mutable)


@in_turn
async def register_blob(
    tx: Executor,
    blob_id: int,
    root_hash: int,
    size: int,
    epochs: int,
    *,
    deletable: bool,
    attributes: dict[str, str],
    tip: RelayTip | None = None,
) -> tuple[mt.Blob, CostEstimate, TxResult]:
    """One transaction: reuse (or reserve) Storage, register the blob, set attributes (and
    pay an upload relay's tip)."""
    info = await reads.system_info(tx.rpc)
    cost = await reads.estimate(tx.rpc, tx.address, info, size, epochs, claimed=tx.claimed)
    # no await between the choice (the end of the estimate) and the claim
    claim = {s.id for s in (cost.reuse, *cost.fuse) if s is not None}
    tx.claimed |= claim
    try:
        return await _register_with(
            tx, info, cost, blob_id, root_hash, deletable=deletable, attributes=attributes, tip=tip
        )
    finally:
        tx.claimed -= claim


async def _register_with(
    tx: Executor,
    info: SystemInfo,
    cost: CostEstimate,
    blob_id: int,
    root_hash: int,
    *,
    deletable: bool,
    attributes: dict[str, str],
    tip: RelayTip | None = None,
) -> tuple[mt.Blob, CostEstimate, TxResult]:
    storage_ref = await tx.owned_ref(cost.reuse.id) if cost.reuse else None
    fuse_refs = [await tx.owned_ref(s.id) for s in cost.fuse]

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        package = info.package_id
        system = system_arg(tx, ptb, info, True)
        if storage_ref is not None and cost.reuse is not None:
            storage = ptb.owned(storage_ref)
            for ref in fuse_refs:
                ptb.move_call(package, "storage_resource", "fuse_amount", [storage, ptb.owned(ref)])
            split = splits(cost, info.epoch)
            if split.size is not None:
                rest = ptb.move_call(
                    package, "storage_resource", "split_by_size", [storage, ptb.u64(split.size)]
                )
                ptb.transfer([rest], tx.address)
            if split.epoch is not None:
                later = ptb.move_call(
                    package, "storage_resource", "split_by_epoch", [storage, ptb.u32(split.epoch)]
                )
                ptb.transfer([later], tx.address)
        else:
            storage = ptb.move_call(
                package,
                "system",
                "reserve_space",
                [system, ptb.u64(cost.encoded_size), ptb.u32(cost.epochs), wal],
            )
        blob = ptb.move_call(
            package,
            "system",
            "register_blob",
            [
                system,
                storage,
                ptb.u256(blob_id),
                ptb.u256(root_hash),
                ptb.u64(cost.size),
                ptb.u8(ENCODING_TYPE_RS2),
                ptb.boolean(deletable),
                wal,
            ],
        )
        for key, value in attributes.items():
            ptb.move_call(
                package,
                "blob",
                "insert_or_update_metadata_pair",
                [blob, ptb.string(key), ptb.string(value)],
            )
        ptb.transfer([blob], tx.address)

    result = await tx.execute(
        build, wal_needed=cost.total, info=info, first=None if tip is None else tip.add_to
    )
    blobs = result.created.get("blob::Blob", [])
    if len(blobs) != 1:
        raise errors.ChainError(f"transaction {result.digest} created no Blob")
    return blobs[0], cost, result


@in_turn
async def certify_blob(
    tx: Executor, blob_object_id: str, signature: bytes, signers_bitmap: bytes, message: bytes
) -> TxResult:
    """Certify with an aggregated confirmation (a quorum of the committee's shards)."""
    blob_ref = await tx.owned_ref(blob_object_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id,
            "system",
            "certify_blob",
            [
                system_arg(tx, ptb, info, False),
                ptb.owned(blob_ref),
                ptb.byte_vector(signature),
                ptb.byte_vector(signers_bitmap),
                ptb.byte_vector(message),
            ],
        )

    return await tx.execute(build)


@in_turn
async def extend_blob(tx: Executor, blob_object_id: str, epochs: int) -> tuple[int, TxResult]:
    """Extend by `epochs`; returns the WAL paid. Checks the price and balance first."""
    obj = await tx.owned_object(blob_object_id)
    blob_ref, blob = object_ref(obj), mt.Blob.from_bcs(contents(obj))
    info = await reads.system_info(tx.rpc)
    cost = extend_cost(blob.storage.storage_size, epochs, info.storage_price)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id,
            "system",
            "extend_blob",
            [system_arg(tx, ptb, info, True), ptb.owned(blob_ref), ptb.u32(epochs), wal],
        )

    return cost, await tx.execute(build, wal_needed=cost, info=info)


@in_turn
async def delete_blob(tx: Executor, blob_object_id: str) -> mt.Storage:
    """Delete a deletable blob; its Storage comes back to the wallet for reuse."""
    blob_ref = await tx.owned_ref(blob_object_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        storage = ptb.move_call(
            info.package_id,
            "system",
            "delete_blob",
            [system_arg(tx, ptb, info, False), ptb.owned(blob_ref)],
        )
        ptb.transfer([storage], tx.address)

    return storage_returned(await tx.execute(build))


def storage_returned(result: TxResult) -> mt.Storage:
    """The one Storage object `result` gave back to the wallet (a deleted blob's, a pool's).

    Raises:
        ChainError: it gave back none, or several.
    """
    storages = result.created.get("storage_resource::Storage", [])
    if len(storages) != 1:
        raise errors.ChainError(f"transaction {result.digest} returned no Storage")
    storage: mt.Storage = storages[0]
    return storage


async def _pooled(tx: Executor, object_id: str) -> pt.PooledBlob | None:
    """The PooledBlob `object_id` is, if it is one (its attributes are set through its pool,
    which the wallet owns: `storage_pool.move` `insert_or_update_blob_metadata_pair`)."""
    obj = await tx.rpc.object(object_id)
    if not (obj.object_type or "").endswith("::storage_pool::PooledBlob"):
        return None
    return pt.PooledBlob.from_bcs(contents(obj))


@in_turn
async def set_attributes(tx: Executor, blob_object_id: str, pairs: dict[str, str]) -> TxResult:
    """Insert or update the blob's attributes (a Blob's, or a pooled blob's through its
    pool)."""
    pooled = await _pooled(tx, blob_object_id)
    ref = await tx.owned_ref(blob_object_id if pooled is None else pooled.storage_pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        obj = ptb.owned(ref)
        for key, value in pairs.items():
            if pooled is None:
                module, fn, args = "blob", "insert_or_update_metadata_pair", [obj]
            else:
                module, fn = "storage_pool", "insert_or_update_blob_metadata_pair"
                args = [obj, ptb.u256(pooled.blob_id)]
            ptb.move_call(info.package_id, module, fn, [*args, ptb.string(key), ptb.string(value)])

    return await tx.execute(build)


@in_turn
async def remove_attributes(tx: Executor, blob_object_id: str, keys: list[str]) -> TxResult:
    """Remove the keys that exist (absent keys are not an error)."""
    pooled = await _pooled(tx, blob_object_id)
    ref = await tx.owned_ref(blob_object_id if pooled is None else pooled.storage_pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        obj = ptb.owned(ref)
        for key in keys:
            if pooled is None:
                module, fn, args = "blob", "remove_metadata_pair_if_exists", [obj]
            else:
                module, fn = "storage_pool", "remove_blob_metadata_pair_if_exists"
                args = [obj, ptb.u256(pooled.blob_id)]
            ptb.move_call(info.package_id, module, fn, [*args, ptb.string(key)])

    return await tx.execute(build)


async def get_wal(tx: Executor, mist: int) -> TxResult:
    """Swap `mist` of SUI for WAL at the profile's first exchange."""
    have = (await reads.balances(tx.rpc, tx.address)).sui
    if have <= mist:
        raise errors.InsufficientGas(
            f"swapping {mist / 10**9:.9f} SUI needs that much and gas; the wallet "
            f"{tx.address} holds {have / 10**9:.9f} SUI",
            mist,
            have,
        )
    exchange_id = tx.rpc.profile.exchange_objects[0]
    exchange = await tx.rpc.object(exchange_id)
    package = (exchange.object_type or "").split("::", 1)[0]
    version = shared_version(exchange)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        (sui,) = ptb.split_coins(ptb.gas(), [ptb.u64(mist)])
        wal = ptb.move_call(
            package,
            "wal_exchange",
            "exchange_all_for_wal",
            [ptb.shared(exchange_id, version, True), sui],
        )
        ptb.transfer([wal], tx.address)

    return await tx.execute(build)
