"""Executes signed Sui transactions against the ledger: everything around a transaction's
commands.

Order of checks, as on Sui:

1. *Rejected* before execution (`TxRejected`; nothing changes, no gas is charged): bad BCS,
   bad signature or signer not the sender, an input object that does not exist, a stale
   version or digest, an owned object of someone else, a gas coin not owned by the sender or
   smaller than the budget, a gas price below the reference price.
2. *Executed*: commands run in order against a transaction-local view
   (`chain.localnet.interpreter`). If one fails (`ExecFailure`: a Move abort with its module
   and code, an argument error, an unused value without `drop`, ...) every change is
   discarded, the gas is charged and every mutable input gets a new version, exactly what a
   failed Sui transaction leaves behind.

This module owns the steps that decide whether a transaction runs and what it leaves behind:
decoding it, its signature, its inputs (ownership, versions, mutability), its gas payment and
charge, and the commit plan (each changed object with its new version and digest) that the
ledger records. The commands themselves are the interpreter's.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import base58
from pysui.sui.sui_bcs import bcs

from chain.localnet.digests import object_digest, tx_digest, verify_user_signature
from chain.localnet.errors import KIND_INSUFFICIENT_GAS, ExecFailure, TxRejected, bcs_error
from chain.localnet.interpreter import Interpreter
from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_IMMUTABLE,
    OWNER_SHARED,
    Ledger,
    StoredObject,
)
from chain.localnet.naming import SUI_TYPE, coin_type
from chain.localnet.txcontext import Decoder, LiveObject, MoveFunction, ObjRef, Tx
from chain.move_types import Coin, MoveStruct

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

#: The synthetic gas coin of a simulation without gas payment (sui `SIMULATION_GAS_COIN_VALUE`
#: is likewise far above any budget), and its object ID.
MOCK_GAS_BALANCE = 10**18
MOCK_GAS_ID = "0x" + hashlib.blake2b(b"walrusfs-devnet/mock-gas", digest_size=32).hexdigest()


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
        self.decode = decode
        self.interpreter = Interpreter(functions, published)
        self.reference_gas_price = reference_gas_price
        self.current_epoch = current_epoch

    def execute(self, tx_bytes: bytes, signatures: list[bytes]) -> Outcome:
        """Run a signed transaction; the outcome, which the caller commits. A failed
        execution is an outcome with its error and its gas charged, not an exception.

        Raises:
            TxRejected: it cannot run (bad BCS or signature, executed already, a stale or
                foreign input, a budget below the minimum); nothing changed.
        """
        with self.ledger.lock:
            return self._execute(tx_bytes, signatures, simulate=False)

    def simulate(self, tx_bytes: bytes, *, mock_gas: bool = False) -> Outcome:
        """Run without a signature and without committing (SimulateTransaction). With
        `mock_gas` and no gas payment, a synthetic gas coin of `MOCK_GAS_BALANCE` owned by the
        sender pays (what Sui's simulator does: `allow_mock_gas_coin`); its storage is
        charged like any object written, and an estimate subtracts it.

        Raises:
            TxRejected: it cannot run (as `execute`, signatures aside).
        """
        with self.ledger.lock:
            return self._execute(tx_bytes, [], simulate=True, mock_gas=mock_gas)

    def _execute(
        self, tx_bytes: bytes, signatures: list[bytes], *, simulate: bool, mock_gas: bool = False
    ) -> Outcome:
        try:
            data = bcs.TransactionData.deserialize(tx_bytes)
        except Exception as exc:  # canoser raises bare Exceptions on malformed input
            raise TxRejected(
                f"transaction bytes are not a BCS TransactionData: {bcs_error(exc)}"
            ) from None
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
            self.interpreter.run(tx, ptb.Command, inputs, gas_obj.id)
            self.interpreter.check_unused(tx)
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
