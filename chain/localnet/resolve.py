"""Transaction resolution for SimulateTransaction, as a Sui full node resolves, and the
rendering of a transaction's BCS as `sui.rpc.v2.Transaction` fields.

Clients build transactions with unresolved parts and let the node finish them: the TypeScript
SDK's default build (`resolveTransactionPlugin` in `@mysten/sui` `grpc/core.ts`) sends every
transaction field by field with object inputs given by ID alone, pure arguments as BCS bytes
without types, no gas payment and no budget, and `do_gas_selection`. The rules here are the
full node's (sui `crates/sui-rpc-api/src/grpc/v2/transaction_execution_service/simulate/
resolve/mod.rs`, `resolve_transaction` and what it calls):

* the sender must parse; the transaction kind must be programmable;
* every package a MoveCall names must exist (NOT_FOUND otherwise); its function must too, when
  an input's use needs its parameter types (INVALID_ARGUMENT "unable to find function");
* gas: given payment objects must be gas coins (`Coin<SUI>`, matching version and digest when
  given); owner, price (default: the reference gas price) and budget (default: the payment's
  balance, capped at the protocol's `max_tx_gas`, or that maximum without payment) as given;
  without a gas payment message the owner is the sender;
* inputs: pure bytes stay pure; an object reference by ID is read from the ledger: immutable or
  address-owned objects become owned references (a given version or digest must match);
  shared objects get their initial shared version and are mutable when a use needs it (a
  `&mut` or by-value Move parameter, SplitCoins, MergeCoins, MakeMoveVec), whatever the client
  said; an object owned by another object is refused;
* an unknown or contradictory combination of input fields is INVALID_ARGUMENT ("invalid
  unresolved input argument").

Stand-in limits: `literal` inputs (JSON values typed from the callee's signature), Receiving
and funds-withdrawal inputs, Publish and Upgrade commands, and expirations other than None
and Epoch are refused with INVALID_ARGUMENT naming the devnet (the executor does not run
them); a MoveCall's package exists when the stand-in publishes it (`chain.localnet.packages`).
"""

from __future__ import annotations

from typing import Any

import base58
import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError
from pysui.sui.sui_bcs import bcs

from chain.localnet.digests import tx_digest
from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_IMMUTABLE,
    OWNER_OBJECT,
    OWNER_SHARED,
    Ledger,
    StoredObject,
)
from chain.localnet.naming import SUI_TYPE, coin_type, normalize_address
from chain.localnet.packages import Packages

#: Sui's protocol maximum gas budget (`max_tx_gas`, 50 SUI) in MIST.
MAX_TX_GAS = 50_000_000_000


def _invalid(message: str) -> GRPCError:
    return GRPCError(grpclib.const.Status.INVALID_ARGUMENT, message)


def _address(value: str | None, what: str) -> str:
    try:
        return normalize_address(value or "")
    except ValueError as exc:
        raise _invalid(f"invalid {what}: {exc}") from None


class Resolver:
    """Resolves unresolved `sui.rpc.v2.Transaction` messages against one ledger."""

    def __init__(self, ledger: Ledger, packages: Packages) -> None:
        self.ledger = ledger
        self.packages = packages

    def _object(self, object_id: str) -> StoredObject:
        found = self.ledger.get(object_id)
        if found is None:
            raise GRPCError(grpclib.const.Status.NOT_FOUND, f"Object {object_id} not found")
        return found

    def resolve(self, tx: pb.Transaction, reference_gas_price: int) -> bytes:
        """The transaction as BCS `TransactionData`, every input resolved (the rules are in
        the module docstring).

        Args:
            reference_gas_price: the gas price when the client gave none.

        Raises:
            GRPCError: NOT_FOUND for a package or input object that does not exist,
                INVALID_ARGUMENT for anything else the full node refuses (or the stand-in
                does not run).
        """
        sender = _address(tx.sender, "sender")
        kind = tx.kind
        if kind is None or kind.programmable_transaction is None:
            raise _invalid("transaction.kind.programmable_transaction is missing")
        ptb = kind.programmable_transaction
        commands = [self._command(c) for c in ptb.commands]
        for call in (c.value for c in commands if c.enum_name == "MoveCall"):
            package = "0x" + bytes(call.Package.Address).hex()
            if package not in self.packages.modules:
                raise GRPCError(grpclib.const.Status.NOT_FOUND, f"Object {package} not found")
        inputs = [self._input(item, i, commands) for i, item in enumerate(ptb.inputs)]
        gas = self._gas(tx.gas_payment, sender, reference_gas_price)
        data = bcs.TransactionData(
            "V1",
            bcs.TransactionDataV1(
                bcs.TransactionKind(
                    "ProgrammableTransaction", bcs.ProgrammableTransaction(inputs, commands)
                ),
                bcs.Address.from_str(sender),
                gas,
                self._expiration(tx.expiration),
            ),
        )
        return bytes(data.serialize())

    # -- gas ------------------------------------------------------------------------------

    def _gas(self, payment: pb.GasPayment | None, sender: str, rgp: int) -> Any:
        if payment is None:
            return bcs.GasData([], bcs.Address.from_str(sender), rgp, MAX_TX_GAS)
        refs, total = [], 0
        for item in payment.objects:
            stored = self._object(_address(item.object_id, "object_id"))
            if stored.type != coin_type(SUI_TYPE):
                raise _invalid(f"object {stored.id} is not a valid gas coin")
            refs.append(self._reference(stored, item.version, item.digest))
            total += int.from_bytes(stored.contents[32:40], "little")
        owner = _address(payment.owner, "owner")
        budget = payment.budget
        if budget is None:
            budget = min(total, MAX_TX_GAS) if refs else MAX_TX_GAS
        price = payment.price if payment.price is not None else rgp
        return bcs.GasData(refs, bcs.Address.from_str(owner), price, budget)

    def _expiration(self, expiration: pb.TransactionExpiration | None) -> Any:
        kind = expiration.kind if expiration is not None else None
        if kind is None or kind == pb.TransactionExpirationTransactionExpirationKind.NONE:
            return bcs.TransactionExpiration("None", None)
        if kind == pb.TransactionExpirationTransactionExpirationKind.EPOCH:
            assert expiration is not None
            if expiration.epoch is None:
                raise _invalid("expiration: an Epoch expiration needs its epoch")
            return bcs.TransactionExpiration("Epoch", int(expiration.epoch))
        raise _invalid(f"expiration: {kind.name} is not supported on the devnet")

    # -- inputs ---------------------------------------------------------------------------

    @staticmethod
    def _reference(stored: StoredObject, version: int | None, digest: str | None) -> Any:
        if stored.owner_kind not in (OWNER_ADDRESS, OWNER_IMMUTABLE):
            raise _invalid(f"object {stored.id} is not Immutable or AddressOwned")
        if version is not None and version != stored.version:
            raise _invalid(
                f"provided version doesn't match, provided: {version} actual: {stored.version}"
            )
        if digest is not None and digest != stored.digest:
            raise _invalid(
                f"provided digest doesn't match, provided: {digest} actual: {stored.digest}"
            )
        return bcs.ObjectReference(
            bcs.Address.from_str(stored.id), stored.version, bcs.Digest.from_str(stored.digest)
        )

    def _input(self, item: pb.Input, index: int, commands: list[Any]) -> Any:
        kinds = pb.InputInputKind
        has_object = item.object_id is not None
        if item.literal is not None:
            if item.kind is None and item.pure is None and not has_object:
                raise _invalid(f"inputs[{index}]: literal inputs are not supported on the devnet")
            raise _invalid("invalid unresolved input argument")
        if item.pure is not None:
            plain = item.version is None and item.digest is None and item.mutable is None
            if item.kind in (None, kinds.PURE) and not has_object and plain:
                return bcs.CallArg("Pure", list(item.pure))
            raise _invalid("invalid unresolved input argument")
        if not has_object:
            raise _invalid("invalid unresolved input argument")
        if item.kind in (kinds.RECEIVING, kinds.FUNDS_WITHDRAWAL):
            raise _invalid(
                f"inputs[{index}]: {item.kind.name} inputs are not supported on the devnet"
            )
        stored = self._object(_address(item.object_id, "object_id"))
        if item.kind == kinds.IMMUTABLE_OR_OWNED:
            if item.mutable is not None:
                raise _invalid("invalid unresolved input argument")
            ref = self._reference(stored, item.version, item.digest)
            return bcs.CallArg("Object", bcs.ObjectArg("ImmOrOwnedObject", ref))
        if item.kind == kinds.SHARED:
            if item.digest is not None:
                raise _invalid("invalid unresolved input argument")
            return self._shared(stored, index, commands)
        if item.kind is not None:
            raise _invalid("invalid unresolved input argument")
        if stored.owner_kind in (OWNER_ADDRESS, OWNER_IMMUTABLE):
            ref = self._reference(stored, item.version, item.digest)
            return bcs.CallArg("Object", bcs.ObjectArg("ImmOrOwnedObject", ref))
        if stored.owner_kind == OWNER_OBJECT:
            raise _invalid(f"object {stored.id} is object owned and cannot be used as an input")
        return self._shared(stored, index, commands)

    def _shared(self, stored: StoredObject, index: int, commands: list[Any]) -> Any:
        if stored.owner_kind != OWNER_SHARED or stored.initial_shared_version is None:
            raise _invalid(f"object {stored.id} is not a shared or consensus object")
        mutable = any(self._mutable_use(c, p) for c, p in _uses(index, commands))
        shared = bcs.SharedObjectReference(
            bcs.Address.from_str(stored.id), stored.initial_shared_version, mutable
        )
        return bcs.CallArg("Object", bcs.ObjectArg("SharedObject", shared))

    def _mutable_use(self, command: Any, position: int | None) -> bool:
        name = command.enum_name
        if name in ("SplitCoin", "MergeCoins", "MakeMoveVec"):
            return True
        if name != "MoveCall" or position is None:
            return False
        call = command.value
        package = "0x" + bytes(call.Package.Address).hex()
        try:
            function = self.packages.function(package, str(call.Module), str(call.Function))
        except LookupError:
            raise _invalid(
                f"unable to find function {package}::{call.Module}::{call.Function}"
            ) from None
        if position >= len(function.parameters):
            raise _invalid("invalid input parameter")
        parameter = function.parameters[position]
        if parameter.reference == pb.OpenSignatureReference.MUTABLE:
            return True
        body = parameter.body
        return (
            parameter.reference is None
            and body is not None
            and body.type == pb.OpenSignatureBodyType.DATATYPE
        )

    # -- commands -------------------------------------------------------------------------

    def _command(self, command: pb.Command) -> Any:
        if command.move_call is not None:
            call = command.move_call
            return bcs.Command(
                "MoveCall",
                bcs.ProgrammableMoveCall(
                    bcs.Address.from_str(_address(call.package, "package")),
                    call.module or "",
                    call.function or "",
                    [bcs.TypeTag.type_tag_from(t) for t in call.type_arguments],
                    [_argument(a) for a in call.arguments],
                ),
            )
        if command.split_coins is not None:
            split = command.split_coins
            return bcs.Command(
                "SplitCoin",
                bcs.SplitCoin(_argument(split.coin), [_argument(a) for a in split.amounts]),
            )
        if command.merge_coins is not None:
            merge = command.merge_coins
            return bcs.Command(
                "MergeCoins",
                bcs.MergeCoins(_argument(merge.coin), [_argument(a) for a in merge.coins_to_merge]),
            )
        if command.transfer_objects is not None:
            move = command.transfer_objects
            return bcs.Command(
                "TransferObjects",
                bcs.TransferObjects([_argument(a) for a in move.objects], _argument(move.address)),
            )
        if command.make_move_vector is not None:
            vector = command.make_move_vector
            element = (
                bcs.OptionalTypeTag(bcs.TypeTag.type_tag_from(vector.element_type))
                if vector.element_type
                else bcs.OptionalTypeTag(None)
            )
            return bcs.Command(
                "MakeMoveVec", bcs.MakeMoveVec(element, [_argument(a) for a in vector.elements])
            )
        raise _invalid("invalid command: Publish and Upgrade are not supported on the devnet")


def _argument(arg: pb.Argument | None) -> Any:
    kinds = pb.ArgumentArgumentKind
    if arg is None or arg.kind is None:
        raise _invalid("invalid command: an argument has no kind")
    if arg.kind == kinds.GAS:
        return bcs.Argument("GasCoin", None)
    if arg.kind == kinds.INPUT and arg.input is not None:
        return bcs.Argument("Input", int(arg.input))
    if arg.kind == kinds.RESULT and arg.result is not None:
        if arg.subresult is None:
            return bcs.Argument("Result", int(arg.result))
        return bcs.Argument("NestedResult", (int(arg.result), int(arg.subresult)))
    raise _invalid(f"invalid command: bad argument {arg.kind.name}")


def _slot(arg: Any) -> int | None:
    return int(arg.value) if arg.enum_name == "Input" else None


def _uses(index: int, commands: list[Any]) -> list[tuple[Any, int | None]]:
    """Each command using input `index`, with its position among the command's arguments
    where that matters (a MoveCall's parameter; None for a coin or recipient slot)."""
    uses: list[tuple[Any, int | None]] = []
    for command in commands:
        name, body = command.enum_name, command.value
        if name == "MoveCall":
            slots = [_slot(a) for a in body.Arguments]
            if index in slots:
                uses.append((command, slots.index(index)))
        elif name == "TransferObjects":
            if _slot(body.Address) == index or index in [_slot(a) for a in body.Objects]:
                uses.append((command, None))
        elif name == "SplitCoin":
            if _slot(body.FromCoin) == index or index in [_slot(a) for a in body.Amount]:
                uses.append((command, None))
        elif name == "MergeCoins":
            if _slot(body.ToCoin) == index or index in [_slot(a) for a in body.FromCoins]:
                uses.append((command, None))
        elif name == "MakeMoveVec" and index in [_slot(a) for a in body.Vector]:
            uses.append((command, None))
    return uses


# -- rendering ------------------------------------------------------------------------------


def _argument_proto(arg: Any) -> pb.Argument:
    kinds = pb.ArgumentArgumentKind
    name = arg.enum_name
    if name == "GasCoin":
        return pb.Argument(kind=kinds.GAS)
    if name == "Input":
        return pb.Argument(kind=kinds.INPUT, input=int(arg.value))
    if name == "Result":
        return pb.Argument(kind=kinds.RESULT, result=int(arg.value))
    return pb.Argument(kind=kinds.RESULT, result=int(arg.value[0]), subresult=int(arg.value[1]))


def _address_str(address: Any) -> str:
    return "0x" + bytes(address.Address).hex()


def _digest_str(digest: Any) -> str:
    return str(base58.b58encode(bytes(digest.Digest)).decode())


def _input_proto(arg: Any) -> pb.Input:
    kinds = pb.InputInputKind
    if arg.enum_name == "Pure":
        return pb.Input(kind=kinds.PURE, pure=bytes(arg.value))
    obj = arg.value
    ref = obj.value
    if obj.enum_name == "SharedObject":
        return pb.Input(
            kind=kinds.SHARED,
            object_id=_address_str(ref.ObjectID),
            version=int(ref.SequenceNumber),
            mutable=bool(ref.Mutable),
        )
    return pb.Input(
        kind=kinds.IMMUTABLE_OR_OWNED if obj.enum_name == "ImmOrOwnedObject" else kinds.RECEIVING,
        object_id=_address_str(ref.ObjectID),
        version=int(ref.SequenceNumber),
        digest=_digest_str(ref.ObjectDigest),
    )


def _command_proto(command: Any) -> pb.Command:
    name, body = command.enum_name, command.value
    if name == "MoveCall":
        return pb.Command(
            move_call=pb.MoveCall(
                package=_address_str(body.Package),
                module=str(body.Module),
                function=str(body.Function),
                type_arguments=[t.type_tag_to_str() for t in body.Type_Arguments],
                arguments=[_argument_proto(a) for a in body.Arguments],
            )
        )
    if name == "SplitCoin":
        return pb.Command(
            split_coins=pb.SplitCoins(
                coin=_argument_proto(body.FromCoin),
                amounts=[_argument_proto(a) for a in body.Amount],
            )
        )
    if name == "MergeCoins":
        return pb.Command(
            merge_coins=pb.MergeCoins(
                coin=_argument_proto(body.ToCoin),
                coins_to_merge=[_argument_proto(a) for a in body.FromCoins],
            )
        )
    if name == "TransferObjects":
        return pb.Command(
            transfer_objects=pb.TransferObjects(
                objects=[_argument_proto(a) for a in body.Objects],
                address=_argument_proto(body.Address),
            )
        )
    if name == "MakeMoveVec":
        element = body.TypeTag.value if body.TypeTag is not None else None
        return pb.Command(
            make_move_vector=pb.MakeMoveVector(
                element_type=element.type_tag_to_str() if element is not None else None,
                elements=[_argument_proto(a) for a in body.Vector],
            )
        )
    raise ValueError(f"cannot render the command {name}")


def transaction_proto(tx_bytes: bytes) -> pb.Transaction:
    """A BCS `TransactionData` as the full node renders it: bcs, digest, version, kind,
    sender, gas payment and expiration."""
    v1 = bcs.TransactionData.deserialize(tx_bytes).value
    ptb = v1.TransactionKind.value
    gas = v1.GasData
    expiration = v1.TransactionExpiration
    kinds = pb.TransactionExpirationTransactionExpirationKind
    if expiration.enum_name == "Epoch":
        rendered = pb.TransactionExpiration(kind=kinds.EPOCH, epoch=int(expiration.value))
    else:
        rendered = pb.TransactionExpiration(kind=kinds.NONE)
    return pb.Transaction(
        bcs=pb.Bcs(name="TransactionData", value=tx_bytes),
        digest=str(base58.b58encode(tx_digest(tx_bytes)).decode()),
        version=1,
        kind=pb.TransactionKind(
            kind=pb.TransactionKindKind.PROGRAMMABLE_TRANSACTION,
            programmable_transaction=pb.ProgrammableTransaction(
                inputs=[_input_proto(i) for i in ptb.Inputs],
                commands=[_command_proto(c) for c in ptb.Command],
            ),
        ),
        sender=_address_str(v1.Sender),
        gas_payment=pb.GasPayment(
            objects=[
                pb.ObjectReference(
                    object_id=_address_str(r.ObjectID),
                    version=int(r.SequenceNumber),
                    digest=_digest_str(r.ObjectDigest),
                )
                for r in gas.Payment
            ],
            owner=_address_str(gas.Owner),
            price=int(gas.Price),
            budget=int(gas.Budget),
        ),
        expiration=rendered,
    )
