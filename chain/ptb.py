"""A small programmable-transaction builder over pysui's BCS types.

pysui's own builders resolve arguments with server round trips (GetFunction per call) and
encode integers by value size unless wrapped; Walrus calls are few and their signatures are
fixed, so walrusfs encodes every argument explicitly with the Move type the callee declares
(`u64`, `u256`, `vector<u8>`, ...). The bytes are Sui's `TransactionData` BCS, signed by
`chain.wallet.Keypair.sign_transaction`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pysui.sui.sui_bcs import bcs

from codec.bcs import encode_str, uleb128


@dataclass(frozen=True)
class ObjectRef:
    """An owned object's reference: ID, version and digest as the chain last reported them."""

    object_id: str
    version: int
    digest: str


def _addr(object_id: str) -> Any:
    return bcs.Address.from_str(object_id)


class Ptb:
    """Inputs and commands of one programmable transaction."""

    def __init__(self) -> None:
        self.inputs: list[Any] = []
        self.commands: list[Any] = []
        self._objects: dict[str, Any] = {}

    # -- inputs -----------------------------------------------------------------------------

    def pure(self, raw: bytes) -> Any:
        self.inputs.append(bcs.CallArg("Pure", list(raw)))
        return bcs.Argument("Input", len(self.inputs) - 1)

    def u8(self, v: int) -> Any:
        return self.pure(v.to_bytes(1, "little"))

    def u32(self, v: int) -> Any:
        return self.pure(v.to_bytes(4, "little"))

    def u64(self, v: int) -> Any:
        return self.pure(v.to_bytes(8, "little"))

    def u256(self, v: int) -> Any:
        return self.pure(v.to_bytes(32, "little"))

    def boolean(self, v: bool) -> Any:
        return self.pure(b"\x01" if v else b"\x00")

    def address(self, addr: str) -> Any:
        return self.pure(bytes.fromhex(addr.removeprefix("0x").rjust(64, "0")))

    def byte_vector(self, v: bytes) -> Any:
        return self.pure(uleb128(len(v)) + v)

    def string(self, v: str) -> Any:
        return self.pure(encode_str(v))

    def owned(self, ref: ObjectRef) -> Any:
        """An owned object; the same object given twice is one input (as Sui requires)."""
        if ref.object_id in self._objects:
            return self._objects[ref.object_id]
        self.inputs.append(
            bcs.CallArg(
                "Object",
                bcs.ObjectArg(
                    "ImmOrOwnedObject",
                    bcs.ObjectReference(
                        _addr(ref.object_id), ref.version, bcs.Digest.from_str(ref.digest)
                    ),
                ),
            )
        )
        arg = bcs.Argument("Input", len(self.inputs) - 1)
        self._objects[ref.object_id] = arg
        return arg

    def shared(self, object_id: str, initial_shared_version: int, mutable: bool) -> Any:
        if object_id in self._objects:
            return self._objects[object_id]
        self.inputs.append(
            bcs.CallArg(
                "Object",
                bcs.ObjectArg(
                    "SharedObject",
                    bcs.SharedObjectReference(_addr(object_id), initial_shared_version, mutable),
                ),
            )
        )
        arg = bcs.Argument("Input", len(self.inputs) - 1)
        self._objects[object_id] = arg
        return arg

    # -- commands ---------------------------------------------------------------------------

    def _command(self, kind: str, value: Any) -> Any:
        self.commands.append(bcs.Command(kind, value))
        return bcs.Argument("Result", len(self.commands) - 1)

    def move_call(
        self,
        package: str,
        module: str,
        function: str,
        args: list[Any],
        type_args: list[str] | None = None,
    ) -> Any:
        tags = [bcs.TypeTag.type_tag_from(t) for t in type_args or []]
        return self._command(
            "MoveCall", bcs.ProgrammableMoveCall(_addr(package), module, function, tags, args)
        )

    def split_coins(self, coin: Any, amounts: list[Any]) -> list[Any]:
        result = self._command("SplitCoin", bcs.SplitCoin(coin, amounts))
        index = result.value
        return [bcs.Argument("NestedResult", (index, i)) for i in range(len(amounts))]

    def merge_coins(self, into: Any, coins: list[Any]) -> None:
        self._command("MergeCoins", bcs.MergeCoins(into, coins))

    def transfer(self, objects: list[Any], recipient: str) -> None:
        self._command("TransferObjects", bcs.TransferObjects(objects, self.address(recipient)))

    @staticmethod
    def nested(result: Any, index: int) -> Any:
        return bcs.Argument("NestedResult", (result.value, index))

    @staticmethod
    def gas() -> Any:
        return bcs.Argument("GasCoin", None)

    # -- the transaction --------------------------------------------------------------------

    def build(self, sender: str, gas: ObjectRef, gas_price: int, gas_budget: int) -> bytes:
        kind = bcs.TransactionKind(
            "ProgrammableTransaction", bcs.ProgrammableTransaction(self.inputs, self.commands)
        )
        gas_data = bcs.GasData(
            [
                bcs.ObjectReference(
                    _addr(gas.object_id), gas.version, bcs.Digest.from_str(gas.digest)
                )
            ],
            _addr(sender),
            gas_price,
            gas_budget,
        )
        data = bcs.TransactionData(
            "V1",
            bcs.TransactionDataV1(
                kind, _addr(sender), gas_data, bcs.TransactionExpiration("None", None)
            ),
        )
        return bytes(data.serialize())
