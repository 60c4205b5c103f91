"""The storage-pool transactions: create (paying, or from an owned Storage), register
(growing the pool first), certify, delete, burn expired blobs, extend, grow (absorbing a
Storage) and shrink (by size or by a percent of the unused), destroy.

Each builds its programmable transaction on the deployed `system` entry points
(`mainnet-contracts/walrus/sources/system.move`, "Storage Pool") and hands it to
`chain.executor.Executor` in the wallet's turn (the pool is an owned object of the wallet),
as `chain.transactions` does for Blobs; prices and reads are `chain.pools`. Each raises what
the `chain.pool_client.PoolClient` method of the same job documents.
"""

from __future__ import annotations

from typing import Any

from chain import errors, reads
from chain import move_types as mt
from chain import pool_types as pt
from chain.executor import Executor
from chain.pools import create_cost, encoded_size, grow_cost, pool, pooled_blob, renew_cost
from chain.pricing import write_cost
from chain.ptb import Ptb
from chain.records import SystemInfo, TxResult
from chain.transactions import RelayTip, in_turn, storage_returned, system_arg
from codec.params import BYTES_PER_UNIT_SIZE, ENCODING_TYPE_RS2, storage_units


def _created_pool(result: TxResult) -> str:
    pools = result.created.get("storage_pool::StoragePool", [])
    if len(pools) != 1:
        raise errors.ChainError(f"transaction {result.digest} created no StoragePool")
    return str(pools[0].object_id)


@in_turn
async def create_pool(tx: Executor, capacity: int, epochs: int) -> tuple[pt.PoolState, int]:
    """A new pool of `capacity` encoded bytes for `epochs` epochs from now, owned by the
    wallet; with the WAL it cost."""
    info = await reads.system_info(tx.rpc)
    cost = create_cost(info, capacity, epochs)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        created = ptb.move_call(
            info.package_id,
            "system",
            "create_storage_pool",
            [system_arg(tx, ptb, info, True), ptb.u64(capacity), ptb.u32(epochs), wal],
        )
        ptb.transfer([created], tx.address)

    result = await tx.execute(build, wal_needed=cost, info=info)
    return await pool(tx.rpc, _created_pool(result)), cost


@in_turn
async def register_pooled_blob(
    tx: Executor,
    pool_id: str,
    blob_id: int,
    root_hash: int,
    size: int,
    *,
    deletable: bool,
    attributes: dict[str, str],
    tip: RelayTip | None = None,
) -> tuple[pt.PooledBlob, int, TxResult]:
    """One transaction: grow the pool by what the blob lacks (absorbing owned Storage that
    ends with the pool first, then paying for the rest), register the blob against it, and
    set its attributes (and pay an upload relay's tip). Returns the PooledBlob, the WAL
    paid and the transaction."""
    info = await reads.system_info(tx.rpc)
    state = await pool(tx.rpc, pool_id)
    pool_ref = await tx.owned_ref(pool_id)
    need = encoded_size(info, size)
    lacking = max(0, need - state.available)
    absorb: list[Any] = []
    if lacking:
        for storage in await reads.storages(tx.rpc, tx.address, info, True):
            if lacking <= 0:
                break
            if (
                storage.end_epoch == state.end_epoch
                and storage.start_epoch <= info.epoch
                and storage.id not in tx.claimed
            ):
                absorb.append(await tx.owned_ref(storage.id))
                lacking -= storage.storage_size
    # whole storage units: what an increase is paid by (`process_storage_payments` prices
    # units, rounded up), so the rest of the last unit stays in the pool for the next blob
    extra = storage_units(max(0, lacking)) * BYTES_PER_UNIT_SIZE
    cost = grow_cost(info, state, extra) + write_cost(need, info.write_price)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        package = info.package_id
        system = system_arg(tx, ptb, info, True)
        pool_arg = ptb.owned(pool_ref)
        for ref in absorb:
            ptb.move_call(
                package,
                "system",
                "increase_storage_pool_capacity_with_storage",
                [system, pool_arg, ptb.owned(ref)],
            )
        if extra:
            ptb.move_call(
                package,
                "system",
                "increase_storage_pool_capacity",
                [system, pool_arg, ptb.u64(extra), wal],
            )
        ptb.move_call(
            package,
            "system",
            "register_pooled_blob",
            [
                system,
                pool_arg,
                ptb.u256(blob_id),
                ptb.u256(root_hash),
                ptb.u64(size),
                ptb.u8(ENCODING_TYPE_RS2),
                ptb.boolean(deletable),
                wal,
            ],
        )
        for key, value in attributes.items():
            ptb.move_call(
                package,
                "storage_pool",
                "insert_or_update_blob_metadata_pair",
                [pool_arg, ptb.u256(blob_id), ptb.string(key), ptb.string(value)],
            )

    result = await tx.execute(
        build, wal_needed=cost, info=info, first=None if tip is None else tip.add_to
    )
    blob = await pooled_blob(tx.rpc, await pool(tx.rpc, pool_id), blob_id)
    if blob is None:
        raise errors.ChainError(f"transaction {result.digest} registered no pooled blob")
    return blob, cost, result


@in_turn
async def certify_pooled_blob(
    tx: Executor,
    pool_id: str,
    blob_id: int,
    *,
    signature: bytes,
    signers_bitmap: bytes,
    message: bytes,
) -> TxResult:
    """Certify the pool's blob of `blob_id` with an aggregated confirmation."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id,
            "system",
            "certify_pooled_blob",
            [
                system_arg(tx, ptb, info, False),
                ptb.owned(pool_ref),
                ptb.u256(blob_id),
                ptb.byte_vector(signature),
                ptb.byte_vector(signers_bitmap),
                ptb.byte_vector(message),
            ],
        )

    return await tx.execute(build)


async def _per_blob(tx: Executor, pool_id: str, blob_ids: list[int], function: str) -> TxResult:
    """One transaction calling `system::<function>(&System, &mut pool, blob_id)` for each
    blob (`delete_pooled_blob`, `burn_expired_pooled_blob`)."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system, pool_arg = system_arg(tx, ptb, info, False), ptb.owned(pool_ref)
        for blob_id in blob_ids:
            ptb.move_call(
                info.package_id, "system", function, [system, pool_arg, ptb.u256(blob_id)]
            )

    return await tx.execute(build)


@in_turn
async def delete_pooled_blobs(tx: Executor, pool_id: str, blob_ids: list[int]) -> TxResult:
    """Delete deletable blobs of the pool in one transaction: their capacity returns to the
    pool for the next registrations."""
    return await _per_blob(tx, pool_id, blob_ids, "delete_pooled_blob")


@in_turn
async def extend_pool(tx: Executor, pool_id: str, epochs: int) -> tuple[int, TxResult]:
    """Renew every blob of the pool by `epochs`; returns the WAL paid."""
    info = await reads.system_info(tx.rpc)
    state = await pool(tx.rpc, pool_id)
    pool_ref = await tx.owned_ref(pool_id)
    cost = renew_cost(info, state.capacity, epochs)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id,
            "system",
            "extend_storage_pool",
            [system_arg(tx, ptb, info, True), ptb.owned(pool_ref), ptb.u32(epochs), wal],
        )

    return cost, await tx.execute(build, wal_needed=cost, info=info)


@in_turn
async def shrink_pool(tx: Executor, pool_id: str, size: int) -> TxResult:
    """Take `size` unused bytes out of the pool (so its next renewal costs less); they come
    back to the wallet as a Storage object ending with the pool, which a later growth of the
    pool absorbs again, or a registration outside it reuses."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        storage = ptb.move_call(
            info.package_id,
            "system",
            "decrease_storage_pool_capacity_by_size",
            [system_arg(tx, ptb, info, False), ptb.owned(pool_ref), ptb.u64(size)],
        )
        ptb.transfer([storage], tx.address)

    return await tx.execute(build)


@in_turn
async def create_pool_with_storage(tx: Executor, storage_id: str) -> pt.PoolState:
    """A new pool backed by an owned Storage (started, not ended): nothing paid."""
    storage_ref = await tx.owned_ref(storage_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        created = ptb.move_call(
            info.package_id,
            "system",
            "create_storage_pool_with_storage",
            [system_arg(tx, ptb, info, False), ptb.owned(storage_ref)],
        )
        ptb.transfer([created], tx.address)

    return await pool(tx.rpc, _created_pool(await tx.execute(build)))


@in_turn
async def absorb_storage(tx: Executor, pool_id: str, storage_id: str) -> TxResult:
    """Grow the pool by an owned Storage ending with it (started): nothing paid."""
    pool_ref = await tx.owned_ref(pool_id)
    storage_ref = await tx.owned_ref(storage_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id,
            "system",
            "increase_storage_pool_capacity_with_storage",
            [system_arg(tx, ptb, info, False), ptb.owned(pool_ref), ptb.owned(storage_ref)],
        )

    return await tx.execute(build)


@in_turn
async def shrink_pool_by_percent(tx: Executor, pool_id: str, percent: int) -> mt.Storage:
    """Take `percent` of the pool's unused capacity out, as a Storage of the wallet."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        storage = ptb.move_call(
            info.package_id,
            "system",
            "decrease_storage_pool_unused_capacity_by_percent",
            [system_arg(tx, ptb, info, False), ptb.owned(pool_ref), ptb.u8(percent)],
        )
        ptb.transfer([storage], tx.address)

    return storage_returned(await tx.execute(build))


@in_turn
async def burn_expired(tx: Executor, pool_id: str, blob_ids: list[int]) -> TxResult:
    """Remove blobs of an ended pool (permanent ones too): what empties it for `destroy`."""
    return await _per_blob(tx, pool_id, blob_ids, "burn_expired_pooled_blob")


@in_turn
async def destroy_pool(tx: Executor, pool_id: str) -> mt.Storage:
    """Destroy an empty pool; its Storage comes back to the wallet."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        storage = ptb.move_call(info.package_id, "storage_pool", "destroy", [ptb.owned(pool_ref)])
        ptb.transfer([storage], tx.address)

    return storage_returned(await tx.execute(build))
