"""Twin of Walrus `storage_resource.move`: a `Storage` reservation of a size over an epoch
range, split and fused."""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain.aborts import (
    E_INCOMPATIBLE_AMOUNT,
    E_INCOMPATIBLE_EPOCHS,
    E_INVALID_EPOCH,
    E_INVALID_EPOCH_RANGE,
)
from chain.localnet.moves.deployment import Deployment
from chain.localnet.moves.registry import Registry, abort, mut, pure, val
from chain.localnet.txcontext import LiveObject, Tx


def new_storage(tx: Tx, dep: Deployment, start: int, end: int, size: int) -> LiveObject:
    """`create_storage`: a new Storage of `size` bytes for epochs [start, end).

    Raises:
        MoveAbort: `EInvalidEpochRange`, the range is empty.
    """
    if not start < end:
        raise abort(tx, dep, E_INVALID_EPOCH_RANGE, "create_storage", "empty epoch range")
    obj = tx.create(dep.t("storage_resource", "Storage"), None)
    obj.value = mt.Storage(obj.id, start, end, size)
    return obj


def fuse_period_values(
    tx: Tx, dep: Deployment, first: mt.Storage, second: mt.Storage
) -> mt.Storage:
    """`fuse_periods` on the values: adjacent periods of one size become one.

    Raises:
        MoveAbort: `EIncompatibleAmount` (sizes differ) or `EIncompatibleEpochs` (the
            periods do not meet).
    """
    if first.storage_size != second.storage_size:
        raise abort(tx, dep, E_INCOMPATIBLE_AMOUNT, "fuse_periods", "sizes differ")
    if first.end_epoch == second.start_epoch:
        return dataclasses.replace(first, end_epoch=second.end_epoch)
    if first.start_epoch != second.end_epoch:
        raise abort(tx, dep, E_INCOMPATIBLE_EPOCHS, "fuse_periods", "not adjacent")
    return dataclasses.replace(first, start_epoch=second.start_epoch)


def register(r: Registry) -> None:
    dep = r.dep
    W, storage_t = dep.walrus_pkg, dep.t("storage_resource", "Storage")
    fn = r.decorator({"split_by_epoch": [storage_t], "split_by_size": [storage_t]})

    @fn(W, "storage_resource", "split_by_epoch", [mut(storage_t), pure("u32")])
    def split_by_epoch(tx: Tx, storage: LiveObject, split_epoch: int) -> list[Any]:
        res: mt.Storage = storage.value
        if not res.start_epoch < split_epoch < res.end_epoch:
            raise abort(tx, dep, E_INVALID_EPOCH, "split_by_epoch", "split epoch")
        storage.value = dataclasses.replace(res, end_epoch=split_epoch)
        new = tx.create(storage_t, None)
        new.value = mt.Storage(new.id, split_epoch, res.end_epoch, res.storage_size)
        return [new]

    @fn(W, "storage_resource", "split_by_size", [mut(storage_t), pure("u64")])
    def split_by_size(tx: Tx, storage: LiveObject, split_size: int) -> list[Any]:
        res: mt.Storage = storage.value
        if not res.storage_size >= split_size:
            raise abort(tx, dep, E_INCOMPATIBLE_AMOUNT, "split_by_size", "split size")
        storage.value = dataclasses.replace(res, storage_size=split_size)
        new = tx.create(storage_t, None)
        new.value = mt.Storage(
            new.id, res.start_epoch, res.end_epoch, res.storage_size - split_size
        )
        return [new]

    @fn(W, "storage_resource", "fuse_periods", [mut(storage_t), val(storage_t)])
    def fuse_periods(tx: Tx, first: LiveObject, second: LiveObject) -> list[Any]:
        tx.delete(second)
        first.value = fuse_period_values(tx, dep, first.value, second.value)
        return []

    @fn(W, "storage_resource", "fuse_amount", [mut(storage_t), val(storage_t)])
    def fuse_amount(tx: Tx, first: LiveObject, second: LiveObject) -> list[Any]:
        tx.delete(second)
        a, b = first.value, second.value
        if not (a.start_epoch == b.start_epoch and a.end_epoch == b.end_epoch):
            raise abort(tx, dep, E_INCOMPATIBLE_EPOCHS, "fuse_amount", "periods differ")
        first.value = dataclasses.replace(a, storage_size=a.storage_size + b.storage_size)
        return []

    @fn(W, "storage_resource", "destroy", [val(storage_t)])
    def destroy(tx: Tx, storage: LiveObject) -> list[Any]:
        tx.delete(storage)
        return []
