"""Twin of the deployed `system.move` entry points that change a storage pool's lifetime and
capacity, with what they run in `system_state_inner.move` (`extend_storage_pool`,
`increase_storage_pool_capacity`(`_with_storage`), `decrease_storage_pool_*`,
`process_storage_payments`, `account_capacity`), `storage_pool.move` and
`storage_resource.move` (MystenLabs/walrus `mainnet-contracts/walrus/sources/`, system package
VERSION 3).

- `extend_storage_pool`: EInvalidEpochsAhead (system_state_inner 2) for zero epochs, an
  expired pool or an end beyond max_epochs_ahead; pays the whole reserved capacity for each
  added epoch [end - now, end - now + epochs) and books it as used capacity there
  (`account_capacity`: EStorageExceeded = 1); emits StoragePoolExtended.
- `increase_storage_pool_capacity`: EInvalidResourceSize (11) for zero bytes,
  EInvalidEpochsAhead for an expired pool; pays the added bytes for [0, end - now) and books
  them (the current epoch's `used_capacity_size` too).
- `increase_storage_pool_capacity_with_storage`: the Storage must have started (storage_pool
  EResourceBounds = 1) and end with the pool (EIncompatibleEndEpoch = 11); it is destroyed
  into the pool's capacity, no payment, no accounting (it was accounted when reserved).
- `decrease_storage_pool_capacity_by_size` / `_unused_capacity_by_percent`: a new Storage of
  the extracted bytes split off the pool's (`split_by_size`); storage_pool
  EInsufficientCapacity (6) when more than the unused capacity is asked, EInvalidPercent (14)
  above 100, system EZeroExtractSize (2) when nothing would be extracted.
"""

from __future__ import annotations

from typing import Any

from chain import move_types as mt
from chain import pool_types as pt
from chain.aborts import (
    E_INVALID_EPOCHS_AHEAD,
    E_INVALID_RESOURCE_SIZE,
    E_POOL_INCOMPATIBLE_END_EPOCH,
    E_POOL_INSUFFICIENT_CAPACITY,
    E_POOL_INVALID_PERCENT,
    E_POOL_RESOURCE_BOUNDS,
    E_ZERO_EXTRACT_SIZE,
    Abort,
)
from chain.localnet.moves.pool_view import U32_MAX, U64_MAX, PoolView, assert_live, overflow
from chain.localnet.moves.registry import Registry, abort, mut, pure, ref, val
from chain.localnet.moves.system_view import SystemView
from chain.localnet.txcontext import LiveObject, Tx


def register(r: Registry) -> None:
    dep = r.dep
    W, system_t, wal_coin = dep.walrus_pkg, dep.t("system", "System"), dep.wal_coin
    pool_t, storage_t = dep.t("storage_pool", "StoragePool"), dep.t("storage_resource", "Storage")
    fn = r.decorator(
        {
            "decrease_storage_pool_capacity_by_size": [storage_t],
            "decrease_storage_pool_unused_capacity_by_percent": [storage_t],
        }
    )

    def fail(tx: Tx, error: Abort, where: str, what: str) -> Exception:
        return abort(tx, dep, error, where, what)

    @fn(
        W,
        "system",
        "extend_storage_pool",
        [mut(system_t), mut(pool_t), pure("u32"), mut(wal_coin)],
    )
    def extend_storage_pool(
        tx: Tx, system: LiveObject, pool: LiveObject, epochs: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner_mut")
        where = "extend_storage_pool"
        if epochs == 0:
            raise fail(tx, E_INVALID_EPOCHS_AHEAD, where, "zero epochs")
        pv = PoolView(tx, dep, pool)
        assert_live(view, pv, where)
        start_offset = pv.storage.end_epoch - view.epoch
        end_offset = start_offset + epochs
        if end_offset > U32_MAX:
            raise overflow("the end offset")
        if end_offset > view.state.future_accounting.length:
            raise fail(
                tx,
                E_INVALID_EPOCHS_AHEAD,
                where,
                f"new end {pv.storage.end_epoch + epochs} is beyond max_epochs_ahead",
            )
        capacity = pv.storage.storage_size
        view.pay_storage(capacity, start_offset, end_offset, pay)
        view.add_used_capacity(start_offset, end_offset, capacity, True, "account_capacity")
        pv = PoolView(tx, dep, pool, "inner_mut")
        pv.set_storage(end_epoch=pv.storage.end_epoch + epochs)
        tx.emit(W, "events", pt.StoragePoolExtended(view.epoch, pool.id, pv.storage.end_epoch))
        return []

    @fn(
        W,
        "system",
        "increase_storage_pool_capacity",
        [mut(system_t), mut(pool_t), pure("u64"), mut(wal_coin)],
    )
    def increase_storage_pool_capacity(
        tx: Tx, system: LiveObject, pool: LiveObject, extra: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner_mut")
        where = "increase_storage_pool_capacity"
        if extra == 0:
            raise fail(tx, E_INVALID_RESOURCE_SIZE, where, "zero bytes")
        pv = PoolView(tx, dep, pool)
        assert_live(view, pv, where)
        remaining = pv.storage.end_epoch - view.epoch
        view.pay_storage(extra, 0, remaining, pay)
        view.add_used_capacity(0, remaining, extra, True, "account_capacity")
        pv = PoolView(tx, dep, pool, "inner_mut")
        if pv.storage.storage_size + extra > U64_MAX:
            raise overflow("the pool's capacity")
        pv.set_storage(storage_size=pv.storage.storage_size + extra)
        return []

    @fn(
        W,
        "system",
        "increase_storage_pool_capacity_with_storage",
        [ref(system_t), mut(pool_t), val(storage_t)],
    )
    def increase_storage_pool_capacity_with_storage(
        tx: Tx, system: LiveObject, pool: LiveObject, storage: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        assert_live(view, PoolView(tx, dep, pool), "increase_storage_pool_capacity_with_storage")
        # storage_pool::increase_capacity_with_storage
        pv = PoolView(tx, dep, pool, "inner_mut")
        other: mt.Storage = storage.value
        where = "increase_capacity_with_storage"
        if not other.start_epoch <= view.epoch:
            raise fail(tx, E_POOL_RESOURCE_BOUNDS, where, f"starts at {other.start_epoch}")
        if other.end_epoch != pv.storage.end_epoch:
            raise fail(
                tx,
                E_POOL_INCOMPATIBLE_END_EPOCH,
                where,
                f"ends at {other.end_epoch}, the pool at {pv.storage.end_epoch}",
            )
        if pv.storage.storage_size + other.storage_size > U64_MAX:
            raise overflow("the pool's capacity")
        pv.set_storage(storage_size=pv.storage.storage_size + other.storage_size)
        tx.delete(storage)
        return []

    def decrease_by_size(tx: Tx, pool: LiveObject, extract: int, entry: str) -> list[Any]:
        """`storage_pool::decrease_capacity_by_size`, and `system.move`'s
        `assert!(result.is_some(), EZeroExtractSize)` in `entry`."""
        if extract == 0:
            raise fail(tx, E_ZERO_EXTRACT_SIZE, entry, "nothing to extract")
        pv = PoolView(tx, dep, pool, "inner_mut")
        unused = pv.storage.storage_size - pv.inner.used_encoded_bytes
        if not unused >= extract:
            raise fail(
                tx,
                E_POOL_INSUFFICIENT_CAPACITY,
                "decrease_capacity_by_size",
                f"{extract} bytes asked, {unused} unused",
            )
        keep = pv.storage.storage_size - extract
        # storage_resource::split_by_size(keep): the pool keeps `keep`, a new Storage the rest
        pv.set_storage(storage_size=keep)
        split = tx.create(storage_t, None)
        split.value = mt.Storage(split.id, pv.storage.start_epoch, pv.storage.end_epoch, extract)
        return [split]

    @fn(
        W,
        "system",
        "decrease_storage_pool_capacity_by_size",
        [ref(system_t), mut(pool_t), pure("u64")],
    )
    def decrease_storage_pool_capacity_by_size(
        tx: Tx, system: LiveObject, pool: LiveObject, size: int
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        where = "decrease_storage_pool_capacity_by_size"
        assert_live(view, PoolView(tx, dep, pool), where)
        return decrease_by_size(tx, pool, size, where)

    @fn(
        W,
        "system",
        "decrease_storage_pool_unused_capacity_by_percent",
        [ref(system_t), mut(pool_t), pure("u8")],
    )
    def decrease_storage_pool_unused_capacity_by_percent(
        tx: Tx, system: LiveObject, pool: LiveObject, percent: int
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        where = "decrease_storage_pool_unused_capacity_by_percent"
        assert_live(view, PoolView(tx, dep, pool), where)
        # storage_pool::decrease_unused_capacity_by_percent
        if not percent <= 100:
            raise fail(
                tx,
                E_POOL_INVALID_PERCENT,
                "decrease_unused_capacity_by_percent",
                f"{percent} is not a percentage",
            )
        pv = PoolView(tx, dep, pool)
        unused = pv.storage.storage_size - pv.inner.used_encoded_bytes
        return decrease_by_size(tx, pool, unused * percent // 100, where)
