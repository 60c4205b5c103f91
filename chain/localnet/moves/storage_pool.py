"""Twin of the deployed `system.move` section "Storage Pool" (creating a pool, registering,
certifying, deleting and burning its blobs) with what those entry points run in
`system_state_inner.move` (section "Storage Pool", `reserve_space`,
`process_storage_payments`), `storage_pool.move` and `storage_resource.move` (MystenLabs/walrus
`mainnet-contracts/walrus/sources/`, system package VERSION 3, deployed on testnet and
mainnet). Lifetime and capacity changes are `pool_capacity`'s, the pool's own public functions
`pool_blobs`'.

Each `assert!` is mirrored in order with its module, abort code and the function it is in:

- `system::inner`/`inner_mut`: EWrongVersion (system 1).
- `system_state_inner.move`: `reserve_space`'s EInvalidEpochsAhead (2), EInvalidResourceSize
  (11) and EStorageExceeded (1) for `create_storage_pool`; EInvalidResourceSize and
  EInvalidEpochsAhead (a Storage not started or expired) in
  `create_storage_pool_with_storage`; EInvalidEpochsAhead when the pool is not live
  (`register_pooled_blob`, `delete_pooled_blob`) or, for `burn_expired_pooled_blob`, still
  live; EInvalidIdEpoch (3) and the certificate's aborts (`certificate`).
- `storage_pool.move`: `inner`/`inner_mut` EWrongVersion (10), `new_pooled_blob`
  EInvalidBlobId (3), `encoding::encoded_blob_length` EInvalidEncodingType (encoding 0),
  `add_blob` EInsufficientCapacity (6), `remove_blob` EInvalidBlobSize (8) and
  EInvalidBlobCount (9), `certify` EInvalidBlobId, EResourceBounds (1), EAlreadyCertified (2),
  EInvalidBlobPersistenceType (4), EInvalidBlobObject (5), `delete_blob_object`
  EBlobNotDeletable (0).
- the Sui framework: `balance::split` ENotEnough (2), the blob table's `dynamic_field`
  EFieldAlreadyExists (0) for a blob ID the pool holds, EFieldDoesNotExist (1) for one it
  does not (`pool_view`).

Payments: creating pays `reserve_space`'s storage (storage_price_per_unit_size x storage units
of the capacity, for each epoch of [now, now + epochs_ahead), booked as that epoch's rewards)
and books the capacity as used; registering pays the write fee (`write_price` of the encoded
size) into the current epoch's rewards. Deleting a pooled blob gives its encoded size back to
the pool, not to the System and not to the payer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from chain import move_types as mt
from chain import pool_types as pt
from chain.aborts import (
    E_INVALID_EPOCHS_AHEAD,
    E_INVALID_RESOURCE_SIZE,
    E_POOL_ALREADY_CERTIFIED,
    E_POOL_BLOB_NOT_DELETABLE,
    E_POOL_INSUFFICIENT_CAPACITY,
    E_POOL_INVALID_BLOB_COUNT,
    E_POOL_INVALID_BLOB_ID,
    E_POOL_INVALID_BLOB_OBJECT,
    E_POOL_INVALID_BLOB_PERSISTENCE_TYPE,
    E_POOL_INVALID_BLOB_SIZE,
    E_POOL_RESOURCE_BOUNDS,
    Abort,
)
from chain.localnet.moves.certificate import verify_blob_certificate
from chain.localnet.moves.encoding import derive_blob_id
from chain.localnet.moves.metadata_field import delete_metadata
from chain.localnet.moves.pool_view import U64_MAX, PoolView, assert_live, new_pool, overflow
from chain.localnet.moves.registry import Registry, abort, mut, pure, ref, val, withdraw
from chain.localnet.moves.system import checked_encoded_length, reserve_for_epochs
from chain.localnet.moves.system_view import SystemView
from chain.localnet.txcontext import LiveObject, Tx


def register(r: Registry) -> None:
    dep = r.dep
    W, system_t, wal_coin = dep.walrus_pkg, dep.t("system", "System"), dep.wal_coin
    pool_t, storage_t = dep.t("storage_pool", "StoragePool"), dep.t("storage_resource", "Storage")
    fn = r.decorator(
        {
            "create_storage_pool": [pool_t],
            "create_storage_pool_with_storage": [pool_t],
        }
    )

    def fail(tx: Tx, error: Abort, where: str, what: str) -> Exception:
        return abort(tx, dep, error, where, what)

    def create(tx: Tx, view: SystemView, storage: mt.Storage) -> LiveObject:
        """`create_storage_pool_with_storage` past its checks: the pool and its event."""
        pool = new_pool(tx, dep, storage)
        tx.emit(
            W,
            "events",
            pt.StoragePoolCreated(
                view.epoch, pool.id, storage.storage_size, storage.start_epoch, storage.end_epoch
            ),
        )
        return pool

    @fn(
        W,
        "system",
        "create_storage_pool",
        [mut(system_t), pure("u64"), pure("u32"), mut(wal_coin)],
    )
    def create_storage_pool(
        tx: Tx, system: LiveObject, capacity: int, epochs_ahead: int, pay: LiveObject
    ) -> list[Any]:
        """`reserve_space` (payment and capacity accounting), then a pool around it."""
        view = SystemView(tx, dep, system, "inner_mut")
        max_ahead = view.state.future_accounting.length
        if epochs_ahead == 0 or epochs_ahead > max_ahead:
            raise fail(
                tx,
                E_INVALID_EPOCHS_AHEAD,
                "reserve_space",
                f"epochs_ahead {epochs_ahead} not in 1..{max_ahead}",
            )
        storage = reserve_for_epochs(view, capacity, view.epoch, view.epoch + epochs_ahead, pay)
        tx.wrap(storage)
        return [create(tx, view, storage.value)]

    @fn(W, "system", "create_storage_pool_with_storage", [ref(system_t), val(storage_t)])
    def create_storage_pool_with_storage(
        tx: Tx, system: LiveObject, storage: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        res: mt.Storage = storage.value
        where = "create_storage_pool_with_storage"
        if res.storage_size == 0:
            raise fail(tx, E_INVALID_RESOURCE_SIZE, where, "zero storage")
        if not res.start_epoch <= view.epoch:
            raise fail(tx, E_INVALID_EPOCHS_AHEAD, where, f"starts at {res.start_epoch}")
        if not res.end_epoch > view.epoch:
            raise fail(tx, E_INVALID_EPOCHS_AHEAD, where, f"expired at {res.end_epoch}")
        tx.wrap(storage)
        return [create(tx, view, res)]

    @fn(
        W,
        "system",
        "register_pooled_blob",
        [
            mut(system_t),
            mut(pool_t),
            pure("u256"),
            pure("u256"),
            pure("u64"),
            pure("u8"),
            pure("bool"),
            mut(wal_coin),
        ],
    )
    def register_pooled_blob(
        tx: Tx,
        system: LiveObject,
        pool: LiveObject,
        blob_id: int,
        root_hash: int,
        size: int,
        encoding_type: int,
        deletable: bool,
        pay: LiveObject,
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner_mut")
        pv = PoolView(tx, dep, pool)
        epoch, where = view.epoch, "register_pooled_blob"
        if not epoch >= pv.storage.start_epoch:
            raise fail(tx, E_INVALID_EPOCHS_AHEAD, where, "the pool has not started")
        if not epoch < pv.storage.end_epoch:
            raise fail(tx, E_INVALID_EPOCHS_AHEAD, where, "the pool has expired")
        # storage_pool::new_pooled_blob
        if derive_blob_id(root_hash, encoding_type, size) != blob_id:
            raise fail(
                tx,
                E_POOL_INVALID_BLOB_ID,
                "new_pooled_blob",
                "blob ID not derived from root hash and size",
            )
        blob = tx.create(dep.t("storage_pool", "PooledBlob"), None)
        blob.value = pt.PooledBlob(
            blob.id, epoch, blob_id, size, encoding_type, None, pool.id, deletable
        )
        tx.emit(
            W,
            "events",
            pt.PooledBlobRegistered(
                epoch, blob_id, size, encoding_type, deletable, blob.id, pool.id
            ),
        )
        encoded = checked_encoded_length(
            tx, dep, size, encoding_type, view.state.committee.n_shards
        )
        # storage_pool::add_blob
        inner = PoolView(tx, dep, pool, "inner_mut").inner
        used = inner.used_encoded_bytes + encoded
        if used > U64_MAX:
            raise overflow("used_encoded_bytes")
        pv.set(blob_count=inner.blob_count + 1, used_encoded_bytes=used)
        if not used <= pv.storage.storage_size:
            raise fail(
                tx,
                E_POOL_INSUFFICIENT_CAPACITY,
                "add_blob",
                f"{encoded} encoded bytes do not fit: {inner.used_encoded_bytes} of "
                f"{pv.storage.storage_size} are used",
            )
        pv.add(blob)
        write = view.write_price(encoded)
        withdraw(tx, dep, pay, write, where)
        view.reward_now(write)
        return []

    @fn(
        W,
        "system",
        "certify_pooled_blob",
        [
            ref(system_t),
            mut(pool_t),
            pure("u256"),
            pure("vector<u8>"),
            pure("vector<u8>"),
            pure("vector<u8>"),
        ],
    )
    def certify_pooled_blob(
        tx: Tx,
        system: LiveObject,
        pool: LiveObject,
        blob_id: int,
        signature: bytes,
        bitmap: bytes,
        msg: bytes,
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        cert = verify_blob_certificate(view, signature, bitmap, msg, "certify_pooled_blob")
        end_epoch = PoolView(tx, dep, pool).storage.end_epoch
        blob = PoolView(tx, dep, pool, "inner_mut").borrow(blob_id, "borrow_child_object_mut")
        # storage_pool::certify
        value: pt.PooledBlob = blob.value
        if value.blob_id != cert.blob_id:
            raise fail(tx, E_POOL_INVALID_BLOB_ID, "certify", "the message is for another blob")
        if not view.epoch < end_epoch:
            raise fail(tx, E_POOL_RESOURCE_BOUNDS, "certify", "the pool has expired")
        if value.certified_epoch is not None:
            raise fail(tx, E_POOL_ALREADY_CERTIFIED, "certify", "already certified")
        if value.deletable != cert.deletable:
            raise fail(tx, E_POOL_INVALID_BLOB_PERSISTENCE_TYPE, "certify", "persistence type")
        if value.deletable and cert.object_id != blob.id:
            raise fail(tx, E_POOL_INVALID_BLOB_OBJECT, "certify", "another object")
        blob.value = dataclasses.replace(value, certified_epoch=view.epoch)
        blob.touched = True
        tx.emit(
            W,
            "events",
            pt.PooledBlobCertified(
                view.epoch, value.blob_id, value.deletable, blob.id, value.storage_pool_id
            ),
        )
        return []

    def remove_blob(tx: Tx, view: SystemView, pool: LiveObject, blob_id: int) -> LiveObject:
        """`storage_pool::remove_blob`: the blob out of the table, its encoded size back to
        the pool."""
        pv = PoolView(tx, dep, pool, "inner_mut")
        value: pt.PooledBlob = pv.borrow(blob_id).value
        encoded = checked_encoded_length(
            tx, dep, value.unencoded_size, value.encoding_type, view.state.committee.n_shards
        )
        inner = pv.inner
        if not inner.used_encoded_bytes >= encoded:
            raise fail(tx, E_POOL_INVALID_BLOB_SIZE, "remove_blob", "used bytes below the blob's")
        if not inner.blob_count >= 1:
            raise fail(tx, E_POOL_INVALID_BLOB_COUNT, "remove_blob", "no blob counted")
        pv.set(
            used_encoded_bytes=inner.used_encoded_bytes - encoded,
            blob_count=inner.blob_count - 1,
        )
        return pv.remove(blob_id)

    @fn(W, "system", "delete_pooled_blob", [ref(system_t), mut(pool_t), pure("u256")])
    def delete_pooled_blob(tx: Tx, system: LiveObject, pool: LiveObject, blob_id: int) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        assert_live(view, PoolView(tx, dep, pool), "delete_pooled_blob")
        blob = remove_blob(tx, view, pool, blob_id)
        # storage_pool::delete_blob_object
        delete_metadata(tx, dep, blob)
        value: pt.PooledBlob = blob.value
        if not value.deletable:
            raise fail(tx, E_POOL_BLOB_NOT_DELETABLE, "delete_blob_object", "permanent blob")
        tx.delete(blob)
        tx.emit(
            W,
            "events",
            pt.PooledBlobDeleted(
                view.epoch, value.blob_id, blob.id, value.is_certified, value.storage_pool_id
            ),
        )
        return []

    @fn(W, "system", "burn_expired_pooled_blob", [ref(system_t), mut(pool_t), pure("u256")])
    def burn_expired_pooled_blob(
        tx: Tx, system: LiveObject, pool: LiveObject, blob_id: int
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "inner")
        end = PoolView(tx, dep, pool).storage.end_epoch
        if not end <= view.epoch:
            raise fail(
                tx,
                E_INVALID_EPOCHS_AHEAD,
                "burn_expired_pooled_blob",
                f"the pool lives until epoch {end} (now {view.epoch})",
            )
        blob = remove_blob(tx, view, pool, blob_id)
        # storage_pool::burn_blob_object: no deletable check, no event
        delete_metadata(tx, dep, blob)
        tx.delete(blob)
        return []
