"""Executes signed Sui transactions against the ledger: the programmable-transaction machine.

Order of checks, as on Sui:

1. *Rejected* before execution (`TxRejected`; nothing changes, no gas is charged): bad BCS,
   bad signature or signer not the sender, an input object that does not exist, a stale
   version or digest, an owned object of someone else, a gas coin not owned by the sender or
   smaller than the budget, a gas price below the reference price.
2. *Executed*: commands run in order against a transaction-local view. If one fails
   (`ExecFailure`: a Move abort with its module and code, an argument error, an unused value
   without `drop`, ...) every change is discarded, the gas is charged and every mutable input
   gets a new version, exactly what a failed Sui transaction leaves behind.

Move functions are Python re-implementations (`chain.localnet.moves`), one per entry point a
client calls, mirroring each `assert!` of the Move source with its abort code.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import base58
import pysui_fastcrypto as _fc
from pysui.sui.sui_bcs import bcs

from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_IMMUTABLE,
    OWNER_OBJECT,
    OWNER_SHARED,
    Ledger,
    StoredObject,
)
from chain.move_types import Coin, MoveStruct, field_contents

SUI_FRAMEWORK = "0x" + "0" * 63 + "2"
SUI_TYPE = f"{SUI_FRAMEWORK}::sui::SUI"
#: Gas, as Sui charges it in kind (sui `crates/sui-protocol-config`: `base_tx_cost_fixed`,
#: `obj_data_cost_refundable`, `storage_gas_price`, `storage_rebate_rate`), with fixed
#: numbers so a dry run and the execution cost the same: computation is the minimum bucket
#: (1000 units at the transaction's gas price); storage is 100 units per byte of every object
#: written, at 76 MIST per unit; an object rewritten or deleted returns 99% of the storage
#: its previous version paid (the rest is the non-refundable fee). The budget must cover
#: computation + storage - rebate, what the coin is charged: the budget the Sui SDKs and the
#: Walrus client estimate (max(computation, computation + storage - rebate) + a margin,
#: `compute_gas_budget` in walrus `retriable_sui_client.rs`) is sized for exactly that.
COMPUTATION_UNITS = 1_000  # per transaction, times the gas price
STORAGE_UNITS_PER_BYTE = 100
STORAGE_GAS_PRICE = 76  # MIST per storage unit
STORAGE_COST_PER_BYTE = STORAGE_UNITS_PER_BYTE * STORAGE_GAS_PRICE  # MIST per byte written
STORAGE_REBATE_BPS = 9_900  # of the storage an object's previous version paid


def normalize_address(addr: str) -> str:
    """`0x2` -> `0x00..02` (64 hex digits, lower case); `ValueError` if not an address."""
    text = addr.lower().removeprefix("0x")
    if not text or len(text) > 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a Sui address: {addr!r}")
    return "0x" + text.rjust(64, "0")


def coin_type(inner: str) -> str:
    return f"{SUI_FRAMEWORK}::coin::Coin<{inner}>"


def coin_inner(type_: str) -> str | None:
    prefix = f"{SUI_FRAMEWORK}::coin::Coin<"
    return type_[len(prefix) : -1] if type_.startswith(prefix) else None


class TxRejected(Exception):
    """The transaction is invalid and was not executed; the ledger is unchanged."""


@dataclass
class ExecFailure(Exception):
    """Execution failed: changes are discarded, gas is charged (`ExecutionError` kind)."""

    kind: int
    description: str
    command: int | None = None
    abort_code: int | None = None
    module: str | None = None
    function: str | None = None
    package: str | None = None


class MoveAbort(ExecFailure):
    """A Move `assert!`/`abort` in `package::module::function` with `code`."""

    def __init__(self, package: str, module: str, function: str, code: int, what: str) -> None:
        super().__init__(
            KIND_MOVE_ABORT,
            f"MoveAbort in {module}::{function} code {code}: {what}",
            abort_code=code,
            module=module,
            function=function,
            package=package,
        )


#: The synthetic gas coin of a simulation without gas payment (sui `SIMULATION_GAS_COIN_VALUE`
#: is likewise far above any budget), and its object ID.
MOCK_GAS_BALANCE = 10**18
MOCK_GAS_ID = "0x" + hashlib.blake2b(b"walrusfs-devnet/mock-gas", digest_size=32).hexdigest()

#: The abort code of a published function the stand-in does not execute (no Walrus or Sui
#: module uses it: their codes are small constants).
E_NOT_SUPPORTED_ON_DEVNET = 0xDE_0000_0001

# sui.rpc.v2.ExecutionError.ExecutionErrorKind numbers
KIND_INSUFFICIENT_GAS = 1
KIND_INSUFFICIENT_COIN_BALANCE = 8
KIND_MOVE_ABORT = 13
KIND_FUNCTION_NOT_FOUND = 16
KIND_ARITY_MISMATCH = 17
KIND_COMMAND_ARGUMENT_ERROR = 20
KIND_TYPE_ARGUMENT_ERROR = 21
KIND_UNUSED_VALUE_WITHOUT_DROP = 22
KIND_INVALID_TRANSFER_OBJECT = 24


@dataclass
class LiveObject:
    """An object as a transaction sees it. `value` is the decoded Move struct."""

    id: str
    type: str
    value: Any
    input: StoredObject | None  # None: created (or unwrapped) in this transaction
    owner_kind: int | None  # None: not owned yet (a fresh result value)
    owner: str | None
    initial_shared_version: int | None = None
    df: tuple[str, bytes, str] | None = None  # dynamic field: (name type, name BCS, value type)
    mutable: bool = True
    state: str = "live"  # live | deleted | wrapped
    touched: bool = False
    is_input: bool = False  # a transaction input (or gas): mutable inputs always get a version
    unwrapped: bool = False  # re-appeared from inside another object (same ID as before)

    def contents(self) -> bytes:
        body = self.value.to_bcs() if isinstance(self.value, MoveStruct) else bytes(self.value)
        if self.df is not None:
            return field_contents(self.id, self.df[1], body)
        return body


@dataclass(frozen=True)
class ObjRef:
    """A PTB value that is an object (a Move value with `key`)."""

    id: str


@dataclass
class Param:
    """One Move parameter: `kind` is ref | mut | val (objects and Metadata) or pure."""

    kind: str
    type: str


@dataclass
class MoveFunction:
    """A callable Move function: parameters, return types (`Param.type` syntax) and the
    Python implementation `impl(tx, *type_args, *args) -> [return values]`."""

    params: list[Param]
    impl: Callable[..., list[Any]]
    type_params: int = 0
    returns: list[str] = field(default_factory=list)


Decoder = Callable[[StoredObject], Any]


@dataclass
class Tx:
    """Transaction-local state: objects read or written, events, fresh IDs."""

    ledger: Ledger
    decode: Decoder
    sender: str
    digest: bytes
    epoch: int
    objs: dict[str, LiveObject] = field(default_factory=dict)
    events: list[tuple[str, str, MoveStruct]] = field(default_factory=list)  # (pkg, module, ev)
    created_count: int = 0

    def new_id(self) -> str:
        """Sui's derivation: blake2b(0xf1 || tx digest || creation counter u64 LE)."""
        raw = hashlib.blake2b(
            b"\xf1" + self.digest + self.created_count.to_bytes(8, "little"), digest_size=32
        ).digest()
        self.created_count += 1
        return "0x" + raw.hex()

    def create(self, type_: str, value: Any, object_id: str | None = None) -> LiveObject:
        obj = LiveObject(object_id or self.new_id(), type_, value, None, None, None, touched=True)
        self.objs[obj.id] = obj
        return obj

    def load(self, object_id: str) -> LiveObject | None:
        if object_id in self.objs:
            return self.objs[object_id]
        stored = self.ledger.get(object_id)
        if stored is None:
            return None
        obj = LiveObject(
            stored.id,
            stored.type,
            self.decode(stored),
            stored,
            stored.owner_kind,
            stored.owner,
            stored.initial_shared_version,
            (stored.df_name_type, stored.df_name, stored.df_value_type)  # type: ignore[arg-type]
            if stored.df_name_type
            else None,
        )
        self.objs[obj.id] = obj
        return obj

    def delete(self, obj: LiveObject) -> None:
        obj.state = "deleted"
        obj.touched = True

    def wrap(self, obj: LiveObject) -> None:
        obj.state = "wrapped"
        obj.touched = True

    def emit(self, package: str, module: str, event: MoveStruct) -> None:
        self.events.append((package, module, event))


def object_digest(obj: StoredObject) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in (obj.type.encode(), bytes([obj.owner_kind]), (obj.owner or "").encode()):
        h.update(len(part).to_bytes(4, "little") + part)
    h.update(obj.version.to_bytes(8, "little") + obj.contents)
    return str(base58.b58encode(h.digest()).decode())


def tx_digest(tx_bytes: bytes) -> bytes:
    return hashlib.blake2b(b"TransactionData::" + tx_bytes, digest_size=32).digest()


def verify_user_signature(tx_bytes: bytes, signature: bytes, sender: str) -> None:
    """Ed25519 `flag || sig(64) || pubkey(32)` over blake2b(intent [0,0,0] || tx)."""
    if len(signature) != 97 or signature[0] != 0:
        raise TxRejected("only Ed25519 user signatures (97 bytes, flag 0) are supported")
    public_key = signature[65:]
    signer = "0x" + hashlib.blake2b(b"\x00" + public_key, digest_size=32).hexdigest()
    if signer != sender:
        raise TxRejected(
            f"signer {signer} is not the transaction sender {sender}: "
            "the transaction must be signed by its sender"
        )
    digest = hashlib.blake2b(b"\x00\x00\x00" + tx_bytes, digest_size=32).digest()
    ok = _fc.verify_pubk(
        0,
        public_key,
        base64.b64encode(digest).decode(),
        base64.b64encode(signature[1:65]).decode(),
    )
    if not ok:
        raise TxRejected("invalid signature: it does not verify for the transaction bytes")


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


# -- the machine ----------------------------------------------------------------------------


@dataclass
class Outcome:
    digest: str
    seq: int
    success: bool
    error: ExecFailure | None
    gas_used: int  # charged: computation + storage_cost - storage_rebate
    computation_cost: int
    storage_cost: int
    storage_rebate: int
    non_refundable_storage_fee: int
    changed: list[tuple[LiveObject, StoredObject | None, StoredObject | None, str]]
    events: list[tuple[str, str, MoveStruct]]
    lamport: int
    gas_id: str
    sender: str


class Executor:
    """Runs transactions. `functions` maps (package, module, function) to implementations."""

    def __init__(
        self,
        ledger: Ledger,
        decode: Decoder,
        functions: dict[tuple[str, str, str], MoveFunction],
        reference_gas_price: int,
        current_epoch: Callable[[], int],
        *,
        published: Callable[[str, str, str], bool] = lambda *_: False,
    ) -> None:
        self.ledger = ledger
        self.published = published
        self.decode = decode
        self.functions = functions
        self.reference_gas_price = reference_gas_price
        self.current_epoch = current_epoch

    def execute(self, tx_bytes: bytes, signatures: list[bytes]) -> Outcome:
        with self.ledger.lock:
            return self._execute(tx_bytes, signatures, simulate=False)

    def simulate(self, tx_bytes: bytes, *, mock_gas: bool = False) -> Outcome:
        """Run without a signature and without committing (SimulateTransaction). With
        `mock_gas` and no gas payment, a synthetic gas coin of `MOCK_GAS_BALANCE` owned by the
        sender pays (what Sui's simulator does: `allow_mock_gas_coin`); its storage is
        charged like any object written, and an estimate subtracts it."""
        with self.ledger.lock:
            return self._execute(tx_bytes, [], simulate=True, mock_gas=mock_gas)

    def _execute(
        self, tx_bytes: bytes, signatures: list[bytes], *, simulate: bool, mock_gas: bool = False
    ) -> Outcome:
        try:
            data = bcs.TransactionData.deserialize(tx_bytes)
        except Exception as exc:  # canoser raises bare Exceptions on malformed input
            raise TxRejected(f"transaction bytes are not a BCS TransactionData: {exc}") from None
        v1 = data.value
        kind = v1.TransactionKind
        if kind.enum_name != "ProgrammableTransaction":
            raise TxRejected(f"unsupported transaction kind {kind.enum_name}")
        sender = "0x" + bytes(v1.Sender.Address).hex()
        if not simulate:
            if len(signatures) != 1:
                raise TxRejected("exactly one user signature (the sender's) is required")
            verify_user_signature(tx_bytes, signatures[0], sender)
        digest = tx_digest(tx_bytes)
        digest_str = str(base58.b58encode(digest).decode())
        if not simulate and self.ledger.transaction(digest_str) is not None:
            raise TxRejected(f"transaction {digest_str} was already executed")

        tx = Tx(self.ledger, self.decode, sender, digest, self.current_epoch())
        ptb = kind.value
        gas = v1.GasData
        inputs = self._load_inputs(tx, ptb.Inputs)
        if mock_gas and not gas.Payment:
            gas_obj = tx.create(coin_type(SUI_TYPE), None, object_id=MOCK_GAS_ID)
            gas_obj.value = Coin(MOCK_GAS_ID, MOCK_GAS_BALANCE)
            gas_obj.owner_kind, gas_obj.owner, gas_obj.is_input = OWNER_ADDRESS, sender, True
        else:
            gas_obj = self._load_gas(tx, gas, sender)
        lamport = 1 + max(
            [o.input.version for o in tx.objs.values() if o.input is not None], default=0
        )
        budget = int(gas.Budget)
        computation = int(gas.Price) * COMPUTATION_UNITS
        if budget < computation:
            raise TxRejected(
                f"gas budget {budget} is below the minimum {computation} for gas price {gas.Price}"
            )
        snapshot = {oid: _copy_live(o) for oid, o in tx.objs.items()}

        error: ExecFailure | None = None
        try:
            self._run(tx, ptb.Command, inputs, gas_obj.id)
            self._check_unused(tx)
        except ExecFailure as exc:
            error = exc
        storage_cost = rebate = fee = 0
        if error is None:
            storage_cost, rebate, fee = _storage(tx, gas_obj.id)
            if computation + storage_cost - rebate > budget:
                error = ExecFailure(
                    KIND_INSUFFICIENT_GAS,
                    f"gas budget {budget} is below the cost {computation + storage_cost - rebate}"
                    f" (computation {computation}, storage {storage_cost}, rebate {rebate})",
                )
        if error is not None:
            # Roll back to the inputs, charge gas, bump every mutable input's version.
            tx.objs = snapshot
            tx.events = []
            storage_cost = rebate = fee = 0
            for obj in tx.objs.values():
                if obj.input is not None and obj.mutable:
                    obj.touched = True
        gas_used = min(budget, computation + storage_cost - rebate)
        gas_live = tx.objs[gas_obj.id]
        gas_live.value = Coin(gas_live.value.id, gas_live.value.balance - gas_used)
        gas_live.touched = True
        changed = self._commit_plan(tx, lamport, digest_str)
        return Outcome(
            digest_str,
            0,
            error is None,
            error,
            gas_used,
            computation,
            storage_cost,
            rebate,
            fee,
            changed,
            tx.events,
            lamport,
            gas_obj.id,
            sender,
        )

    # -- inputs -----------------------------------------------------------------------------

    def _load_inputs(self, tx: Tx, call_args: list[Any]) -> list[Any]:
        inputs: list[Any] = []
        for arg in call_args:
            if arg.enum_name == "Pure":
                inputs.append(("pure", bytes(arg.value)))
                continue
            if arg.enum_name != "Object":
                raise TxRejected(f"unsupported input kind {arg.enum_name}")
            obj_arg = arg.value
            ref = obj_arg.value
            object_id = "0x" + bytes(ref.ObjectID.Address).hex()
            obj = tx.load(object_id)
            if obj is None or obj.input is None:
                raise TxRejected(f"input object {object_id} does not exist (deleted or wrapped?)")
            stored = obj.input
            if obj_arg.enum_name == "ImmOrOwnedObject":
                version = int(ref.SequenceNumber)
                digest = str(base58.b58encode(bytes(ref.ObjectDigest.Digest)).decode())
                if version != stored.version or digest != stored.digest:
                    raise TxRejected(
                        f"object {object_id} version {version} is not available for consumption;"
                        f" its current version is {stored.version}: refresh the object reference"
                    )
                if stored.owner_kind == OWNER_ADDRESS:
                    if stored.owner != tx.sender:
                        raise TxRejected(
                            f"object {object_id} is owned by {stored.owner}, "
                            f"not by the sender {tx.sender}"
                        )
                elif stored.owner_kind == OWNER_IMMUTABLE:
                    obj.mutable = False
                else:
                    raise TxRejected(f"object {object_id} is not an owned or immutable object")
            elif obj_arg.enum_name == "SharedObject":
                if stored.owner_kind != OWNER_SHARED:
                    raise TxRejected(f"object {object_id} is not shared")
                if int(ref.SequenceNumber) != stored.initial_shared_version:
                    raise TxRejected(
                        f"shared object {object_id}: initial shared version "
                        f"{ref.SequenceNumber} is wrong, expected {stored.initial_shared_version}"
                    )
                obj.mutable = bool(ref.Mutable)
            else:
                raise TxRejected(f"unsupported object argument {obj_arg.enum_name}")
            obj.is_input = True
            inputs.append(ObjRef(object_id))
        return inputs

    def _load_gas(self, tx: Tx, gas: Any, sender: str) -> LiveObject:
        owner = "0x" + bytes(gas.Owner.Address).hex()
        if owner != sender:
            raise TxRejected("sponsored transactions are not supported: gas owner must be sender")
        if int(gas.Price) < self.reference_gas_price:
            raise TxRejected(
                f"gas price {gas.Price} is below the reference gas price {self.reference_gas_price}"
            )
        if not gas.Payment:
            raise TxRejected("no gas payment coin")
        coins: list[LiveObject] = []
        for ref in gas.Payment:
            object_id = "0x" + bytes(ref.ObjectID.Address).hex()
            if object_id in tx.objs:
                raise TxRejected(f"gas coin {object_id} is also an input, or given twice")
            obj = tx.load(object_id)
            if obj is None or obj.input is None:
                raise TxRejected(f"gas coin {object_id} does not exist")
            digest = str(base58.b58encode(bytes(ref.ObjectDigest.Digest)).decode())
            if int(ref.SequenceNumber) != obj.input.version or digest != obj.input.digest:
                raise TxRejected(
                    f"gas coin {object_id} version {ref.SequenceNumber} is not available for "
                    f"consumption; its current version is {obj.input.version}"
                )
            if obj.type != coin_type(SUI_TYPE) or obj.owner != sender:
                raise TxRejected(f"gas coin {object_id} is not a Coin<SUI> owned by the sender")
            obj.is_input = True
            coins.append(obj)
        total = sum(c.value.balance for c in coins)
        if total < int(gas.Budget):
            raise TxRejected(
                f"gas balance {total} MIST is below the gas budget {gas.Budget}: "
                "not enough SUI to pay for gas"
            )
        primary = coins[0]
        for other in coins[1:]:  # Sui smashes the payment coins into the first
            primary.value = Coin(primary.value.id, primary.value.balance + other.value.balance)
            tx.delete(other)
        return primary

    # -- commands ---------------------------------------------------------------------------

    def _run(self, tx: Tx, commands: list[Any], inputs: list[Any], gas_id: str) -> None:
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

    def _check_unused(self, tx: Tx) -> None:
        for obj in tx.objs.values():
            if obj.state == "live" and obj.owner_kind is None and obj.df is None:
                raise ExecFailure(
                    KIND_UNUSED_VALUE_WITHOUT_DROP,
                    f"object {obj.id} ({obj.type}) was left without an owner",
                )

    # -- effects ----------------------------------------------------------------------------

    def _commit_plan(
        self, tx: Tx, lamport: int, digest: str
    ) -> list[tuple[LiveObject, StoredObject | None, StoredObject | None, str]]:
        """(object, input state, output state, id operation) for every changed object."""
        changed: list[tuple[LiveObject, StoredObject | None, StoredObject | None, str]] = []
        for obj in tx.objs.values():
            before = obj.input
            if before is not None and not obj.mutable:
                continue
            if not obj.touched and not (obj.is_input and obj.mutable):
                continue
            if before is None and obj.state != "live":
                continue  # created and consumed within the transaction
            if obj.state == "live":
                after = StoredObject(
                    obj.id,
                    lamport,
                    "",
                    obj.owner_kind or OWNER_ADDRESS,
                    obj.owner,
                    obj.initial_shared_version,
                    obj.type,
                    obj.contents(),
                    digest,
                    obj.df[0] if obj.df else None,
                    obj.df[1] if obj.df else None,
                    obj.df[2] if obj.df else None,
                )
                after.digest = object_digest(after)
                op = "created" if before is None and not obj.unwrapped else "none"
                changed.append((obj, before, after, op))
            else:
                changed.append((obj, before, None, "deleted" if obj.state == "deleted" else "none"))
        return changed


def _storage(tx: Tx, gas_id: str) -> tuple[int, int, int]:
    """(storage cost, rebate, non-refundable fee) of the objects the transaction writes and
    deletes: what `_commit_plan` will record, the gas coin included (its size does not depend
    on its balance, so charging it afterwards changes nothing)."""
    cost = rebate = fee = 0
    for obj in tx.objs.values():
        before = obj.input
        if before is not None and not obj.mutable:
            continue
        if not obj.touched and not (obj.is_input and obj.mutable) and obj.id != gas_id:
            continue
        if obj.state == "live":
            cost += STORAGE_COST_PER_BYTE * len(obj.contents())
        if before is not None:
            paid = STORAGE_COST_PER_BYTE * len(before.contents)
            back = paid * STORAGE_REBATE_BPS // 10_000
            rebate += back
            fee += paid - back
    return cost, rebate, fee


def _copy_live(obj: LiveObject) -> LiveObject:
    return copy.deepcopy(obj)
