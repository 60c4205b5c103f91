"""Replies as `sui.rpc.v2` messages (pysui's bundled protobuf classes): executed
transactions, their effects and events, objects, owners and dynamic fields. The services
apply read masks to these; here every field is filled."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain import move_types as mt
from chain.localnet.errors import ExecFailure
from chain.localnet.executor import Outcome
from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_IMMUTABLE,
    OWNER_OBJECT,
    OWNER_SHARED,
    StoredObject,
)
from chain.localnet.moves.deployment import Deployment
from chain.localnet.naming import SUI_FRAMEWORK, coin_inner
from chain.localnet.resolve import transaction_proto

#: the name type of a dynamic object field, around the name's own type (`...Wrapper<K>`)
_WRAPPER = f"{SUI_FRAMEWORK}::dynamic_object_field::Wrapper<"


def system_transaction(
    dep: Deployment, digest: str, epoch: int, events: list[tuple[str, bytes]], at_ms: int
) -> pb.ExecutedTransaction:
    """A devnet system transaction (epoch change, attestation, invalidation): success, no
    objects, the Walrus package's `events` as given (name, BCS).

    Args:
        at_ms: its timestamp, in ms since 1970.
    """
    return pb.ExecutedTransaction(
        digest=digest,
        effects=pb.TransactionEffects(
            status=pb.ExecutionStatus(success=True), epoch=epoch, transaction_digest=digest
        ),
        events=pb.TransactionEvents(
            events=[
                pb.Event(
                    package_id=dep.walrus_pkg,
                    module="events",
                    sender="0x" + "0" * 64,
                    event_type=f"{dep.walrus_pkg}::events::{name}",
                    contents=pb.Bcs(name=f"{dep.walrus_pkg}::events::{name}", value=bcs),
                    transaction_digest=digest,
                    event_index=i,
                )
                for i, (name, bcs) in enumerate(events)
            ]
        ),
        timestamp=datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC),
    )


def executed_transaction(
    tx_bytes: bytes, signatures: list[bytes], outcome: Outcome, epoch: int
) -> pb.ExecutedTransaction:
    """A transaction the executor ran (or simulated), as `sui.rpc.v2.ExecutedTransaction`:
    effects with every changed object, events, the output objects."""
    status = pb.ExecutionStatus(success=outcome.success)
    if outcome.error is not None:
        status.error = error_proto(outcome.error)
    changed: list[pb.ChangedObject] = []
    gas_object: pb.ChangedObject | None = None
    outputs: list[pb.Object] = []
    for obj, before, after, op in outcome.changed:
        proto = pb.ChangedObject(
            object_id=obj.id,
            input_state=pb.ChangedObjectInputObjectState.EXISTS
            if before is not None
            else pb.ChangedObjectInputObjectState.DOES_NOT_EXIST,
            output_state=pb.ChangedObjectOutputObjectState.OBJECT_WRITE
            if after is not None
            else pb.ChangedObjectOutputObjectState.DOES_NOT_EXIST,
            id_operation={
                "created": pb.ChangedObjectIdOperation.CREATED,
                "deleted": pb.ChangedObjectIdOperation.DELETED,
                "none": pb.ChangedObjectIdOperation.NONE,
            }[op],
            object_type=obj.type,
        )
        if before is not None:
            proto.input_version = before.version
            proto.input_digest = before.digest
            proto.input_owner = owner_proto(before)
        if after is not None:
            proto.output_version = after.version
            proto.output_digest = after.digest
            proto.output_owner = owner_proto(after)
            outputs.append(object_proto(after))
        changed.append(proto)
        if obj.id == outcome.gas_id:
            gas_object = proto
    digest = outcome.digest
    events = [
        pb.Event(
            package_id=package,
            module=module,
            sender=outcome.sender,
            event_type=f"{package}::{module}::{type(event).__name__}",
            contents=pb.Bcs(
                name=f"{package}::{module}::{type(event).__name__}", value=event.to_bcs()
            ),
            transaction_digest=digest,
            event_index=i,
        )
        for i, (package, module, event) in enumerate(outcome.events)
    ]
    return pb.ExecutedTransaction(
        digest=digest,
        transaction=transaction_proto(tx_bytes),
        balance_changes=balance_changes(outcome),
        signatures=[
            pb.UserSignature(bcs=pb.Bcs(name="UserSignature", value=s)) for s in signatures
        ],
        effects=pb.TransactionEffects(
            status=status,
            epoch=epoch,
            gas_used=pb.GasCostSummary(
                computation_cost=outcome.computation_cost,
                storage_cost=outcome.storage_cost,
                storage_rebate=outcome.storage_rebate,
                non_refundable_storage_fee=outcome.non_refundable_storage_fee,
            ),
            transaction_digest=digest,
            gas_object=gas_object,
            changed_objects=changed,
            lamport_version=outcome.lamport,
        ),
        events=pb.TransactionEvents(events=events),
        objects=pb.ObjectSet(objects=outputs),
        timestamp=datetime.datetime.now(datetime.UTC),
    )


def balance_changes(outcome: Outcome) -> list[pb.BalanceChange]:
    """The net change of each address's balance of each coin type, as a full node reports it
    (sui-rpc-api `BalanceChange`: address, coin type, the amount as a signed decimal): the
    coins it owned before the transaction counted negative, those it owns after positive, the
    gas included. Unchanged balances are left out. An upload relay checks its tip with these
    (walrus `crates/walrus-upload-relay/src/tip/check.rs`)."""
    net: dict[tuple[str, str], int] = {}
    for _, before, after, _ in outcome.changed:
        for obj, sign in ((before, -1), (after, 1)):
            if obj is None or obj.owner_kind != OWNER_ADDRESS or obj.owner is None:
                continue
            coin = coin_inner(obj.type)
            if coin is not None:
                key = (obj.owner, coin)
                net[key] = net.get(key, 0) + sign * int.from_bytes(obj.contents[32:40], "little")
    return [
        pb.BalanceChange(address=address, coin_type=coin, amount=str(amount))
        for (address, coin), amount in sorted(net.items())
        if amount != 0
    ]


def error_proto(error: ExecFailure) -> pb.ExecutionError:
    proto = pb.ExecutionError(
        description=error.description,
        kind=pb.ExecutionErrorExecutionErrorKind(error.kind),
    )
    if error.command is not None:
        proto.command = error.command
    if error.abort_code is not None:
        proto.abort = pb.MoveAbort(
            abort_code=error.abort_code,
            location=pb.MoveLocation(
                package=error.package, module=error.module, function_name=error.function
            ),
        )
    return proto


def owner_proto(obj: StoredObject) -> pb.Owner:
    if obj.owner_kind == OWNER_SHARED:
        return pb.Owner(kind=pb.OwnerOwnerKind.SHARED, version=obj.initial_shared_version)
    if obj.owner_kind == OWNER_IMMUTABLE:
        return pb.Owner(kind=pb.OwnerOwnerKind.IMMUTABLE)
    kind = (
        pb.OwnerOwnerKind.ADDRESS if obj.owner_kind == OWNER_ADDRESS else pb.OwnerOwnerKind.OBJECT
    )
    return pb.Owner(kind=kind, address=obj.owner)


def object_proto(obj: StoredObject) -> pb.Object:
    proto = pb.Object(
        object_id=obj.id,
        version=obj.version,
        digest=obj.digest,
        owner=owner_proto(obj),
        object_type=obj.type,
        has_public_transfer=_has_store(obj),
        contents=pb.Bcs(name=obj.type, value=obj.contents),
        previous_transaction=obj.previous_tx,
    )
    if coin_inner(obj.type) is not None:
        proto.balance = int.from_bytes(obj.contents[32:40], "little")
    return proto


def _has_store(obj: StoredObject) -> bool:
    """`has_public_transfer`: the object's type has `store`. The stand-in's objects that an
    address owns all do (Coin, Blob, Storage, StoragePool, StakedWal); of those an object owns,
    a dynamic field (`Field`, `key` only) does not, the child of a dynamic object field (a
    PooledBlob: `key + store`, as `dynamic_object_field::add` requires) does; shared and
    immutable ones (System, Staking, Exchange) do not."""
    if obj.owner_kind == OWNER_ADDRESS:
        return True
    return obj.owner_kind == OWNER_OBJECT and obj.df_name_type is None


def dynamic_field_proto(
    obj: StoredObject, child_of: Callable[[str], StoredObject | None] | None = None
) -> pb.DynamicField:
    """A `Field<K, V>` object as a full node lists it (sui `crates/sui-rpc-api/src/grpc/v2/
    state_service/list_dynamic_fields.rs`, `sui-types` `dynamic_field/visitor.rs`).

    A dynamic *object* field, `Field<0x2::dynamic_object_field::Wrapper<K>, 0x2::object::ID>`,
    is kind OBJECT: its name is the unwrapped `K` (the BCS is the same), its value the `ID`,
    `child_id` that ID, and `value_type` and `child_object` those of the child object, looked
    up with `child_of`.
    """
    assert obj.df_name is not None and obj.df_name_type is not None
    value = mt.field_value(obj.contents, obj.df_name)
    if not obj.df_name_type.startswith(_WRAPPER):
        return pb.DynamicField(
            kind=pb.DynamicFieldDynamicFieldKind.FIELD,
            parent=obj.owner,
            field_id=obj.id,
            name=pb.Bcs(name=obj.df_name_type, value=obj.df_name),
            value=pb.Bcs(name=obj.df_value_type, value=value),
            value_type=obj.df_value_type,
            field_object=object_proto(obj),
        )
    child_id = "0x" + value.hex()
    child = child_of(child_id) if child_of is not None else None
    proto = pb.DynamicField(
        kind=pb.DynamicFieldDynamicFieldKind.OBJECT,
        parent=obj.owner,
        field_id=obj.id,
        name=pb.Bcs(name=obj.df_name_type[len(_WRAPPER) : -1], value=obj.df_name),
        value=pb.Bcs(name=obj.df_value_type, value=value),
        field_object=object_proto(obj),
        child_id=child_id,
    )
    if child is not None:
        proto.value_type = child.type
        proto.child_object = object_proto(child)
    return proto
