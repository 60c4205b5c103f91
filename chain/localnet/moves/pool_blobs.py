"""Twin of the public functions of the deployed `storage_pool.move` (MystenLabs/walrus
`mainnet-contracts/walrus/sources/system/storage_pool.move`, system package VERSION 3) that a
client calls on its own `StoragePool` without the System: `destroy`, the accessors, and the
six metadata convenience functions on a pooled blob found by its blob ID.

- `destroy`: removes the inner state (`dynamic_field::remove` under the pool's `version`, no
  version check), asserts `blob_count == 0` (EPoolNotEmpty = 7), destroys the empty table
  (`object_table::destroy_empty`, ETableNotEmpty = 0 in `sui::object_table`) and the pool, and
  returns the pool's Storage, unwrapped under its own ID.
- the accessors read the inner state through `inner` (EWrongVersion = 10); `blob_object_id`
  borrows the table entry (`sui::dynamic_field` EFieldDoesNotExist = 1 in
  `borrow_child_object` when the pool holds no such blob).
- the metadata functions borrow the PooledBlob mutably (`borrow_blob_mut`: EFieldDoesNotExist
  in `borrow_child_object_mut`), then act on its `metadata` field with storage_pool's own
  EDuplicateMetadata (12) and EMissingMetadata (13) (`chain.localnet.moves.metadata_field`).

The `storage` accessor (`&Storage`) and the `public(package)` functions are not here: a PTB
cannot take a reference as a result, and only the package calls the others.
"""

from __future__ import annotations

from typing import Any

from chain import pool_types as pt
from chain.aborts import (
    E_POOL_DUPLICATE_METADATA,
    E_POOL_MISSING_METADATA,
    E_POOL_NOT_EMPTY,
    E_TABLE_NOT_EMPTY,
)
from chain.localnet.moves import metadata_field as mf
from chain.localnet.moves.pool_view import PoolView
from chain.localnet.moves.registry import Registry, abort, mut, pure, ref, val
from chain.localnet.moves.system import unwrap
from chain.localnet.txcontext import LiveObject, MoveFunction, Tx

#: storage_pool.move's EDuplicateMetadata (12) and EMissingMetadata (13)
POOL_METADATA = mf.MetadataAborts(E_POOL_DUPLICATE_METADATA, E_POOL_MISSING_METADATA)

#: accessor -> (its Move return type, the value from the pool's state)
ACCESSORS = {
    "start_epoch": ("u32", lambda s: s.storage.start_epoch),
    "end_epoch": ("u32", lambda s: s.storage.end_epoch),
    "reserved_encoded_capacity_bytes": ("u64", lambda s: s.storage.storage_size),
    "used_encoded_bytes": ("u64", lambda s: s.used_encoded_bytes),
    "available_encoded_bytes": ("u64", lambda s: s.storage.storage_size - s.used_encoded_bytes),
    "blob_count": ("u64", lambda s: s.blob_count),
}


def register(r: Registry) -> None:
    dep, table = r.dep, r.table
    W, pool_t = dep.walrus_pkg, dep.t("storage_pool", "StoragePool")
    storage_t = dep.t("storage_resource", "Storage")
    fn = r.decorator(
        {
            "destroy": [storage_t],
            "contains_blob": ["bool"],
            "blob_object_id": ["id"],
            "object_id": ["id"],
            "add_or_replace_blob_metadata": ["option<Metadata>"],
            "take_blob_metadata": ["Metadata"],
            "remove_blob_metadata_pair": ["string", "string"],
            "remove_blob_metadata_pair_if_exists": ["option<string>"],
        }
    )

    @fn(W, "storage_pool", "destroy", [val(pool_t)])
    def destroy(tx: Tx, pool: LiveObject) -> list[Any]:
        root: pt.StoragePool = pool.value
        field = tx.load(pt.pool_inner_id(pool.id, root.version))
        if field is None or field.state != "live":
            raise RuntimeError(f"the pool {pool.id} has no inner state")
        inner: pt.StoragePoolInnerV1 = field.value
        tx.delete(field)
        if inner.blob_count != 0:
            raise abort(
                tx, dep, E_POOL_NOT_EMPTY, "destroy", f"the pool holds {inner.blob_count} blobs"
            )
        if inner.blobs.size != 0:
            raise abort(tx, dep, E_TABLE_NOT_EMPTY, "destroy_empty", "the blob table is not empty")
        tx.delete(pool)
        return [unwrap(tx, storage_t, inner.storage, inner.storage.id)]

    for name, (result_type, read) in ACCESSORS.items():

        def accessor(tx: Tx, pool: LiveObject, _read: Any = read) -> list[Any]:
            return [_read(PoolView(tx, dep, pool).inner)]

        table[(W, "storage_pool", name)] = MoveFunction([ref(pool_t)], accessor, 0, [result_type])

    @fn(W, "storage_pool", "contains_blob", [ref(pool_t), pure("u256")])
    def contains_blob(tx: Tx, pool: LiveObject, blob_id: int) -> list[Any]:
        return [PoolView(tx, dep, pool).contains(blob_id)]

    @fn(W, "storage_pool", "blob_object_id", [ref(pool_t), pure("u256")])
    def blob_object_id(tx: Tx, pool: LiveObject, blob_id: int) -> list[Any]:
        return [PoolView(tx, dep, pool).borrow(blob_id).id]

    @fn(W, "storage_pool", "object_id", [ref(pool_t)])
    def object_id(tx: Tx, pool: LiveObject) -> list[Any]:
        return [pool.id]

    def blob_mut(tx: Tx, pool: LiveObject, blob_id: int) -> LiveObject:
        """`borrow_blob_mut`."""
        return PoolView(tx, dep, pool, "inner_mut").borrow(blob_id, "borrow_child_object_mut")

    @fn(W, "storage_pool", "add_blob_metadata", [mut(pool_t), pure("u256"), val("Metadata")])
    def add_blob_metadata(
        tx: Tx, pool: LiveObject, blob_id: int, metadata: dict[str, str]
    ) -> list[Any]:
        mf.add_metadata(tx, dep, blob_mut(tx, pool, blob_id), metadata, POOL_METADATA)
        return []

    @fn(
        W,
        "storage_pool",
        "add_or_replace_blob_metadata",
        [mut(pool_t), pure("u256"), val("Metadata")],
    )
    def add_or_replace_blob_metadata(
        tx: Tx, pool: LiveObject, blob_id: int, metadata: dict[str, str]
    ) -> list[Any]:
        return [mf.add_or_replace_metadata(tx, dep, blob_mut(tx, pool, blob_id), metadata)]

    @fn(W, "storage_pool", "take_blob_metadata", [mut(pool_t), pure("u256")])
    def take_blob_metadata(tx: Tx, pool: LiveObject, blob_id: int) -> list[Any]:
        return [mf.take_metadata(tx, dep, blob_mut(tx, pool, blob_id), POOL_METADATA)]

    @fn(
        W,
        "storage_pool",
        "insert_or_update_blob_metadata_pair",
        [mut(pool_t), pure("u256"), pure("string"), pure("string")],
    )
    def insert_or_update_blob_metadata_pair(
        tx: Tx, pool: LiveObject, blob_id: int, key: str, value: str
    ) -> list[Any]:
        mf.insert_or_update_metadata_pair(tx, dep, blob_mut(tx, pool, blob_id), key, value)
        return []

    @fn(
        W,
        "storage_pool",
        "remove_blob_metadata_pair",
        [mut(pool_t), pure("u256"), pure("string")],
    )
    def remove_blob_metadata_pair(tx: Tx, pool: LiveObject, blob_id: int, key: str) -> list[Any]:
        blob = blob_mut(tx, pool, blob_id)
        return list(mf.remove_metadata_pair(tx, dep, blob, key, POOL_METADATA))

    @fn(
        W,
        "storage_pool",
        "remove_blob_metadata_pair_if_exists",
        [mut(pool_t), pure("u256"), pure("string")],
    )
    def remove_blob_metadata_pair_if_exists(
        tx: Tx, pool: LiveObject, blob_id: int, key: str
    ) -> list[Any]:
        blob = blob_mut(tx, pool, blob_id)
        return [mf.remove_metadata_pair_if_exists(tx, dep, blob, key)]
