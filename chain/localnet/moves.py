"""The Move functions the stand-in executes: Walrus `system`, `blob`, `metadata`,
`storage_resource`, `wal_exchange` and `0x2::coin`, re-implemented from the Move source.

Every `assert!` on the path of these functions is mirrored with its module and abort code
(contracts/walrus/sources/system/*.move at the version the research note names); the function
names and argument orders are the Move ones, so a PTB built for the real chain runs here
unchanged. Where the Move code calls into the Sui framework the framework's aborts are used
(`sui::balance::split` aborts with ENotEnough = 2 when a coin is short).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from chain import move_types as mt
from chain.aborts import (
    E_ALREADY_CERTIFIED,
    E_BALANCE_NON_ZERO,
    E_BALANCE_NOT_ENOUGH,
    E_BLOB_NOT_DELETABLE,
    E_DUPLICATE_METADATA,
    E_EXCHANGE_INSUFFICIENT_FUNDS,
    E_EXCHANGE_INSUFFICIENT_INPUT,
    E_INCOMPATIBLE_AMOUNT,
    E_INCOMPATIBLE_EPOCHS,
    E_INCORRECT_APP_ID,
    E_INCORRECT_EPOCH,
    E_INCORRECT_INTENT_VERSION,
    E_INVALID_BITMAP,
    E_INVALID_BLOB_ID,
    E_INVALID_BLOB_OBJECT,
    E_INVALID_BLOB_PERSISTENCE_TYPE,
    E_INVALID_ENCODING_TYPE,
    E_INVALID_EPOCH,
    E_INVALID_EPOCH_RANGE,
    E_INVALID_EPOCHS_AHEAD,
    E_INVALID_ID_EPOCH,
    E_INVALID_MSG_TYPE,
    E_INVALID_RESOURCE_SIZE,
    E_MISSING_METADATA,
    E_MSG_INVALID_PERSISTENCE,
    E_NOT_CERTIFIED,
    E_NOT_ENOUGH_STAKE,
    E_RESOURCE_BOUNDS,
    E_RESOURCE_SIZE,
    E_SIG_VERIFICATION,
    E_STORAGE_EXCEEDED,
    E_VEC_MAP_KEY_MISSING,
    E_WRONG_VERSION,
    Abort,
)
from chain.bls import aggregate_verify
from chain.localnet.executor import (
    SUI_FRAMEWORK,
    SUI_TYPE,
    ExecFailure,
    LiveObject,
    MoveAbort,
    MoveFunction,
    Param,
    Tx,
    coin_inner,
    coin_type,
)
from chain.localnet.ledger import OWNER_OBJECT, StoredObject
from codec.params import storage_units

Impl = TypeVar("Impl", bound=Callable[..., list[Any]])

SYSTEM_VERSION = 4  # `system.move` VERSION: the key of System's inner-state dynamic field
STAKING_VERSION = 2
BLOB_CERT_MSG_TYPE = 1
INTENT_VERSION = 0
APP_ID = 3
RED_STUFF_RAPTOR = 1


@dataclass(frozen=True)
class Deployment:
    """Package and object IDs of a deployment (full-length 0x addresses)."""

    walrus_pkg: str
    wal_pkg: str
    exchange_pkg: str
    system_id: str
    staking_id: str
    exchange_id: str

    @property
    def wal_type(self) -> str:
        return f"{self.wal_pkg}::wal::WAL"

    @property
    def wal_coin(self) -> str:
        return coin_type(self.wal_type)

    @property
    def sui_coin(self) -> str:
        return coin_type(SUI_TYPE)

    def t(self, module: str, name: str) -> str:
        return f"{self.walrus_pkg}::{module}::{name}"

    @property
    def system_inner_type(self) -> str:
        return field_type("u64", self.t("system_state_inner", "SystemStateInnerV1"))

    @property
    def staking_inner_type(self) -> str:
        return field_type("u64", self.t("staking_inner", "StakingInnerV1"))

    @property
    def metadata_field_type(self) -> str:
        return field_type("vector<u8>", self.t("metadata", "Metadata"))

    @property
    def exchange_type(self) -> str:
        return f"{self.exchange_pkg}::wal_exchange::Exchange"

    def system_inner_id(self) -> str:
        return mt.versioned_inner_id(self.system_id, SYSTEM_VERSION)

    def staking_inner_id(self) -> str:
        return mt.versioned_inner_id(self.staking_id, STAKING_VERSION)

    def decode(self, stored: StoredObject) -> Any:
        """The Move value of a stored object, by its type."""
        raw = stored.contents
        types: dict[str, type[mt.MoveStruct]] = {
            self.t("blob", "Blob"): mt.Blob,
            self.t("storage_resource", "Storage"): mt.Storage,
            self.t("system", "System"): mt.VersionedRoot,
            self.t("staking", "Staking"): mt.VersionedRoot,
            self.t("staking_pool", "StakingPool"): mt.StakingPool,
            self.exchange_type: mt.Exchange,
        }
        if stored.type in types:
            return types[stored.type].from_bcs(raw)
        if coin_inner(stored.type) is not None:
            return mt.Coin.from_bcs(raw)
        if stored.df_name is not None:
            body = mt.field_value(raw, stored.df_name)
            fields: dict[str, type[mt.MoveStruct]] = {
                self.system_inner_type: mt.SystemStateInnerV1,
                self.staking_inner_type: mt.StakingInnerV1,
                self.metadata_field_type: mt.BlobAttributes,
            }
            if stored.type in fields:
                return fields[stored.type].from_bcs(body)
        raise ValueError(f"the stand-in does not know the type {stored.type}")


def field_type(name_type: str, value_type: str) -> str:
    return f"{SUI_FRAMEWORK}::dynamic_field::Field<{name_type}, {value_type}>"


def _abort(tx: Tx, dep: Deployment, error: Abort, function: str, what: str) -> MoveAbort:
    module, code = error.module, error.code
    package = {
        "balance": SUI_FRAMEWORK,
        "vec_map": SUI_FRAMEWORK,
        "wal_exchange": dep.exchange_pkg,
    }.get(module, dep.walrus_pkg)
    return MoveAbort(package, module, function, code, what)


def encoded_blob_length(size: int, n_shards: int) -> int | None:
    """`redstuff::encoded_blob_length`; None where Move's `as u16` cast would abort.

    Written from the Move source rather than taken from `codec`, so the contract-side check
    stays an independent cross-check of the client's encoder (tested equal).
    """
    f = (n_shards - 1) // 3
    primary, secondary = n_shards - 2 * f, n_shards - f
    symbol_size = (max(size, 1) - 1) // (primary * secondary) + 1
    symbol_size += symbol_size % 2
    if symbol_size > 0xFFFF:
        return None
    return n_shards * ((primary + secondary) * symbol_size + n_shards * 2 * 32 + 32)


def derive_blob_id(root_hash: int, encoding_type: int, size: int) -> int:
    raw = hashlib.blake2b(
        bytes([encoding_type]) + size.to_bytes(8, "little") + root_hash.to_bytes(32, "little"),
        digest_size=32,
    ).digest()
    return int.from_bytes(raw, "little")


class SystemView:
    """The System's inner state inside a transaction: read it, replace it."""

    def __init__(self, tx: Tx, dep: Deployment, system: LiveObject, fn: str) -> None:
        root: mt.VersionedRoot = system.value
        if root.version != SYSTEM_VERSION:
            raise _abort(tx, dep, E_WRONG_VERSION, fn, "package version mismatch")
        inner = tx.load(dep.system_inner_id())
        if inner is None:
            raise RuntimeError("the System has no inner state: genesis is incomplete")
        inner.mutable = system.mutable
        self.obj = inner
        self.tx, self.dep, self.fn = tx, dep, fn

    @property
    def state(self) -> mt.SystemStateInnerV1:
        value: mt.SystemStateInnerV1 = self.obj.value
        return value

    def set(self, **changes: Any) -> None:
        self.obj.value = dataclasses.replace(self.state, **changes)
        self.obj.touched = True

    @property
    def epoch(self) -> int:
        return self.state.committee.epoch

    def add_used_capacity(self, start: int, end: int, amount: int, check: bool) -> None:
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        used_now = self.state.used_capacity_size
        for offset in range(start, end):
            index = (ring.current_index + offset) % ring.length
            entry = entries[index]
            used = entry.used_capacity + amount
            entries[index] = dataclasses.replace(entry, used_capacity=used)
            if offset == 0:
                used_now = used
            if check and used > self.state.total_capacity_size:
                raise _abort(self.tx, self.dep, E_STORAGE_EXCEEDED, self.fn, "storage exceeded")
        self.set(
            future_accounting=dataclasses.replace(ring, ring_buffer=entries),
            used_capacity_size=used_now,
        )

    def pay_storage(self, size: int, start: int, end: int, payment: LiveObject) -> None:
        due = self.state.storage_price_per_unit_size * storage_units(size)
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        for offset in range(start, end):
            _withdraw(self.tx, self.dep, payment, due, self.fn)
            index = (ring.current_index + offset) % ring.length
            entry = entries[index]
            entries[index] = dataclasses.replace(
                entry, rewards_to_distribute=entry.rewards_to_distribute + due
            )
        self.set(future_accounting=dataclasses.replace(ring, ring_buffer=entries))

    def reward_now(self, amount: int) -> None:
        ring = self.state.future_accounting
        entries = list(ring.ring_buffer)
        entry = entries[ring.current_index]
        entries[ring.current_index] = dataclasses.replace(
            entry, rewards_to_distribute=entry.rewards_to_distribute + amount
        )
        self.set(future_accounting=dataclasses.replace(ring, ring_buffer=entries))


def _withdraw(tx: Tx, dep: Deployment, coin: LiveObject, amount: int, fn: str) -> None:
    if coin.value.balance < amount:
        raise _abort(
            tx,
            dep,
            E_BALANCE_NOT_ENOUGH,
            "split",
            f"{fn}: the coin holds {coin.value.balance}, {amount} is due",
        )
    coin.value = mt.Coin(coin.id, coin.value.balance - amount)
    coin.touched = True


def _new_coin(tx: Tx, type_: str, amount: int) -> LiveObject:
    obj = tx.create(type_, None)
    obj.value = mt.Coin(obj.id, amount)
    return obj


def _new_storage(tx: Tx, dep: Deployment, start: int, end: int, size: int) -> LiveObject:
    if not start < end:
        raise _abort(tx, dep, E_INVALID_EPOCH_RANGE, "create_storage", "empty epoch range")
    obj = tx.create(dep.t("storage_resource", "Storage"), None)
    obj.value = mt.Storage(obj.id, start, end, size)
    return obj


def _metadata_field(tx: Tx, dep: Deployment, blob: LiveObject) -> LiveObject | None:
    obj = tx.load(mt.metadata_field_id(blob.id))
    if obj is None or obj.state != "live":
        return None
    return obj


def _put_metadata(tx: Tx, dep: Deployment, blob: LiveObject, pairs: dict[str, str]) -> None:
    existing = _metadata_field(tx, dep, blob)
    value = mt.BlobAttributes.from_dict(pairs)
    if existing is not None:
        existing.value = value
        existing.touched = True
        return
    field_id = mt.metadata_field_id(blob.id)
    obj = tx.objs.get(field_id)
    if obj is not None:  # removed earlier in this transaction: revive it
        obj.state, obj.value, obj.touched = "live", value, True
        return
    obj = tx.create(dep.metadata_field_type, value, object_id=field_id)
    obj.owner_kind, obj.owner = OWNER_OBJECT, blob.id
    obj.df = ("vector<u8>", mt.METADATA_FIELD_NAME, dep.t("metadata", "Metadata"))


def _unwrap(tx: Tx, type_: str, value: mt.MoveStruct, object_id: str) -> LiveObject:
    obj = tx.create(type_, value, object_id=object_id)
    obj.unwrapped = True
    return obj


def build_functions(dep: Deployment) -> dict[tuple[str, str, str], MoveFunction]:
    """The dispatch table: (package, module, function) -> implementation."""
    W, X, S = dep.walrus_pkg, dep.exchange_pkg, SUI_FRAMEWORK
    system_t, blob_t = dep.t("system", "System"), dep.t("blob", "Blob")
    storage_t = dep.t("storage_resource", "Storage")
    wal_coin, sui_coin = dep.wal_coin, dep.sui_coin
    table: dict[tuple[str, str, str], MoveFunction] = {}

    storage_returns = {"reserve_space", "reserve_space_for_epochs", "delete_blob"}
    storage_returns |= {"split_by_epoch", "split_by_size"}
    returns: dict[str, list[str]] = {
        **{n: [storage_t] for n in storage_returns},
        "register_blob": [blob_t],
        "take_metadata": ["Metadata"],
        "new": ["Metadata"],
        "remove_metadata_pair": ["string", "string"],
        "remove": ["string", "string"],
        "remove_if_exists": ["option<string>"],
        "add_or_replace_metadata": ["option<Metadata>"],
        "remove_metadata_pair_if_exists": ["option<string>"],
        "exchange_all_for_wal": [wal_coin],
        "exchange_for_wal": [wal_coin],
        "split": [coin_type("T")],
        "zero": [coin_type("T")],
        "value": ["u64"],
    }

    def fn(
        pkg: str, module: str, name: str, params: list[Param], type_params: int = 0
    ) -> Callable[[Impl], Impl]:
        def register(impl: Impl) -> Impl:
            table[(pkg, module, name)] = MoveFunction(
                params, impl, type_params, returns.get(name, [])
            )
            return impl

        return register

    def mut(t: str) -> Param:
        return Param("mut", t)

    def ref(t: str) -> Param:
        return Param("ref", t)

    def val(t: str) -> Param:
        return Param("val", t)

    def pure(t: str) -> Param:
        return Param("pure", t)

    # -- system ------------------------------------------------------------------------------

    def reserve(
        tx: Tx, system: LiveObject, amount: int, start: int, end: int, pay: LiveObject, name: str
    ) -> LiveObject:
        view = SystemView(tx, dep, system, name)
        current = view.epoch
        start = max(start, current)
        if not end > start:
            raise _abort(tx, dep, E_INVALID_EPOCHS_AHEAD, name, "empty epoch range")
        start_offset, end_offset = start - current, end - current
        if end_offset > view.state.future_accounting.length:
            raise _abort(tx, dep, E_INVALID_EPOCHS_AHEAD, name, "beyond max_epochs_ahead")
        view.pay_storage(amount, start_offset, end_offset, pay)
        if amount == 0:
            raise _abort(tx, dep, E_INVALID_RESOURCE_SIZE, name, "zero storage")
        view.add_used_capacity(start_offset, end_offset, amount, check=True)
        return _new_storage(tx, dep, start, end, amount)

    @fn(W, "system", "reserve_space", [mut(system_t), pure("u64"), pure("u32"), mut(wal_coin)])
    def reserve_space(
        tx: Tx, system: LiveObject, amount: int, epochs_ahead: int, pay: LiveObject
    ) -> list[Any]:
        view = SystemView(tx, dep, system, "reserve_space")
        if epochs_ahead == 0 or epochs_ahead > view.state.future_accounting.length:
            raise _abort(
                tx,
                dep,
                E_INVALID_EPOCHS_AHEAD,
                "reserve_space",
                f"epochs_ahead {epochs_ahead} not in 1..{view.state.future_accounting.length}",
            )
        start = view.epoch
        return [reserve(tx, system, amount, start, start + epochs_ahead, pay, "reserve_space")]

    @fn(
        W,
        "system",
        "reserve_space_for_epochs",
        [mut(system_t), pure("u64"), pure("u32"), pure("u32"), mut(wal_coin)],
    )
    def reserve_space_for_epochs(
        tx: Tx, system: LiveObject, amount: int, start: int, end: int, pay: LiveObject
    ) -> list[Any]:
        return [reserve(tx, system, amount, start, end, pay, "reserve_space_for_epochs")]

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
            raise _abort(
                tx,
                dep,
                E_RESOURCE_BOUNDS,
                "new",
                f"storage [{res.start_epoch}, {res.end_epoch}) does not cover epoch {epoch}",
            )
        if encoding_type != RED_STUFF_RAPTOR:
            raise _abort(tx, dep, E_INVALID_ENCODING_TYPE, "encoded_blob_length", "encoding")
        encoded = encoded_blob_length(size, n_shards)
        if encoded is None:
            raise ExecFailure(12, "arithmetic error: the blob is too large for its symbol size")
        if encoded > res.storage_size:
            raise _abort(
                tx,
                dep,
                E_RESOURCE_SIZE,
                "new",
                f"encoded size {encoded} exceeds the storage size {res.storage_size}",
            )
        if derive_blob_id(root_hash, encoding_type, size) != blob_id:
            raise _abort(
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
        write = view.state.write_price_per_unit_size * storage_units(encoded)
        _withdraw(tx, dep, pay, write, "register_blob")
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
        committee = view.state.committee
        n_members = len(committee.members)
        max_len = (n_members + 7) // 8
        if len(bitmap) > max_len:
            raise _abort(tx, dep, E_INVALID_BITMAP, "verify_certificate_and_weight", "bitmap")
        signers: list[bytes] = []
        weight = 0
        for index in range(max_len * 8):
            byte = bitmap[index // 8] if index // 8 < len(bitmap) else 0
            is_signer = (byte >> (index % 8)) & 1 == 1
            if index >= n_members:
                if is_signer:
                    raise _abort(
                        tx, dep, E_INVALID_BITMAP, "verify_certificate_and_weight", "bitmap"
                    )
                continue
            if is_signer:
                signers.append(committee.members[index].public_key)
                weight += committee.members[index].weight
        if not 3 * weight >= 2 * committee.n_shards + 1:
            raise _abort(
                tx,
                dep,
                E_NOT_ENOUGH_STAKE,
                "verify_certificate_and_weight",
                f"signers hold {weight} of {committee.n_shards} shards: no quorum",
            )
        if not signers or not aggregate_verify(signature, signers, msg):
            raise _abort(
                tx, dep, E_SIG_VERIFICATION, "verify_certificate_and_weight", "bad signature"
            )
        if len(msg) < 7:
            raise _abort(tx, dep, E_INVALID_MSG_TYPE, "new_certified_message", "short message")
        intent_type, intent_version, intent_app = msg[0], msg[1], msg[2]
        cert_epoch = int.from_bytes(msg[3:7], "little")
        if intent_version != INTENT_VERSION:
            raise _abort(tx, dep, E_INCORRECT_INTENT_VERSION, "new_certified_message", "intent")
        if intent_app != APP_ID:
            raise _abort(tx, dep, E_INCORRECT_APP_ID, "new_certified_message", "app id")
        if cert_epoch != committee.epoch:
            raise _abort(
                tx,
                dep,
                E_INCORRECT_EPOCH,
                "new_certified_message",
                f"message for epoch {cert_epoch}, the committee is in epoch {committee.epoch}",
            )
        if cert_epoch != view.epoch:
            raise _abort(tx, dep, E_INVALID_ID_EPOCH, "certify_blob", "epoch")
        if intent_type != BLOB_CERT_MSG_TYPE:
            raise _abort(tx, dep, E_INVALID_MSG_TYPE, "certify_blob_message", "not a blob cert")
        body = msg[7:]
        if len(body) < 33:
            raise _abort(tx, dep, E_MSG_INVALID_PERSISTENCE, "peel_blob_persistence_type", "short")
        msg_blob_id = int.from_bytes(body[:32], "little")
        persistence = body[32]
        if persistence not in (0, 1) or (persistence == 1 and len(body) < 65):
            raise _abort(
                tx, dep, E_MSG_INVALID_PERSISTENCE, "peel_blob_persistence_type", "persistence"
            )
        value: mt.Blob = blob.value
        if value.blob_id != msg_blob_id:
            raise _abort(tx, dep, E_INVALID_BLOB_ID, "certify_with_certified_msg", "blob id")
        if value.certified_epoch is not None:
            raise _abort(
                tx, dep, E_ALREADY_CERTIFIED, "certify_with_certified_msg", "already certified"
            )
        if not view.epoch < value.storage.end_epoch:
            raise _abort(tx, dep, E_RESOURCE_BOUNDS, "certify_with_certified_msg", "expired")
        if value.deletable != (persistence == 1):
            raise _abort(
                tx,
                dep,
                E_INVALID_BLOB_PERSISTENCE_TYPE,
                "certify_with_certified_msg",
                "persistence type",
            )
        if value.deletable and "0x" + body[33:65].hex() != blob.id:
            raise _abort(tx, dep, E_INVALID_BLOB_OBJECT, "certify_with_certified_msg", "object")
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

    def _delete_metadata(tx: Tx, blob: LiveObject) -> None:
        field = _metadata_field(tx, dep, blob)
        if field is not None:
            tx.delete(field)

    @fn(W, "system", "delete_blob", [ref(system_t), val(blob_t)])
    def delete_blob(tx: Tx, system: LiveObject, blob: LiveObject) -> list[Any]:
        view = SystemView(tx, dep, system, "delete_blob")
        _delete_metadata(tx, blob)
        value: mt.Blob = blob.value
        if not value.deletable:
            raise _abort(tx, dep, E_BLOB_NOT_DELETABLE, "delete", "the blob is permanent")
        if not value.storage.end_epoch > view.epoch:
            raise _abort(tx, dep, E_RESOURCE_BOUNDS, "delete", "the blob has expired")
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
        return [_unwrap(tx, storage_t, value.storage, value.storage.id)]

    def _assert_certified_not_expired(tx: Tx, value: mt.Blob, epoch: int, name: str) -> None:
        if value.certified_epoch is None:
            raise _abort(tx, dep, E_NOT_CERTIFIED, "assert_certified_not_expired", name)
        if not epoch < value.storage.end_epoch:
            raise _abort(
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
            raise _abort(
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
            raise _abort(tx, dep, E_RESOURCE_BOUNDS, "extend_with_resource", "not longer")
        fused = _fuse_periods(tx, value.storage, ext)
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

    # -- blob ------------------------------------------------------------------------------

    @fn(W, "blob", "burn", [val(blob_t)])
    def burn(tx: Tx, blob: LiveObject) -> list[Any]:
        _delete_metadata(tx, blob)
        tx.delete(blob)
        return []

    @fn(W, "blob", "add_metadata", [mut(blob_t), val("Metadata")])
    def add_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        if _metadata_field(tx, dep, blob) is not None:
            raise _abort(tx, dep, E_DUPLICATE_METADATA, "add_metadata", "metadata exists")
        _put_metadata(tx, dep, blob, dict(metadata))
        return []

    @fn(W, "blob", "take_metadata", [mut(blob_t)])
    def take_metadata(tx: Tx, blob: LiveObject) -> list[Any]:
        field = _metadata_field(tx, dep, blob)
        if field is None:
            raise _abort(tx, dep, E_MISSING_METADATA, "take_metadata", "no metadata")
        tx.delete(field)
        return [field.value.as_dict()]

    @fn(W, "blob", "insert_or_update_metadata_pair", [mut(blob_t), pure("string"), pure("string")])
    def insert_or_update_metadata_pair(tx: Tx, blob: LiveObject, key: str, value: str) -> list[Any]:
        field = _metadata_field(tx, dep, blob)
        pairs = field.value.as_dict() if field is not None else {}
        pairs[key] = value
        _put_metadata(tx, dep, blob, pairs)
        return []

    @fn(W, "blob", "remove_metadata_pair", [mut(blob_t), pure("string")])
    def remove_metadata_pair(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        field = _metadata_field(tx, dep, blob)
        if field is None:
            raise _abort(tx, dep, E_MISSING_METADATA, "metadata", "no metadata")
        pairs = field.value.as_dict()
        if key not in pairs:
            raise _abort(tx, dep, E_VEC_MAP_KEY_MISSING, "remove", f"no attribute {key!r}")
        removed = pairs.pop(key)
        _put_metadata(tx, dep, blob, pairs)
        return [key, removed]

    @fn(W, "blob", "remove_metadata_pair_if_exists", [mut(blob_t), pure("string")])
    def remove_metadata_pair_if_exists(tx: Tx, blob: LiveObject, key: str) -> list[Any]:
        field = _metadata_field(tx, dep, blob)
        if field is None:
            raise _abort(tx, dep, E_MISSING_METADATA, "metadata", "no metadata")
        pairs = field.value.as_dict()
        removed = pairs.pop(key, None)
        _put_metadata(tx, dep, blob, pairs)
        return [removed]

    # -- metadata (a value without `key`, carried between commands) -------------------------

    @fn(W, "metadata", "new", [])
    def metadata_new(tx: Tx) -> list[Any]:
        return [{}]

    @fn(W, "metadata", "insert_or_update", [mut("Metadata"), pure("string"), pure("string")])
    def metadata_insert(tx: Tx, metadata: dict[str, str], key: str, value: str) -> list[Any]:
        metadata[key] = value
        return []

    @fn(W, "metadata", "remove", [mut("Metadata"), pure("string")])
    def metadata_remove(tx: Tx, metadata: dict[str, str], key: str) -> list[Any]:
        if key not in metadata:
            raise _abort(tx, dep, E_VEC_MAP_KEY_MISSING, "remove", f"no attribute {key!r}")
        return [key, metadata.pop(key)]

    @fn(W, "metadata", "remove_if_exists", [mut("Metadata"), pure("string")])
    def metadata_remove_if_exists(tx: Tx, metadata: dict[str, str], key: str) -> list[Any]:
        return [metadata.pop(key, None)]

    @fn(W, "blob", "add_or_replace_metadata", [mut(blob_t), val("Metadata")])
    def add_or_replace_metadata(tx: Tx, blob: LiveObject, metadata: dict[str, str]) -> list[Any]:
        field = _metadata_field(tx, dep, blob)
        previous = field.value.as_dict() if field is not None else None
        _put_metadata(tx, dep, blob, dict(metadata))
        return [previous]

    # -- storage_resource --------------------------------------------------------------------

    def _fuse_periods(tx: Tx, first: mt.Storage, second: mt.Storage) -> mt.Storage:
        if first.storage_size != second.storage_size:
            raise _abort(tx, dep, E_INCOMPATIBLE_AMOUNT, "fuse_periods", "sizes differ")
        if first.end_epoch == second.start_epoch:
            return dataclasses.replace(first, end_epoch=second.end_epoch)
        if first.start_epoch != second.end_epoch:
            raise _abort(tx, dep, E_INCOMPATIBLE_EPOCHS, "fuse_periods", "not adjacent")
        return dataclasses.replace(first, start_epoch=second.start_epoch)

    @fn(W, "storage_resource", "split_by_epoch", [mut(storage_t), pure("u32")])
    def split_by_epoch(tx: Tx, storage: LiveObject, split_epoch: int) -> list[Any]:
        res: mt.Storage = storage.value
        if not res.start_epoch < split_epoch < res.end_epoch:
            raise _abort(tx, dep, E_INVALID_EPOCH, "split_by_epoch", "split epoch")
        storage.value = dataclasses.replace(res, end_epoch=split_epoch)
        new = tx.create(storage_t, None)
        new.value = mt.Storage(new.id, split_epoch, res.end_epoch, res.storage_size)
        return [new]

    @fn(W, "storage_resource", "split_by_size", [mut(storage_t), pure("u64")])
    def split_by_size(tx: Tx, storage: LiveObject, split_size: int) -> list[Any]:
        res: mt.Storage = storage.value
        if not res.storage_size >= split_size:
            raise _abort(tx, dep, E_INCOMPATIBLE_AMOUNT, "split_by_size", "split size")
        storage.value = dataclasses.replace(res, storage_size=split_size)
        new = tx.create(storage_t, None)
        new.value = mt.Storage(
            new.id, res.start_epoch, res.end_epoch, res.storage_size - split_size
        )
        return [new]

    @fn(W, "storage_resource", "fuse_periods", [mut(storage_t), val(storage_t)])
    def fuse_periods(tx: Tx, first: LiveObject, second: LiveObject) -> list[Any]:
        tx.delete(second)
        first.value = _fuse_periods(tx, first.value, second.value)
        return []

    @fn(W, "storage_resource", "fuse_amount", [mut(storage_t), val(storage_t)])
    def fuse_amount(tx: Tx, first: LiveObject, second: LiveObject) -> list[Any]:
        tx.delete(second)
        a, b = first.value, second.value
        if not (a.start_epoch == b.start_epoch and a.end_epoch == b.end_epoch):
            raise _abort(tx, dep, E_INCOMPATIBLE_EPOCHS, "fuse_amount", "periods differ")
        first.value = dataclasses.replace(a, storage_size=a.storage_size + b.storage_size)
        return []

    @fn(W, "storage_resource", "destroy", [val(storage_t)])
    def destroy(tx: Tx, storage: LiveObject) -> list[Any]:
        tx.delete(storage)
        return []

    # -- wal_exchange ------------------------------------------------------------------------

    def _exchange(tx: Tx, exchange: LiveObject, sui_amount: int) -> LiveObject:
        ex: mt.Exchange = exchange.value
        wal_amount = sui_amount * ex.rate.wal // ex.rate.sui
        if ex.wal < wal_amount:
            raise _abort(
                tx,
                dep,
                E_EXCHANGE_INSUFFICIENT_FUNDS,
                "exchange_all_for_wal",
                f"the exchange holds {ex.wal} FROST, {wal_amount} asked",
            )
        exchange.value = dataclasses.replace(ex, wal=ex.wal - wal_amount, sui=ex.sui + sui_amount)
        return _new_coin(tx, wal_coin, wal_amount)

    @fn(X, "wal_exchange", "exchange_all_for_wal", [mut(dep.exchange_type), val(sui_coin)])
    def exchange_all_for_wal(tx: Tx, exchange: LiveObject, sui: LiveObject) -> list[Any]:
        tx.delete(sui)
        return [_exchange(tx, exchange, sui.value.balance)]

    @fn(
        X,
        "wal_exchange",
        "exchange_for_wal",
        [mut(dep.exchange_type), mut(sui_coin), pure("u64")],
    )
    def exchange_for_wal(tx: Tx, exchange: LiveObject, sui: LiveObject, amount: int) -> list[Any]:
        if sui.value.balance < amount:
            raise _abort(
                tx, dep, E_EXCHANGE_INSUFFICIENT_INPUT, "exchange_for_wal", "SUI coin too small"
            )
        sui.value = mt.Coin(sui.id, sui.value.balance - amount)
        return [_exchange(tx, exchange, amount)]

    # -- 0x2::coin -----------------------------------------------------------------------------

    generic_coin = coin_type("T")

    @fn(S, "coin", "split", [mut(generic_coin), pure("u64")], type_params=1)
    def coin_split(tx: Tx, type_arg: str, coin: LiveObject, amount: int) -> list[Any]:
        _withdraw(tx, dep, coin, amount, "coin::split")
        return [_new_coin(tx, coin.type, amount)]

    @fn(S, "coin", "join", [mut(generic_coin), val(generic_coin)], type_params=1)
    def coin_join(tx: Tx, type_arg: str, coin: LiveObject, other: LiveObject) -> list[Any]:
        coin.value = mt.Coin(coin.id, coin.value.balance + other.value.balance)
        tx.delete(other)
        return []

    @fn(S, "coin", "value", [ref(generic_coin)], type_params=1)
    def coin_value(tx: Tx, type_arg: str, coin: LiveObject) -> list[Any]:
        return [coin.value.balance]

    @fn(S, "coin", "zero", [], type_params=1)
    def coin_zero(tx: Tx, type_arg: str) -> list[Any]:
        return [_new_coin(tx, coin_type(type_arg), 0)]

    @fn(S, "coin", "destroy_zero", [val(generic_coin)], type_params=1)
    def coin_destroy_zero(tx: Tx, type_arg: str, coin: LiveObject) -> list[Any]:
        if coin.value.balance != 0:
            raise _abort(tx, dep, E_BALANCE_NON_ZERO, "destroy_zero", "the coin is not empty")
        tx.delete(coin)
        return []

    return table
