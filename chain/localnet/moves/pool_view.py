"""A `StoragePool` inside a transaction: its inner state and its blob table, laid out as the
real chain stores them (MystenLabs/walrus `mainnet-contracts/walrus/sources/system/
storage_pool.move`; the Sui framework's `object_table.move`, `dynamic_object_field.move` and
`dynamic_field.move`).

    StoragePool { id, version }                  owned by its owner (key, store)
    Field<u64, StoragePoolInnerV1>               at `pool_inner_id(pool)`, owned by the pool;
                                                 its `storage` wraps the pool's Storage
    Field<Wrapper<u256>, ID>                     one per blob, at `pooled_blob_field_id(table,
                                                 blob_id)`, owned by the table's UID; its
                                                 value is the PooledBlob's ID
    PooledBlob                                   owned by that field object
    Field<vector<u8>, Metadata>                  a PooledBlob's attributes, owned by it

`object_table::add` is `dynamic_object_field::add`: `dynamic_field::add` of the wrapper
(EFieldAlreadyExists = 0 in `sui::dynamic_field::add` when the key is taken), then the value
becomes a child of the field object. `borrow`/`borrow_mut`/`remove` of a missing key abort
with EFieldDoesNotExist = 1 in the native `borrow_child_object` (`borrow_child_object_mut`
for `borrow_mut`), which `dynamic_field::field_info`(`_mut`) calls.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain import pool_types as pt
from chain.aborts import (
    E_FIELD_ALREADY_EXISTS,
    E_FIELD_DOES_NOT_EXIST,
    E_INVALID_EPOCHS_AHEAD,
    E_POOL_WRONG_VERSION,
)
from chain.localnet.errors import ExecFailure
from chain.localnet.ledger import OWNER_OBJECT
from chain.localnet.moves.deployment import OBJECT_ID, WRAPPER_U256, Deployment
from chain.localnet.moves.registry import abort
from chain.localnet.moves.system_view import SystemView
from chain.localnet.txcontext import LiveObject, Tx

U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


def overflow(what: str) -> ExecFailure:
    """Move's arithmetic abort (an overflowing `+`): MOVE_PRIMITIVE_RUNTIME_ERROR."""
    return ExecFailure(12, f"arithmetic error: {what} overflows")


def new_pool(tx: Tx, dep: Deployment, storage: mt.Storage) -> LiveObject:
    """`storage_pool::create`: a pool backed by `storage` (which the caller wraps or has
    consumed), with an empty blob table; not owned yet. IDs are taken in Move's order: the
    pool's UID, then the table's."""
    pool = tx.create(dep.t("storage_pool", "StoragePool"), None)
    pool.value = pt.StoragePool(pool.id, pt.POOL_VERSION)
    table_id = tx.new_id()
    inner = pt.StoragePoolInnerV1(storage, 0, 0, pt.ObjectTable(table_id, 0))
    key = pt.POOL_VERSION.to_bytes(8, "little")
    field = tx.create(dep.pool_inner_type, inner, object_id=pt.pool_inner_id(pool.id))
    field.owner_kind, field.owner = OWNER_OBJECT, pool.id
    field.df = ("u64", key, dep.t("storage_pool", "StoragePoolInnerV1"))
    return pool


def assert_live(view: SystemView, pool: PoolView, where: str) -> None:
    """`assert!(storage_pool.end_epoch() > self.epoch(), EInvalidEpochsAhead)` in the
    `system_state_inner` function `where`."""
    end = pool.storage.end_epoch
    if not end > view.epoch:
        raise abort(
            view.tx,
            view.dep,
            E_INVALID_EPOCHS_AHEAD,
            where,
            f"the pool expired at epoch {end} (now {view.epoch})",
        )


class PoolView:
    """A pool's inner state (`inner`/`inner_mut`): read it, change it, and its blob table.

    Raises (constructor):
        MoveAbort: `storage_pool::EWrongVersion`, the pool's version is not this package's.
    """

    def __init__(self, tx: Tx, dep: Deployment, pool: LiveObject, fn: str = "inner") -> None:
        root: pt.StoragePool = pool.value
        if root.version != pt.POOL_VERSION:
            raise abort(tx, dep, E_POOL_WRONG_VERSION, fn, f"pool version {root.version}")
        field = tx.load(pt.pool_inner_id(pool.id, root.version))
        if field is None or field.state != "live":
            raise RuntimeError(f"the pool {pool.id} has no inner state")
        self.tx, self.dep, self.pool, self.obj = tx, dep, pool, field

    @property
    def inner(self) -> pt.StoragePoolInnerV1:
        value: pt.StoragePoolInnerV1 = self.obj.value
        return value

    def set(self, **changes: Any) -> None:
        self.obj.value = dataclasses.replace(self.inner, **changes)
        self.obj.touched = True

    @property
    def storage(self) -> mt.Storage:
        return self.inner.storage

    def set_storage(self, **changes: Any) -> None:
        """`storage_resource::extend_end_epoch`, `increase_size`, `split_by_size` on the
        wrapped Storage (no checks of their own)."""
        self.set(storage=dataclasses.replace(self.storage, **changes))

    @property
    def table_id(self) -> str:
        return self.inner.blobs.id

    # -- the blob table (`ObjectTable<u256, PooledBlob>`) -----------------------------------

    def entry(self, blob_id: int) -> LiveObject | None:
        """The table's `Field<Wrapper<u256>, ID>` of `blob_id`, None if it has none."""
        obj = self.tx.load(pt.pooled_blob_field_id(self.table_id, blob_id))
        if obj is None or obj.state != "live":
            return None
        return obj

    def contains(self, blob_id: int) -> bool:
        return self.entry(blob_id) is not None

    def borrow(self, blob_id: int, native: str = "borrow_child_object") -> LiveObject:
        """`object_table::borrow` (`native`: `borrow_child_object_mut` for `borrow_mut`).

        Raises:
            MoveAbort: `dynamic_field::EFieldDoesNotExist`, no blob `blob_id` in the pool.
        """
        field = self.entry(blob_id)
        if field is None:
            raise abort(
                self.tx,
                self.dep,
                E_FIELD_DOES_NOT_EXIST,
                native,
                f"the pool holds no blob {blob_id}",
            )
        child = self.tx.load("0x" + bytes(field.value).hex())
        if child is None or child.state != "live":
            raise RuntimeError(f"the pool's table entry {field.id} names no PooledBlob")
        return child

    def add(self, blob: LiveObject) -> None:
        """`object_table::add(blob.blob_id, blob)`.

        Raises:
            MoveAbort: `dynamic_field::EFieldAlreadyExists`, the pool holds the blob ID.
        """
        value: pt.PooledBlob = blob.value
        field_id = pt.pooled_blob_field_id(self.table_id, value.blob_id)
        field = self.tx.load(field_id)
        if field is not None and field.state == "live":
            raise abort(
                self.tx,
                self.dep,
                E_FIELD_ALREADY_EXISTS,
                "add",
                f"the pool already holds blob {value.blob_id}",
            )
        child_id = bytes.fromhex(blob.id.removeprefix("0x"))
        if field is not None:  # removed earlier in this transaction: the same field again
            field.state, field.value, field.touched = "live", child_id, True
        else:
            field = self.tx.create(self.dep.pooled_blob_field_type, child_id, object_id=field_id)
            field.owner_kind, field.owner = OWNER_OBJECT, self.table_id
            field.df = (WRAPPER_U256, value.blob_id.to_bytes(32, "little"), OBJECT_ID)
        blob.owner_kind, blob.owner, blob.touched = OWNER_OBJECT, field_id, True
        table = self.inner.blobs
        self.set(blobs=dataclasses.replace(table, size=table.size + 1))

    def remove(self, blob_id: int) -> LiveObject:
        """`object_table::remove`: the PooledBlob, out of the table and owned by no one.

        Raises:
            MoveAbort: `dynamic_field::EFieldDoesNotExist`, no blob `blob_id` in the pool.
        """
        blob = self.borrow(blob_id)
        field = self.entry(blob_id)
        assert field is not None
        self.tx.delete(field)
        blob.owner_kind, blob.owner, blob.touched = None, None, True
        table = self.inner.blobs
        self.set(blobs=dataclasses.replace(table, size=table.size - 1))
        return blob
