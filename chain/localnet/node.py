"""The stand-in chain: one ledger with the Walrus deployment in it, executing and simulating
transactions, its Walrus epochs, and the devnet's admin operations. The work is in
`genesis`, `epochs`, `admin`, `gas_selection` and `replies`; `Localnet` is what the server and
the devnet launcher hold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import base58
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from pysui.sui.sui_bcs import bcs

from chain.localnet import admin, epochs
from chain.localnet.admin import InvalidBlobID, sync_done_message
from chain.localnet.epochs import EpochChangeInProgress
from chain.localnet.errors import TxRejected
from chain.localnet.executor import Executor
from chain.localnet.gas_selection import estimated_budget, select_gas
from chain.localnet.genesis import GenesisConfig, NodeSpec, write_genesis
from chain.localnet.ledger import Ledger
from chain.localnet.moves import build_functions
from chain.localnet.moves.deployment import Deployment
from chain.localnet.packages import Packages
from chain.localnet.replies import executed_transaction
from chain.localnet.state import ChainState

#: names the devnet imports from here
__all__ = [
    "EpochChangeInProgress",
    "GenesisConfig",
    "InvalidBlobID",
    "Localnet",
    "NodeSpec",
    "sync_done_message",
]


@dataclass
class Localnet(ChainState):
    """One stand-in chain over one ledger file."""

    executor: Executor = field(init=False)
    packages: Packages = field(init=False)

    def __post_init__(self) -> None:
        gas_price = int(self.ledger.meta("reference_gas_price") or "1000")
        dep = self.deployment
        self.packages = Packages(
            {"walrus": dep.walrus_pkg, "wal": dep.wal_pkg, "wal_exchange": dep.exchange_pkg}
        )
        self.executor = Executor(
            self.ledger,
            dep.decode,
            build_functions(dep),
            gas_price,
            self.walrus_epoch,
            published=self.packages.has_function,
        )

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Localnet:
        """Open an existing ledger (genesis done).

        Raises:
            FileNotFoundError: the ledger has no genesis (not a devnet ledger).
        """
        ledger = Ledger(path)
        values = {
            k: ledger.meta(k)
            for k in (
                "walrus_pkg",
                "wal_pkg",
                "exchange_pkg",
                "system_id",
                "staking_id",
                "exchange_id",
            )
        }
        if any(v is None for v in values.values()):
            ledger.close()
            raise FileNotFoundError(f"{path} is not a devnet ledger (no genesis)")
        return cls(ledger, Deployment(**values))  # type: ignore[arg-type]

    @classmethod
    def genesis(cls, path: Path, config: GenesisConfig) -> Localnet:
        """Create the ledger: packages, System, Staking, Exchange, pools and funded coins."""
        ledger, dep = write_genesis(path, config)
        return cls(ledger, dep)

    def close(self) -> None:
        self.ledger.close()

    def chain_id(self) -> str:
        """The chain identifier: as on Sui, the base58 digest of the genesis checkpoint
        (sui-types `ChainIdentifier`, which `GetServiceInfo.chain_id` prints), checkpoint 0
        here. Derived from the System object's ID, which genesis chose from its seed."""
        digest = hashlib.blake2b(
            b"CheckpointSummary::genesis::" + bytes.fromhex(self.deployment.system_id[2:]),
            digest_size=32,
        ).digest()
        return str(base58.b58encode(digest).decode())

    # -- epochs -----------------------------------------------------------------------------

    def tick(self, now_ms: int | None = None) -> int:
        """Advance past every epoch whose time is up; returns the current epoch."""
        return epochs.tick(self, now_ms)

    def next_epoch_ms(self) -> int | None:
        """When the next epoch starts by the clock (ms since 1970); None if never."""
        return epochs.next_epoch_ms(self)

    def advance_epoch(self, count: int = 1) -> int:
        """Admin: start the next epoch now (`count` times). Returns the new epoch.

        Raises:
            EpochChangeInProgress: the previous change still waits for nodes to attest.
        """
        return epochs.advance_epoch(self, count)

    # -- devnet admin -----------------------------------------------------------------------

    def set_stake(self, node_id: str, stake: int) -> None:
        """See `admin.set_stake`."""
        admin.set_stake(self, node_id, stake)

    def epoch_sync_done(self, node_id: str, epoch: int, signature: bytes) -> bool:
        """See `admin.epoch_sync_done`."""
        return admin.epoch_sync_done(self, node_id, epoch, signature)

    def invalidate_blob(self, blob_id: int) -> str:
        """See `admin.invalidate_blob`."""
        return admin.invalidate_blob(self, blob_id)

    # -- transactions -----------------------------------------------------------------------

    def execute(self, tx_bytes: bytes, signatures: list[bytes]) -> pb.ExecutedTransaction:
        """Execute and commit, in a checkpoint of its own. A failed execution is a reply
        with an error (and its gas charged).

        Raises:
            TxRejected: the transaction is invalid; nothing changed.
        """
        with self.ledger.lock:
            self.tick()
            outcome = self.executor.execute(tx_bytes, signatures)
            written = [after for _, _, after, _ in outcome.changed if after is not None]
            deleted = [obj.id for obj, _, after, _ in outcome.changed if after is None]
            reply = executed_transaction(tx_bytes, signatures, outcome, self.walrus_epoch())
            seq = self.ledger.apply(written, deleted, tx=(outcome.digest, bytes(reply)))
            reply.checkpoint = seq
            return reply

    def simulate(
        self, tx_bytes: bytes, *, gas_selection: bool, estimate_budget: bool, payment_given: int
    ) -> pb.ExecutedTransaction:
        """Dry-run: the effects the transaction would have; nothing is written.

        As a full node simulates (sui `simulate/mod.rs`, `simulate_transaction`): with
        `gas_selection`, a budget the client did not give (`estimate_budget`) is estimated from
        a run paid by a mock gas coin (`estimate_gas_budget`), and a transaction without gas
        payment gets every SUI coin of its gas owner that is not an input (`select_gas`); then
        it runs as it would execute. Without gas selection, a transaction without payment is
        run with the mock coin. The reply's transaction is the one simulated (resolved).

        Args:
            payment_given: how many gas coins the client's request named (those count
                toward the estimated budget's loading cost).

        Raises:
            TxRejected: the transaction is invalid, or its budget is below the estimate.
        """
        with self.ledger.lock:
            self.tick()
            data = bcs.TransactionData.deserialize(tx_bytes)
            v1 = data.value
            gas = v1.GasData
            price = int(gas.Price)
            if gas_selection:
                if estimate_budget:
                    estimate = estimated_budget(self.executor, data, price, payment_given)
                    if int(gas.Budget) < estimate:
                        raise TxRejected(
                            "Insufficient gas balance to cover estimated transaction cost. "
                            f"Available gas balance: {gas.Budget} MIST. "
                            f"Estimated gas budget required: {estimate} MIST"
                        )
                    gas.Budget = estimate
                if not gas.Payment:
                    select_gas(self.ledger, v1, price if estimate_budget else None)
                tx_bytes = bytes(data.serialize())
                outcome = self.executor.simulate(tx_bytes)
            else:
                outcome = self.executor.simulate(tx_bytes, mock_gas=True)
            return executed_transaction(tx_bytes, [], outcome, self.walrus_epoch())
