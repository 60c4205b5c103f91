"""Signing and executing one wallet's transactions: coin selection, the money checks made
before anything is signed, the gas budget from a dry run, and the effects of the result.

Coroutines of the asyncio thread. Transactions of one wallet run one at a time on this
machine (an asyncio lock in the process, `chain.wallet_lock` across processes): they spend the
same gas and WAL coins, and a second one built from the same coin versions would be rejected
as stale, or lock the coin for the epoch when both were signed first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pysui.sui.sui_grpc.pgrpc_requests as rq
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain import errors, reads
from chain import move_types as mt
from chain import read_masks as masks
from chain.pricing import format_wal
from chain.ptb import ObjectRef, Ptb
from chain.records import SystemInfo, TxResult
from chain.transport import Transport, contents, object_ref, raise_execution_error
from chain.wallet import Keypair
from chain.wallet_lock import wallet_lock

#: Gas budget = the simulated cost plus this many computation units at the gas price, the
#: margin the Sui CLI, the TypeScript SDK and the Walrus client add (`GAS_SAFE_OVERHEAD` in
#: walrus `crates/walrus-sui/src/client/retry_client.rs`, sui `simulate/mod.rs`).
GAS_SAFE_OVERHEAD = 1000
#: The budget a transaction is simulated with: at most this (Sui's protocol maximum,
#: `MAX_GAS_BUDGET` in walrus `retriable_sui_client.rs`), at most the gas coin's balance.
MAX_GAS_BUDGET = 50_000_000_000

#: A transaction's commands: `build(ptb, info, wal)` adds them to `ptb`; `wal` is the
#: argument of the merged WAL coin, or None when the transaction takes no WAL.
Build = Callable[[Ptb, SystemInfo, Any], None]

_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "blob::Blob": mt.Blob.from_bcs,
    "storage_resource::Storage": mt.Storage.from_bcs,
}


class Executor:
    """One wallet's transactions (`key` None: read-only, every transaction is refused)."""

    def __init__(self, rpc: Transport, key: Keypair | None, gas_budget: int | None) -> None:
        self.rpc = rpc
        self.key = key
        self.address = key.address if key is not None else ""
        #: None: each transaction's budget is its simulated cost plus a margin (`_budget`)
        self.gas_budget = gas_budget
        #: Storage objects chosen by registrations under way: concurrent uploads must not
        #: pick the same one (the second transaction would name a consumed object)
        self.claimed: set[str] = set()
        self._lock: asyncio.Lock | None = None
        #: the task whose `turn` this is
        self._holder: asyncio.Task[Any] | None = None

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """This wallet's turn on the machine: read the owned objects a transaction names and
        execute it inside one turn, so no other transaction of the wallet (in this process or
        another) consumes them in between. `execute` inside a turn runs in it.

        Raises:
            WalletError: the client is read-only, or the wallet lock directory is unsafe.
        """
        if self.key is None:
            raise errors.WalletError("this chain client is read-only: it has no wallet key")
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock, wallet_lock(self.address):
            self._holder = asyncio.current_task()
            try:
                yield
            finally:
                self._holder = None

    async def execute(
        self,
        build: Build,
        wal_needed: int | None = None,
        info: SystemInfo | None = None,
        *,
        first: Callable[[Ptb], None] | None = None,
    ) -> TxResult:
        """Build with `build(ptb, info, wal coin)`, check the money, sign, execute, raise.

        Runs in the caller's `turn` when it holds one.

        Args:
            wal_needed: None: the transaction takes no WAL coin; otherwise the wallet's WAL
                coins are merged into one argument that must hold `wal_needed` FROST.
            info: the System as the caller read it (None: read here).
            first: adds what must come before anything else, even the WAL coin: an upload
                relay's tip, whose auth package the relay reads as input 0 (RelayTip).

        Raises:
            WalletError: the client is read-only, or the wallet lock directory is unsafe.
            InsufficientWal: the WAL coins hold less than `wal_needed`; nothing was signed.
            InsufficientGas: no SUI coin can pay the gas budget; nothing was signed.
            TransactionRejected: refused before execution.
            TransactionFailed: executed and failed (`MoveAbortError` for an abort).
        """
        in_turn = self._holder is not None and self._holder is asyncio.current_task()
        async with contextlib.nullcontext() if in_turn else self.turn():
            return await self._execute_locked(
                build, wal_needed, info or await reads.system_info(self.rpc), first
            )

    async def _execute_locked(
        self,
        build: Build,
        wal_needed: int | None,
        info: SystemInfo,
        first: Callable[[Ptb], None] | None = None,
    ) -> TxResult:
        assert self.key is not None  # checked by `execute`
        gas_coins = await self._coins("0x2::sui::SUI")
        if not gas_coins:
            raise errors.InsufficientGas(
                f"the wallet {self.address} holds no SUI to pay for gas: send SUI to it",
                self.gas_budget or 1,
                0,
            )
        gas = gas_coins[0]  # the largest
        ptb = Ptb()
        if first is not None:
            first(ptb)
        wal = None
        if wal_needed is not None:
            wal_coins = await self._coins(self.rpc.profile.wal_type)
            have = sum(int(c.balance or 0) for c in wal_coins)
            refs = [object_ref(c) for c in wal_coins if int(c.balance or 0) > 0]
            if have < wal_needed or not refs:
                raise errors.InsufficientWal(
                    f"this needs {format_wal(wal_needed)}, the wallet {self.address} holds "
                    f"{format_wal(have)}: send WAL to it (on devnet and testnet, swap SUI for "
                    "WAL at the exchange: `walrusfs wallet get-wal SUI`)",
                    wal_needed,
                    have,
                )
            wal = ptb.owned(refs[0])
            if len(refs) > 1:
                ptb.merge_coins(wal, [ptb.owned(r) for r in refs[1:]])
        build(ptb, info, wal)
        gas_price = await reads.gas_price(self.rpc)
        balance = int(gas.balance or 0)
        budget = self.gas_budget
        if budget is None and balance < GAS_SAFE_OVERHEAD * gas_price:
            # below Sui's least budget (`base_tx_cost_fixed` units): not even a dry run runs
            raise errors.InsufficientGas(
                f"no SUI coin of {self.address} holds the least gas budget of "
                f"{GAS_SAFE_OVERHEAD * gas_price} MIST (largest holds {balance}): send SUI to it",
                GAS_SAFE_OVERHEAD * gas_price,
                balance,
            )
        if budget is None:
            budget = await self._budget(
                ptb, object_ref(gas), gas_price, min(balance, MAX_GAS_BUDGET)
            )
        if balance < budget:
            raise errors.InsufficientGas(
                f"this transaction needs a gas budget of {budget} MIST; the largest SUI coin of "
                f"{self.address} holds {balance}: send SUI to it",
                budget,
                balance,
            )
        tx_bytes = ptb.build(self.address, object_ref(gas), gas_price, budget)
        return await self.execute_signed(tx_bytes, [self.key.sign_transaction(tx_bytes)])

    async def _coins(self, type_: str) -> list[pb.Object]:
        """The wallet's coins of `type_`, largest first."""
        return sorted(
            await reads.owned(self.rpc, self.address, f"0x2::coin::Coin<{type_}>"),
            key=lambda o: int(o.balance or 0),
            reverse=True,
        )

    async def _budget(self, ptb: Ptb, gas: ObjectRef, gas_price: int, ceiling: int) -> int:
        """The gas budget: the cost of a dry run (`SimulateTransaction`, nothing signed or
        spent) plus `GAS_SAFE_OVERHEAD` units, the formula of the Sui CLI, TypeScript SDK and
        Walrus client (`compute_gas_budget` in walrus `retriable_sui_client.rs`): the larger
        of computation and computation + storage - rebate, plus the margin. A dry run that
        fails still prices the attempt: the transaction is then executed with that budget, so
        the chain reports its failure (and charges it, as Sui charges it)."""
        tx_bytes = ptb.build(self.address, gas, gas_price, ceiling)
        reply = await self.rpc.call(
            rq.SimulateTransaction(
                transaction=tx_bytes,
                checks_enabled=True,
                gas_selection=False,
                field_mask=list(masks.SIMULATED),
            )
        )
        effects = reply.transaction.effects if reply.transaction is not None else None
        if effects is None or effects.gas_used is None:
            raise errors.ChainError("the dry run of the transaction came back without its cost")
        used = effects.gas_used
        computation = int(used.computation_cost or 0)
        net = computation + int(used.storage_cost or 0) - int(used.storage_rebate or 0)
        return max(computation, net) + GAS_SAFE_OVERHEAD * gas_price

    async def execute_signed(self, tx_bytes: bytes, signatures: list[bytes]) -> TxResult:
        """Execute signed transaction bytes; its result, or the error it failed with.

        Raises:
            TransactionRejected: refused before execution.
            TransactionFailed: executed and failed (`MoveAbortError` for an abort).
        """
        executed = await self.rpc.call(
            rq.ExecuteTransaction(
                tx_bytestr=tx_bytes, sig_array=signatures, field_mask=list(masks.EXECUTED)
            )
        )
        return tx_result(executed)

    async def owned_object(self, object_id: str) -> pb.Object:
        """The object, which the wallet must own.

        Raises:
            ObjectNotFound: it does not exist, or the wallet does not own it.
        """
        obj = await self.rpc.object(object_id)
        if obj.owner is None or obj.owner.address != self.address:
            raise errors.ObjectNotFound(f"{object_id} is not owned by {self.address}")
        return obj

    async def owned_ref(self, object_id: str) -> ObjectRef:
        return object_ref(await self.owned_object(object_id))


def _short_type(type_: str) -> str:
    """`0x..::blob::Blob` -> `blob::Blob`; `0x2::coin::Coin<...>` -> `coin::Coin`."""
    return "::".join(type_.split("<", 1)[0].split("::")[-2:])


def tx_result(executed: pb.ExecutedTransaction) -> TxResult:
    """The digest, gas, new objects and events of an executed transaction, or the error of
    one that failed.

    Raises:
        TransactionFailed: it failed (`MoveAbortError` for an abort).
        ChainError: the reply carries no effects.
    """
    effects = executed.effects
    digest = executed.digest or ""
    if effects is None or effects.status is None or effects.gas_used is None:
        raise errors.ChainError(f"transaction {digest}: the reply carries no effects")
    gas = effects.gas_used
    gas_used = (
        int(gas.computation_cost or 0) + int(gas.storage_cost or 0) - int(gas.storage_rebate or 0)
    )
    if not effects.status.success:
        raise_execution_error(digest, effects.status.error)
    # New to the ledger: created, or unwrapped (a Storage coming back out of a Blob).
    new_ids = {
        c.object_id
        for c in effects.changed_objects
        if c.input_state == pb.ChangedObjectInputObjectState.DOES_NOT_EXIST
        and c.output_state == pb.ChangedObjectOutputObjectState.OBJECT_WRITE
    }
    created: dict[str, list[Any]] = {}
    for obj in executed.objects.objects if executed.objects else []:
        if obj.object_id not in new_ids:
            continue
        short = _short_type(obj.object_type or "")
        decoder = _DECODERS.get(short)
        created.setdefault(short, []).append(decoder(contents(obj)) if decoder else obj)
    events = [
        (e.event_type or "", bytes(e.contents.value or b"") if e.contents else b"")
        for e in (executed.events.events if executed.events else [])
    ]
    return TxResult(digest, gas_used, created, events)
