"""Storage pools: reads of a pool and its blobs, and the transactions on them.

A `StoragePool` (MystenLabs/walrus `mainnet-contracts/walrus/sources/system/storage_pool.move`,
deployed with the system package's VERSION 3) reserves encoded capacity for an epoch range;
blobs registered against it (`PooledBlob`) have no end epoch of their own and live as long as
the pool, a delete gives their capacity back to the pool (no refund), and one
`extend_storage_pool` renews every blob in it. The pool is an owned object of the wallet, so
its transactions run in the wallet's turn (`chain.transactions.in_turn`), as a Blob's do.

Prices (`system_state_inner.move`): creating a pool pays storage for its capacity over its
epochs (`reserve_space`); registering pays the write fee of the blob's encoded size only;
`extend_storage_pool` pays storage for the whole reserved capacity over the added epochs;
`increase_storage_pool_capacity` pays storage for the added bytes over the pool's remaining
epochs.

Coroutines of the asyncio thread, as `chain.transactions` and `chain.reads` are.
"""

from __future__ import annotations

from typing import Any

import pysui.sui.sui_grpc.pgrpc_requests as rq

from chain import errors, reads
from chain import move_types as mt
from chain import pool_types as pt
from chain import read_masks as masks
from chain.executor import Executor
from chain.pricing import extend_cost, reserve_cost, write_cost
from chain.ptb import Ptb
from chain.records import SystemInfo, TxResult
from chain.transactions import RelayTip, in_turn, system_arg
from chain.transport import Transport, contents
from codec.bcs import Reader
from codec.params import BYTES_PER_UNIT_SIZE, ENCODING_TYPE_RS2, EncodingParams, storage_units

#: page size of ListDynamicFields (a full node serves at most 1000 a page)
FIELDS_PAGE_SIZE = 1000


# -- reads -------------------------------------------------------------------------------------


async def pool(rpc: Transport, pool_id: str) -> pt.PoolState:
    """The pool and its inner state.

    Raises:
        ObjectNotFound: no pool `pool_id` (destroyed, or another network's).
        ChainError: the pool has no inner state of its version.
    """
    root = pt.StoragePool.from_bcs(contents(await rpc.object(pool_id)))
    try:
        field = await rpc.object(pt.pool_inner_id(pool_id, root.version))
    except errors.ObjectNotFound:
        raise errors.ChainError(f"pool {pool_id} has no state of version {root.version}") from None
    key = root.version.to_bytes(8, "little")
    # `read`: a later pool version may append fields
    inner = pt.StoragePoolInnerV1.read(Reader(contents(field)[32 + len(key) :]))
    return pt.PoolState(root.id, root.version, inner)


async def owned_pools(rpc: Transport, owner: str) -> list[pt.PoolState]:
    """Every StoragePool the wallet owns, with its state."""
    info = await reads.system_info(rpc)
    objs = await reads.owned(rpc, owner, f"{info.type_package}::storage_pool::StoragePool")
    return [await pool(rpc, pt.StoragePool.from_bcs(contents(o)).id) for o in objs]


async def pooled_blob(rpc: Transport, state: pt.PoolState, blob_id: int) -> pt.PooledBlob | None:
    """The pool's blob of `blob_id` (its table entry, then the object), None if it has none."""
    try:
        field = await rpc.object(pt.pooled_blob_field_id(state.table_id, blob_id))
    except errors.ObjectNotFound:
        return None
    raw = contents(field)  # Field<Wrapper<u256>, ID> { id, name: u256, value: ID }
    child = "0x" + raw[64:96].hex()
    return pt.PooledBlob.from_bcs(contents(await rpc.object(child)))


async def pooled_object(rpc: Transport, object_id: str) -> pt.PooledBlob:
    """The PooledBlob object `object_id`.

    Raises:
        NotPooled: it is another kind of object (an owned Blob).
        ObjectNotFound: it does not exist (deleted or burned).
    """
    obj = await rpc.object(object_id)
    if not (obj.object_type or "").endswith("::storage_pool::PooledBlob"):
        raise errors.NotPooled(f"{object_id} is a {obj.object_type}, not a PooledBlob")
    return pt.PooledBlob.from_bcs(contents(obj))


async def pooled_blobs(rpc: Transport, state: pt.PoolState) -> list[pt.PooledBlob]:
    """Every blob in the pool: the table's dynamic object fields (all pages), then their
    objects in batches of `reads.OBJECT_BATCH`."""
    children: list[str] = []
    token: bytes | None = None
    while True:
        page = await rpc.call(
            rq.GetDynamicFields(
                object_id=state.table_id,
                page_size=FIELDS_PAGE_SIZE,
                page_token=token,
                field_mask=list(masks.POOL_TABLE),
            )
        )
        children.extend(f.child_id for f in page.dynamic_fields if f.child_id)
        token = page.next_page_token
        if not token:
            break
    found: list[pt.PooledBlob] = []
    for start in range(0, len(children), reads.OBJECT_BATCH):
        batch = children[start : start + reads.OBJECT_BATCH]
        reply = await rpc.call(
            rq.GetMultipleObjects(object_ids=batch, field_mask=list(masks.OBJECT))
        )
        for result in reply.objects:
            if result.object is not None:  # None: deleted between the listing and the read
                found.append(pt.PooledBlob.from_bcs(contents(result.object)))
    return found


def as_blob(blob: pt.PooledBlob, state: pt.PoolState, n_shards: int) -> mt.Blob:
    """A pooled blob seen as a Blob (`mt.Blob.pool` set): what the volume code reads of any
    blob (ID, size, certification, end epoch) whichever way it is stored. Its `storage` is
    the pool's range and the blob's encoded size; it is no Storage object."""
    encoded = EncodingParams(n_shards).encoded_size(blob.unencoded_size)
    storage = mt.Storage(state.id, state.start_epoch, state.end_epoch, encoded)
    return mt.Blob(
        blob.id,
        blob.registered_epoch,
        blob.blob_id,
        blob.unencoded_size,
        blob.encoding_type,
        blob.certified_epoch,
        storage,
        blob.deletable,
        pool=state.id,
    )


async def pooled_as_blobs(rpc: Transport, owner: str, valid_only: bool) -> list[mt.Blob]:
    """The blobs of every pool the wallet owns, as Blobs (`as_blob`); `valid_only` drops the
    pools that have ended."""
    info = await reads.system_info(rpc)
    out: list[mt.Blob] = []
    for state in await owned_pools(rpc, owner):
        if valid_only and state.end_epoch <= info.epoch:
            continue
        out.extend(as_blob(b, state, info.n_shards) for b in await pooled_blobs(rpc, state))
    return out


# -- prices ------------------------------------------------------------------------------------


def create_cost(info: SystemInfo, capacity: int, epochs: int) -> int:
    return reserve_cost(capacity, epochs, info.storage_price)


def grow_cost(info: SystemInfo, state: pt.PoolState, extra: int) -> int:
    """`increase_storage_pool_capacity`: the added bytes for the pool's remaining epochs."""
    return reserve_cost(extra, state.end_epoch - info.epoch, info.storage_price) if extra else 0


def renew_cost(info: SystemInfo, capacity: int, epochs: int) -> int:
    """`extend_storage_pool`: the whole reserved capacity for the added epochs."""
    return extend_cost(capacity, epochs, info.storage_price)


def encoded_size(info: SystemInfo, size: int) -> int:
    return EncodingParams(info.n_shards).encoded_size(size)


# -- transactions ------------------------------------------------------------------------------


def _pool_arg(ptb: Ptb, ref: Any) -> Any:
    return ptb.owned(ref)


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
        pool_arg = _pool_arg(ptb, pool_ref)
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
                _pool_arg(ptb, pool_ref),
                ptb.u256(blob_id),
                ptb.byte_vector(signature),
                ptb.byte_vector(signers_bitmap),
                ptb.byte_vector(message),
            ],
        )

    return await tx.execute(build)


@in_turn
async def delete_pooled_blobs(tx: Executor, pool_id: str, blob_ids: list[int]) -> TxResult:
    """Delete deletable blobs of the pool in one transaction: their capacity returns to the
    pool for the next registrations."""
    pool_ref = await tx.owned_ref(pool_id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = system_arg(tx, ptb, info, False)
        pool_arg = _pool_arg(ptb, pool_ref)
        for blob_id in blob_ids:
            ptb.move_call(
                info.package_id,
                "system",
                "delete_pooled_blob",
                [system, pool_arg, ptb.u256(blob_id)],
            )

    return await tx.execute(build)


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
            [system_arg(tx, ptb, info, True), _pool_arg(ptb, pool_ref), ptb.u32(epochs), wal],
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
            [system_arg(tx, ptb, info, False), _pool_arg(ptb, pool_ref), ptb.u64(size)],
        )
        ptb.transfer([storage], tx.address)

    return await tx.execute(build)
