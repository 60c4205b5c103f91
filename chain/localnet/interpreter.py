"""The programmable-transaction command interpreter: a PTB's commands run in order.

SplitCoins, MergeCoins, TransferObjects, MakeMoveVec and MoveCall run against the
transaction-local view (`Tx`), with the argument rules of Sui's PTB runtime: result slots and
nested results, values moved out of a slot, objects passed by reference, by mutable reference
or by value, pure inputs decoded as the Move type the callee declares, and no value without
`drop` left over at the end. A failure raises `ExecFailure` naming its command; the executor
then discards the changes. Move functions are Python re-implementations
(`chain.localnet.moves`), one per entry point a client calls, mirroring each `assert!` of the
Move source with its abort code. Kept apart from the executor, which owns what happens around
the commands (inputs, gas, effects).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chain.localnet.errors import (
    KIND_ARITY_MISMATCH,
    KIND_COMMAND_ARGUMENT_ERROR,
    KIND_FUNCTION_NOT_FOUND,
    KIND_INSUFFICIENT_COIN_BALANCE,
    KIND_INVALID_TRANSFER_OBJECT,
    KIND_TYPE_ARGUMENT_ERROR,
    KIND_UNUSED_VALUE_WITHOUT_DROP,
    ExecFailure,
    MoveAbort,
)
from chain.localnet.ledger import OWNER_ADDRESS, OWNER_IMMUTABLE, OWNER_OBJECT, OWNER_SHARED
from chain.localnet.naming import coin_inner
from chain.localnet.txcontext import LiveObject, MoveFunction, ObjRef, Tx
from chain.move_types import Coin

#: The abort code of a published function the stand-in does not execute (no Walrus or Sui
#: module uses it: their codes are small constants).
E_NOT_SUPPORTED_ON_DEVNET = 0xDE_0000_0001


# -- pure values ----------------------------------------------------------------------------

_INT_WIDTH = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "u128": 16, "u256": 32}


def decode_pure(raw: bytes, type_: str) -> Any:
    """A pure input as the Move type the callee declares; `ExecFailure` if it is not one."""

    def bad(why: str) -> ExecFailure:
        return ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, f"invalid BCS for {type_}: {why}")

    if type_ in _INT_WIDTH:
        if len(raw) != _INT_WIDTH[type_]:
            raise bad(f"{len(raw)} bytes")
        return int.from_bytes(raw, "little")
    if type_ == "bool":
        if raw not in (b"\x00", b"\x01"):
            raise bad("not 0 or 1")
        return raw == b"\x01"
    if type_ in ("address", "id"):
        if len(raw) != 32:
            raise bad(f"{len(raw)} bytes")
        return "0x" + raw.hex()
    if type_ in ("vector<u8>", "string"):
        length, pos = 0, 0
        shift = 0
        while True:
            if pos >= len(raw):
                raise bad("truncated length")
            byte = raw[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if len(raw) - pos != length:
            raise bad("length does not match")
        body = raw[pos:]
        if type_ == "vector<u8>":
            return body
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad("not UTF-8") from None
    raise bad("not a pure type")


# -- commands -------------------------------------------------------------------------------


class Interpreter:
    """Runs a transaction's commands. `functions` maps (package, module, function) to
    implementations; `published` tells a function the stand-in publishes but does not execute
    from one that does not exist."""

    def __init__(
        self,
        functions: dict[tuple[str, str, str], MoveFunction],
        published: Callable[[str, str, str], bool],
    ) -> None:
        self.functions = functions
        self.published = published

    def run(self, tx: Tx, commands: list[Any], inputs: list[Any], gas_id: str) -> None:
        """Run `commands` in order against `tx`, whose changes the caller commits or drops.

        Raises:
            ExecFailure: a command failed (its index in `command`), including a `MoveAbort`
                of a called function, or a result without `drop` was left unused.
        """
        results: list[list[Any]] = []
        moved: set[tuple[Any, ...]] = set()

        def slot_of(arg: Any) -> tuple[Any, ...]:
            name = arg.enum_name
            if name == "GasCoin":
                return ("gas",)
            if name == "Input":
                return ("in", int(arg.value))
            if name == "Result":
                return ("res", int(arg.value), 0)
            return ("res", int(arg.value[0]), int(arg.value[1]))

        def get(arg: Any, index: int) -> Any:
            slot = slot_of(arg)
            if slot in moved:
                raise ExecFailure(
                    KIND_COMMAND_ARGUMENT_ERROR, f"argument {slot} was already moved", index
                )
            if slot[0] == "gas":
                return ObjRef(gas_id)
            if slot[0] == "in":
                if slot[1] >= len(inputs):
                    raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "input out of range", index)
                return inputs[slot[1]]
            if slot[1] >= len(results):
                raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "result out of range", index)
            values = results[slot[1]]
            if arg.enum_name == "Result" and len(values) != 1:
                raise ExecFailure(
                    KIND_COMMAND_ARGUMENT_ERROR, "Result of a command without one value", index
                )
            if slot[2] >= len(values):
                raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "nested result out of range", index)
            return values[slot[2]]

        def take(arg: Any, index: int) -> Any:
            value = get(arg, index)
            slot = slot_of(arg)
            if isinstance(value, ObjRef) or slot[0] != "in":
                moved.add(slot)
            return value

        def obj_of(value: Any, index: int, what: str) -> LiveObject:
            if not isinstance(value, ObjRef):
                raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, f"{what} must be an object", index)
            obj = tx.objs[value.id]
            if obj.state != "live":
                raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, f"{what} no longer exists", index)
            return obj

        def amount(value: Any, index: int) -> int:
            if isinstance(value, tuple) and value[0] == "pure":
                return int(decode_pure(value[1], "u64"))
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "amount must be a u64", index)

        for index, command in enumerate(commands):
            name = command.enum_name
            body = command.value
            try:
                if name == "SplitCoin":
                    coin = obj_of(get(body.FromCoin, index), index, "coin")
                    if coin_inner(coin.type) is None or not coin.mutable:
                        raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "not a mutable coin", index)
                    out: list[Any] = []
                    for amount_arg in body.Amount:
                        value = amount(take(amount_arg, index), index)
                        if value > coin.value.balance:
                            raise ExecFailure(
                                KIND_INSUFFICIENT_COIN_BALANCE,
                                f"coin {coin.id} holds {coin.value.balance}, cannot split {value}",
                                index,
                            )
                        coin.value = Coin(coin.id, coin.value.balance - value)
                        coin.touched = True
                        new = tx.create(coin.type, None)
                        new.value = Coin(new.id, value)
                        out.append(ObjRef(new.id))
                    results.append(out)
                elif name == "MergeCoins":
                    dest = obj_of(get(body.ToCoin, index), index, "coin")
                    if coin_inner(dest.type) is None or not dest.mutable:
                        raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "not a mutable coin", index)
                    for src_arg in body.FromCoins:
                        if src_arg.enum_name == "GasCoin":
                            raise ExecFailure(
                                KIND_COMMAND_ARGUMENT_ERROR, "the gas coin cannot be merged", index
                            )
                        src = obj_of(take(src_arg, index), index, "coin")
                        if src.type != dest.type or src.id == dest.id:
                            raise ExecFailure(
                                KIND_COMMAND_ARGUMENT_ERROR, "coins of different types", index
                            )
                        dest.value = Coin(dest.id, dest.value.balance + src.value.balance)
                        dest.touched = True
                        tx.delete(src)
                    results.append([])
                elif name == "TransferObjects":
                    recipient_value = take(body.Address, index)
                    if not (isinstance(recipient_value, tuple) and recipient_value[0] == "pure"):
                        raise ExecFailure(
                            KIND_COMMAND_ARGUMENT_ERROR, "recipient must be an address", index
                        )
                    recipient = decode_pure(recipient_value[1], "address")
                    for obj_arg in body.Objects:
                        obj = obj_of(take(obj_arg, index), index, "transferred value")
                        if obj.owner_kind in (OWNER_SHARED, OWNER_IMMUTABLE, OWNER_OBJECT):
                            raise ExecFailure(
                                KIND_INVALID_TRANSFER_OBJECT,
                                f"object {obj.id} is shared or immutable",
                                index,
                            )
                        obj.owner_kind, obj.owner = OWNER_ADDRESS, recipient
                        obj.touched = True
                    results.append([])
                elif name == "MakeMoveVec":
                    results.append([[take(a, index) for a in body.Vector]])
                elif name == "MoveCall":
                    results.append(
                        self._move_call(tx, body, index, take=take, get=get, obj_of=obj_of)
                    )
                else:
                    raise ExecFailure(
                        KIND_COMMAND_ARGUMENT_ERROR, f"{name} is not supported", index
                    )
            except ExecFailure as exc:
                if exc.command is None:
                    exc.command = index
                raise
        # Values left in result slots must have `drop`: objects do not.
        for r_index, values in enumerate(results):
            for v_index, value in enumerate(values):
                if ("res", r_index, v_index) in moved:
                    continue
                if isinstance(value, ObjRef):
                    obj = tx.objs[value.id]
                    if obj.state == "live" and obj.owner_kind is None:
                        raise ExecFailure(
                            KIND_UNUSED_VALUE_WITHOUT_DROP,
                            f"result {r_index}.{v_index} ({obj.type}) is neither used nor "
                            "transferred",
                            r_index,
                        )

    def _move_call(
        self,
        tx: Tx,
        call: Any,
        index: int,
        *,
        take: Callable[[Any, int], Any],
        get: Callable[[Any, int], Any],
        obj_of: Callable[[Any, int, str], LiveObject],
    ) -> list[Any]:
        package = "0x" + bytes(call.Package.Address).hex()
        key = (package, str(call.Module), str(call.Function))
        fn = self.functions.get(key)
        if fn is None and self.published(*key):
            raise MoveAbort(
                package,
                key[1],
                key[2],
                E_NOT_SUPPORTED_ON_DEVNET,
                f"{key[1]}::{key[2]} is published but not supported on the devnet "
                "(the stand-in executes only the functions in chain/localnet/moves/)",
            )
        if fn is None:
            raise ExecFailure(
                KIND_FUNCTION_NOT_FOUND, f"no function {package}::{call.Module}::{call.Function}"
            )
        type_args = [t.type_tag_to_str() for t in call.Type_Arguments]
        if len(type_args) != fn.type_params:
            raise ExecFailure(KIND_TYPE_ARGUMENT_ERROR, "wrong number of type arguments")
        if len(call.Arguments) != len(fn.params):
            raise ExecFailure(
                KIND_ARITY_MISMATCH,
                f"{call.Module}::{call.Function} takes {len(fn.params)} arguments, "
                f"got {len(call.Arguments)}",
            )
        args: list[Any] = []
        for arg, param in zip(call.Arguments, fn.params, strict=True):
            if param.kind == "pure":
                value = get(arg, index)
                if isinstance(value, tuple) and value[0] == "pure":
                    args.append(decode_pure(value[1], param.type))
                elif isinstance(value, ObjRef):
                    raise ExecFailure(
                        KIND_COMMAND_ARGUMENT_ERROR, f"expected {param.type}, got an object"
                    )
                else:
                    args.append(value)
                continue
            if param.type == "Metadata":  # a Move value without `key`
                value = take(arg, index) if param.kind == "val" else get(arg, index)
                if not isinstance(value, dict):
                    raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "expected a Metadata value")
                args.append(value)
                continue
            value = take(arg, index) if param.kind == "val" else get(arg, index)
            obj = obj_of(value, index, param.type)
            expected = param.type.replace("<T>", f"<{type_args[0]}>") if type_args else param.type
            if obj.type != expected:
                raise ExecFailure(
                    KIND_COMMAND_ARGUMENT_ERROR, f"expected a {expected}, got a {obj.type}"
                )
            if param.kind in ("mut", "val") and not obj.mutable:
                raise ExecFailure(
                    KIND_COMMAND_ARGUMENT_ERROR, f"{obj.id} is passed immutably but used mutably"
                )
            if param.kind == "val" and obj.owner_kind == OWNER_SHARED:
                raise ExecFailure(KIND_COMMAND_ARGUMENT_ERROR, "a shared object cannot be moved")
            if param.kind == "val":
                obj.owner_kind, obj.owner = None, None
                obj.touched = True
            elif param.kind == "mut":
                obj.touched = True
            args.append(obj)
        out = fn.impl(tx, *type_args, *args)
        return [ObjRef(v.id) if isinstance(v, LiveObject) else v for v in out]

    def check_unused(self, tx: Tx) -> None:
        """After the last command: every object the transaction touched has an owner.

        Raises:
            ExecFailure: UNUSED_VALUE_WITHOUT_DROP, a live object was left without one.
        """
        for obj in tx.objs.values():
            if obj.state == "live" and obj.owner_kind is None and obj.df is None:
                raise ExecFailure(
                    KIND_UNUSED_VALUE_WITHOUT_DROP,
                    f"object {obj.id} ({obj.type}) was left without an owner",
                )
