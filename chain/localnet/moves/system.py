"""Twin of Walrus `system.move` (with the parts of `system_state_inner.move`, `blob.move`,
`bls_aggregate.move` and `messages.move` its entry points run): reserving storage,
registering, certifying, extending and deleting blobs, and the System's accessors."""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain.aborts import (
    E_ALREADY_CERTIFIED,
    E_BLOB_NOT_DELETABLE,
    E_INVALID_BLOB_ID,
    E_INVALID_BLOB_OBJECT,
    E_INVALID_BLOB_PERSISTENCE_TYPE,
    E_INVALID_ENCODING_TYPE,
    E_INVALID_EPOCHS_AHEAD,
    E_INVALID_RESOURCE_SIZE,
    E_NOT_CERTIFIED,
    E_RESOURCE_BOUNDS,
    E_RESOURCE_SIZE,
)
from chain.localnet.errors import ExecFailure
from chain.localnet.moves.certificate import verify_blob_certificate
from chain.localnet.moves.deployment import Deployment
from chain.localnet.moves.encoding import derive_blob_id, encoded_blob_length
from chain.localnet.moves.metadata_field import delete_metadata
from chain.localnet.moves.registry import Registry, abort, mut, pure, ref, val, withdraw
from chain.localnet.moves.storage_resource import fuse_period_values, new_storage
from chain.localnet.moves.system_view import SystemView
from chain.localnet.txcontext import LiveObject, MoveFunction, Tx

RED_STUFF_RAPTOR = 1  # encoding.move RS2


def checked_encoded_length(
    tx: Tx, dep: Deployment, size: int, encoding_type: int, n_shards: int
) -> int:
    """`encoding::encoded_blob_length`: the encoded size of a `size`-byte blob.

    Raises:
        MoveAbort: `encoding::EInvalidEncodingType`, not RS2.
        ExecFailure: the arithmetic error of redstuff's `as u16` cast (a blob too large).
    """
    if encoding_type != RED_STUFF_RAPTOR:
        raise abort(tx, dep, E_INVALID_ENCODING_TYPE, "encoded_blob_length", "encoding")
    encoded = encoded_blob_length(size, n_shards)
    if encoded is None:
        raise ExecFailure(12, "arithmetic error: the blob is too large for its symbol size")
    return encoded


def unwrap(tx: Tx, type_: str, value: mt.MoveStruct, object_id: str) -> LiveObject:
    """An object coming back out of the one that wrapped it, under its own ID, with no owner
    yet. Wrapped earlier in this transaction, it is the same object again (an input stays an
    input, one created here stays created)."""
    obj = tx.objs.get(object_id)
    if obj is not None and obj.state == "wrapped":
        obj.state, obj.value, obj.touched = "live", value, True
        obj.owner_kind, obj.owner = None, None
        return obj
    obj = tx.create(type_, value, object_id=object_id)
    obj.unwrapped = True
    return obj


def reserve_for_epochs(
    view: SystemView, amount: int, start: int, end: int, pay: LiveObject
) -> LiveObject:
    """`system_state_inner::reserve_space_for_epochs`: a new Storage of `amount` bytes for
    [max(start, now), end), paid for each epoch and booked as used capacity.

    Raises:
        MoveAbort: EInvalidEpochsAhead (empty range, or beyond max_epochs_ahead),
            `balance::ENotEnough`, EInvalidResourceSize (zero bytes), EStorageExceeded.
    """
    tx, dep = view.tx, view.dep
    current = view.epoch
    start = max(start, current)
    if not end > start:
        raise abort(tx, dep, E_INVALID_EPOCHS_AHEAD, "reserve_space_for_epochs", "empty range")
    start_offset, end_offset = start - current, end - current
    if end_offset > view.state.future_accounting.length:
        raise abort(
            tx, dep, E_INVALID_EPOCHS_AHEAD, "reserve_space_for_epochs", "beyond max_epochs_ahead"
        )
    view.pay_storage(amount, start_offset, end_offset, pay)
    if amount == 0:
        raise abort(
            tx, dep, E_INVALID_RESOURCE_SIZE, "reserve_space_without_payment", "zero storage"
        )
    view.add_used_capacity(
        start_offset, end_offset, amount, check=True, where="reserve_space_without_payment"
    )
    return new_storage(tx, dep, start, end, amount)


def register(r: Registry) -> None:
    dep, table = r.dep, r.table
    W, system_t, blob_t = dep.walrus_pkg, dep.t("system", "System"), dep.t("blob", "Blob")
    storage_t, wal_coin = dep.t("storage_resource", "Storage"), dep.wal_coin
    fn = r.decorator(
        {
            "reserve_space": [storage_t],
            "reserve_space_for_epochs": [storage_t],
            "delete_blob": [storage_t],
            "register_blob": [blob_t],
        }
    )

    @fn(W, "system", "reserve_space", [mut(system_t), pure("u64"), pure("u32"), mut(wal_coin)])
    def reserve_space(
        tx: Tx, system: LiveObject, amount: int, epochs_ahead: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "reserve_space")
        if epochs_ahead == 0 or epochs_ahead > view.state.future_accounting.length:
            raise abort(
                tx,
                dep,
                E_INVALID_EPOCHS_AHEAD,
                "reserve_space",
                f"epochs_ahead {epochs_ahead} not in 1..{view.state.future_accounting.length}",
            )
        start = view.epoch
        return [reserve_for_epochs(view, amount, start, start + epochs_ahead, pay)]

    @fn(
        W,
        "system",
        "reserve_space_for_epochs",
        [mut(system_t), pure("u64"), pure("u32"), pure("u32"), mut(wal_coin)],
    )
    def reserve_space_for_epochs(
        tx: Tx, system: LiveObject, amount: int, start: int, end: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "reserve_space_for_epochs")
        return [reserve_for_epochs(view, amount, start, end, pay)]

    @fn(
        W,
        "system",
        "register_blob",
        [
            mut(system_t),
            val(storage_t),
            pure("u256"),
            pure("u256"),
            pure("u64"),
            pure("u8"),
            pure("bool"),
            mut(wal_coin),
        ],
    )
    def register_blob(
        tx: Tx,
        system: LiveObject,
        storage: LiveObject,
        blob_id: int,
        root_hash: int,
        size: int,
        encoding_type: int,
        deletable: bool,
        pay: LiveObject,
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "register_blob")
        epoch, n_shards = view.epoch, view.state.committee.n_shards
        res: mt.Storage = storage.value
        if not res.start_epoch <= epoch < res.end_epoch:
            raise abort(
                tx,
                dep,
                E_RESOURCE_BOUNDS,
                "new",
                f"storage [{res.start_epoch}, {res.end_epoch}) does not cover epoch {epoch}",
            )
        encoded = checked_encoded_length(tx, dep, size, encoding_type, n_shards)
        if encoded > res.storage_size:
            raise abort(
                tx,
                dep,
                E_RESOURCE_SIZE,
                "new",
                f"encoded size {encoded} exceeds the storage size {res.storage_size}",
            )
        if derive_blob_id(root_hash, encoding_type, size) != blob_id:
            raise abort(
                tx, dep, E_INVALID_BLOB_ID, "new", "blob ID not derived from root hash and size"
            )
        tx.wrap(storage)
        blob = tx.create(blob_t, None)
        blob.value = mt.Blob(blob.id, epoch, blob_id, size, encoding_type, None, res, deletable)
        tx.emit(
            W,
            "events",
            mt.BlobRegistered(
                epoch, blob_id, size, encoding_type, res.end_epoch, deletable, blob.id
            ),
        )
        write = view.write_price(encoded)
        withdraw(tx, dep, pay, write, "register_blob")
        view.reward_now(write)
        return [blob]

    @fn(
        W,
        "system",
        "certify_blob",
        [ref(system_t), mut(blob_t), pure("vector<u8>"), pure("vector<u8>"), pure("vector<u8>")],
    )
    def certify_blob(
        tx: Tx, system: LiveObject, blob: LiveObject, signature: bytes, bitmap: bytes, msg: bytes
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "certify_blob")
        cert = verify_blob_certificate(view, signature, bitmap, msg, "certify_blob")
        value: mt.Blob = blob.value
        if value.blob_id != cert.blob_id:
            raise abort(tx, dep, E_INVALID_BLOB_ID, "certify_with_certified_msg", "blob id")
        if value.certified_epoch is not None:
            raise abort(
                tx, dep, E_ALREADY_CERTIFIED, "certify_with_certified_msg", "already certified"
            )
        if not view.epoch < value.storage.end_epoch:
            raise abort(tx, dep, E_RESOURCE_BOUNDS, "certify_with_certified_msg", "expired")
        if value.deletable != cert.deletable:
            raise abort(
                tx,
                dep,
                E_INVALID_BLOB_PERSISTENCE_TYPE,
                "certify_with_certified_msg",
                "persistence type",
            )
        if value.deletable and cert.object_id != blob.id:
            raise abort(tx, dep, E_INVALID_BLOB_OBJECT, "certify_with_certified_msg", "object")
        blob.value = dataclasses.replace(value, certified_epoch=view.epoch)
        _emit_certified(tx, blob.value, False)
        return []

    def _emit_certified(tx: Tx, value: mt.Blob, is_extension: bool) -> None:
        assert value.certified_epoch is not None
        tx.emit(
            W,
            "events",
            mt.BlobCertified(
                value.certified_epoch,
                value.blob_id,
                value.storage.end_epoch,
                value.deletable,
                value.id,
                is_extension,
            ),
        )

    @fn(W, "system", "delete_blob", [ref(system_t), val(blob_t)])
    def delete_blob(tx: Tx, system: LiveObject, blob: LiveObject) -> list[Any]:
        view = SystemView(tx, dep, system, "delete_blob")
        delete_metadata(tx, dep, blob)
        value: mt.Blob = blob.value
        if not value.deletable:
            raise abort(tx, dep, E_BLOB_NOT_DELETABLE, "delete", "the blob is permanent")
        if not value.storage.end_epoch > view.epoch:
            raise abort(tx, dep, E_RESOURCE_BOUNDS, "delete", "the blob has expired")
        tx.delete(blob)
        tx.emit(
            W,
            "events",
            mt.BlobDeleted(
                view.epoch,
                value.blob_id,
                value.storage.end_epoch,
                blob.id,
                value.certified_epoch is not None,
            ),
        )
        return [unwrap(tx, storage_t, value.storage, value.storage.id)]

    def _assert_certified_not_expired(tx: Tx, value: mt.Blob, epoch: int, name: str) -> None:
        if value.certified_epoch is None:
            raise abort(tx, dep, E_NOT_CERTIFIED, "assert_certified_not_expired", name)
        if not epoch < value.storage.end_epoch:
            raise abort(
                tx,
                dep,
                E_RESOURCE_BOUNDS,
                "assert_certified_not_expired",
                f"{name}: the blob expired at epoch {value.storage.end_epoch}",
            )

    @fn(W, "system", "extend_blob", [mut(system_t), mut(blob_t), pure("u32"), mut(wal_coin)])
    def extend_blob(
        tx: Tx, system: LiveObject, blob: LiveObject, epochs: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "extend_blob")
        value: mt.Blob = blob.value
        _assert_certified_not_expired(tx, value, view.epoch, "extend_blob")
        start_offset = value.storage.end_epoch - view.epoch
        end_offset = start_offset + epochs
        if epochs == 0 or end_offset > view.state.future_accounting.length:
            raise abort(
                tx,
                dep,
                E_INVALID_EPOCHS_AHEAD,
                "extend_blob",
                f"new end {value.storage.end_epoch + epochs} is beyond max_epochs_ahead",
            )
        size = value.storage.storage_size
        view.pay_storage(size, start_offset, end_offset, pay)
        view.add_used_capacity(start_offset, end_offset, size, check=True)
        storage = dataclasses.replace(value.storage, end_epoch=value.storage.end_epoch + epochs)
        blob.value = dataclasses.replace(value, storage=storage)
        _emit_certified(tx, blob.value, True)
        return []

    @fn(W, "system", "extend_blob_with_resource", [ref(system_t), mut(blob_t), val(storage_t)])
    def extend_blob_with_resource(
        tx: Tx, system: LiveObject, blob: LiveObject, extension: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "extend_blob_with_resource")
        value: mt.Blob = blob.value
        _assert_certified_not_expired(tx, value, view.epoch, "extend_blob_with_resource")
        ext: mt.Storage = extension.value
        if not ext.end_epoch > value.storage.end_epoch:
            raise abort(tx, dep, E_RESOURCE_BOUNDS, "extend_with_resource", "not longer")
        fused = fuse_period_values(tx, dep, value.storage, ext)
        tx.delete(extension)
        blob.value = dataclasses.replace(value, storage=fused)
        _emit_certified(tx, blob.value, True)
        return []

    for name in ("epoch", "n_shards", "total_capacity_size", "used_capacity_size"):

        def accessor(tx: Tx, system: LiveObject, _name: str = name) -> list[Any]:
            state = SystemView(tx, dep, system, _name).state
            return [
                {
                    "epoch": state.committee.epoch,
                    "n_shards": state.committee.n_shards,
                    "total_capacity_size": state.total_capacity_size,
                    "used_capacity_size": state.used_capacity_size,
                }[_name]
            ]

        result_type = {"epoch": "u32", "n_shards": "u16"}.get(name, "u64")
        table[(W, "system", name)] = MoveFunction([ref(system_t)], accessor, 0, [result_type])
