"""Storage pools: reads of a pool and its blobs, and their prices (the transactions are
`chain.pool_transactions`).

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

import pysui.sui.sui_grpc.pgrpc_requests as rq

from chain import errors, reads
from chain import move_types as mt
from chain import pool_types as pt
from chain import read_masks as masks
from chain.pricing import extend_cost, reserve_cost
from chain.records import SystemInfo
from chain.transport import Transport, contents
from codec.bcs import Reader
from codec.params import EncodingParams

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
