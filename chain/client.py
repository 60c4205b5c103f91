"""The Walrus chain client: pysui's gRPC client on its own asyncio thread, awaited from trio.

`WalrusChain` is what the rest of walrusfs uses. Every public method is a coroutine that trio
code awaits; the work (gRPC calls, BCS, signing) runs on the `AsyncioThread`, so the FUSE loop
is never blocked. The same code serves devnet (the stand-in), testnet and mainnet: only the
`NetworkProfile` differs.

Money is checked before it is spent: `register_blob` and `extend_blob` compute the exact WAL
price from the System object (Move formulas, `chain.pricing`) and refuse with
`InsufficientWal`/`InsufficientGas` before anything is signed. Storage is reused the way the
Walrus client does it (`chain.storage_reuse`).

The work is done by the modules this one re-exports from (docs/chain.md, "Modules"):
`chain.profiles`, `chain.records`, `chain.transport`, `chain.reads`, `chain.checkpoints`,
`chain.storage_reuse`, `chain.executor` and `chain.transactions`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Coroutine
from typing import Any, TypeVar

import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from pysui import GrpcProtocolClient

from chain import checkpoints, errors, pools, reads, transactions
from chain import move_types as mt
from chain.aio_bridge import AsyncioThread
from chain.executor import GAS_SAFE_OVERHEAD, MAX_GAS_BUDGET, Build, Executor
from chain.pool_client import PoolClient
from chain.profiles import MAINNET, PROFILES, TESTNET, NetworkProfile, devnet_profile
from chain.ptb import ObjectRef
from chain.reads import ATTRIBUTE_READS, OBJECT_BATCH, OWNED_PAGE_SIZE
from chain.records import (
    Balances,
    ChainEvent,
    CommitteeMember,
    CostEstimate,
    PastTransaction,
    SystemInfo,
    TxResult,
)
from chain.transactions import RelayTip
from chain.transport import Transport, object_ref
from chain.wallet import Keypair
from codec.bcs import Reader

__all__ = [
    "ATTRIBUTE_READS",
    "GAS_SAFE_OVERHEAD",
    "MAINNET",
    "MAX_GAS_BUDGET",
    "OBJECT_BATCH",
    "OWNED_PAGE_SIZE",
    "PROFILES",
    "TESTNET",
    "Balances",
    "ChainEvent",
    "CommitteeMember",
    "CostEstimate",
    "NetworkProfile",
    "SystemInfo",
    "TxResult",
    "WalrusChain",
    "devnet_profile",
]

T = TypeVar("T")


class WalrusChain:
    """Walrus on Sui, for one wallet key (None: read-only, as a storage node following the
    chain is).

    Any method may raise `ChainUnavailable` (the endpoint did not answer; a retry may work)
    or `ChainError` (an answer it cannot use); what else a method raises is named on it. On
    a read-only client, methods that need the wallet's address or key raise `WalletError`.
    """

    def __init__(
        self,
        profile: NetworkProfile,
        key: Keypair | None,
        bridge: AsyncioThread | None = None,
        gas_budget: int | None = None,
    ) -> None:
        self.profile = profile
        self.key = key
        self._rpc = Transport(profile, bridge)
        self.bridge = self._rpc.bridge
        self._tx = Executor(self._rpc, key, gas_budget)
        self.address = self._tx.address
        #: storage pools: reads and transactions (`chain.pool_client`)
        self.pools = PoolClient(self._run, self._rpc, self._tx)

    @property
    def gas_budget(self) -> int | None:
        """None: each transaction's budget is its simulated cost plus a margin."""
        return self._tx.gas_budget

    async def close(self) -> None:
        await self._rpc.close()

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the asyncio thread."""
        return await self._rpc.run(coro)

    # -- coroutines of the asyncio thread, for callers that compose their own calls and hand
    # -- them to `_run` (walrusfs.store.nodes, walrusfs.devnet.shared)

    async def _grpc(self) -> GrpcProtocolClient:
        return await self._rpc.grpc()

    async def _call(self, request: Any) -> Any:
        return await self._rpc.call(request)

    async def _versioned_inner(self, root_id: str) -> tuple[pb.Object, mt.VersionedRoot, Reader]:
        return await reads.versioned_inner(self._rpc, root_id)

    # -- reads ------------------------------------------------------------------------------

    async def system_info(self) -> SystemInfo:
        """Epoch, shards, prices, capacity and the committee's keys, from the System object."""
        return await self._run(reads.system_info(self._rpc))

    async def committee(self) -> list[CommitteeMember]:
        """The storage nodes, their shards and network addresses (Staking + StakingPools).

        Raises:
            ChainError: the System's BLS committee and the Staking committee disagree (as
                when read during an epoch change), or a pool describes another node.
        """
        return await self._run(reads.committee(self._rpc))

    async def staking_state(self) -> tuple[mt.StakingInnerV1, dict[str, mt.StakingPool]]:
        """The Staking state and the pools of the current and previous committee."""
        return await self._run(reads.staking_state(self._rpc))

    async def balances(self) -> Balances:
        return await self._run(reads.balances(self._rpc, self.address))

    async def transaction(self, digest: str) -> PastTransaction:
        """An executed transaction: when, its first input, its balance changes.

        Raises:
            ObjectNotFound: no transaction of that digest.
        """
        return await self._run(reads.transaction(self._rpc, digest))

    async def blobs(self, valid_only: bool = True, *, pooled: bool = True) -> list[mt.Blob]:
        """Owned Blob objects and (`pooled`) the blobs of the wallet's storage pools, seen as
        Blobs (`mt.Blob.pool` names their pool: they are extended and deleted through it);
        `valid_only` drops those whose end epoch has passed."""
        found = await self._run(reads.blobs(self._rpc, self.address, valid_only))
        if pooled:
            found += await self._run(pools.pooled_as_blobs(self._rpc, self.address, valid_only))
        return found

    async def storage_resources(self, valid_only: bool = True) -> list[mt.Storage]:
        async def go() -> list[mt.Storage]:
            info = await reads.system_info(self._rpc)
            return await reads.storages(self._rpc, self.address, info, valid_only)

        return await self._run(go())

    async def blob(self, object_id: str) -> mt.Blob:
        """The Blob object `object_id`, by whoever owns it.

        Raises:
            ObjectNotFound: no such object (deleted, or never existed).
        """
        return await self._run(reads.blob(self._rpc, object_id))

    async def attributes(self, blob_object_id: str) -> dict[str, str]:
        """The blob's attributes (its `metadata` dynamic field); {} when it has none."""
        return await self._run(reads.attributes(self._rpc, blob_object_id))

    async def attributes_of(self, blob_object_ids: list[str]) -> dict[str, dict[str, str]]:
        """The attributes of many blobs, fetched concurrently (one request each; listing a
        wallet's volumes reads them all)."""
        return await self._run(reads.attributes_of(self._rpc, blob_object_ids))

    async def estimate(self, size: int, epochs: int) -> CostEstimate:
        """What storing `size` bytes for `epochs` epochs costs now, reusing owned Storage.

        Args:
            size: the unencoded blob size in bytes (the price is of its encoded size).

        Raises:
            ValueError: `epochs` is not within 1..`max_epochs_ahead`.
            codec.DataTooLarge: `size` exceeds the largest blob of this shard count.
        """

        async def go() -> CostEstimate:
            info = await reads.system_info(self._rpc)
            return await reads.estimate(
                self._rpc, self.address, info, size, epochs, claimed=self._tx.claimed
            )

        return await self._run(go())

    async def object_ref(self, object_id: str) -> ObjectRef:
        """The current reference (ID, version, digest) of an object."""
        return object_ref(await self._run(self._rpc.object(object_id)))

    async def gas_price(self) -> int:
        return await self._run(reads.gas_price(self._rpc))

    # -- checkpoints ------------------------------------------------------------------------

    async def latest_checkpoint(self) -> int:
        """The sequence number of the newest checkpoint."""
        return await self._run(checkpoints.latest_checkpoint(self._rpc))

    def checkpoint_stream(self) -> AsyncGenerator[int]:
        """The sequence number of every checkpoint from the chain's tip on, as it is executed
        (`SubscriptionService.SubscribeCheckpoints`): what a follower waits on instead of
        polling. Never ends by itself; a broken stream raises `ChainUnavailable`, after which
        the follower catches up with `checkpoint_events` and subscribes again."""
        return checkpoints.checkpoint_stream(self._rpc)

    async def checkpoint_events(self, seq: int, package: str) -> list[ChainEvent] | None:
        """The events that `package`'s modules emitted in checkpoint `seq` (None: not yet).

        Only events of the given package count: anyone can publish a module with a struct
        named `BlobRegistered`, so a follower must filter by the Walrus type package."""
        return await self._run(checkpoints.checkpoint_events(self._rpc, seq, package))

    # -- transactions -------------------------------------------------------------------------

    async def register_blob(
        self,
        blob_id: int,
        root_hash: int,
        size: int,
        epochs: int,
        *,
        deletable: bool = True,
        attributes: dict[str, str] | None = None,
        relay_tip: RelayTip | None = None,
    ) -> tuple[mt.Blob, CostEstimate, TxResult]:
        """One transaction: reuse (or reserve) Storage, register the blob, set attributes.

        Args:
            blob_id: the blob ID as the u256 the contract takes (`BlobId.to_u256`).
            root_hash: the metadata's Merkle root, its bytes read as a little-endian u256.
            size: the unencoded size in bytes.
            epochs: how many epochs from the current one the blob is stored.
            attributes: set on the Blob in the same transaction (None: none).
            relay_tip: an upload relay's tip, paid in the same transaction (its digest is
                what the relay is told).

        Returns:
            The new Blob, the cost charged (with the Storage reused, if any) and the result.

        Raises:
            ValueError: `epochs` is not within 1..`max_epochs_ahead`.
            codec.DataTooLarge: `size` exceeds the largest blob of this shard count.
            InsufficientWal, InsufficientGas: before anything was signed.
            TransactionRejected: refused before execution (a stale coin, say).
            MoveAbortError: the contract refused (e.g. `EStorageExceeded`); gas was charged.
        """
        return await self._run(
            transactions.register_blob(
                self._tx,
                blob_id,
                root_hash,
                size,
                epochs,
                deletable=deletable,
                attributes=attributes or {},
                tip=relay_tip,
            )
        )

    async def certify_blob(
        self, blob_object_id: str, signature: bytes, signers_bitmap: bytes, message: bytes
    ) -> TxResult:
        """Certify with an aggregated confirmation (a quorum of the committee's shards).

        Args:
            signature: the aggregated BLS signature of the signers.
            signers_bitmap: bit i set for the member at position i of the BLS committee.
            message: the confirmation message all of them signed.

        Raises:
            ObjectNotFound: the wallet does not own `blob_object_id`.
            QuorumNotReached: the signers hold fewer than 2f+1 shards.
            AlreadyCertified: certified before (by an earlier attempt, perhaps).
            Expired: the blob's storage has ended.
            MoveAbortError: any other refusal (wrong epoch, blob ID or signature).
        """
        return await self._run(
            transactions.certify_blob(self._tx, blob_object_id, signature, signers_bitmap, message)
        )

    async def extend_blob(self, blob_object_id: str, epochs: int) -> tuple[int, TxResult]:
        """Extend by `epochs`; returns the WAL paid (FROST). Checks the price and balance
        first.

        Raises:
            ObjectNotFound: the wallet does not own `blob_object_id`.
            InsufficientWal, InsufficientGas: before anything was signed.
            NotCertified, Expired: the blob cannot be extended.
            MoveAbortError: any other refusal (beyond `max_epochs_ahead`, say).
        """
        return await self._run(transactions.extend_blob(self._tx, blob_object_id, epochs))

    async def delete_blob(self, blob_object_id: str) -> mt.Storage:
        """Delete a deletable blob; its Storage comes back to the wallet for reuse.

        Raises:
            ObjectNotFound: the wallet does not own `blob_object_id` (or it is gone).
            Expired: the blob has expired.
            MoveAbortError: `EBlobNotDeletable`, the blob is permanent.
        """
        return await self._run(transactions.delete_blob(self._tx, blob_object_id))

    async def set_attributes(self, blob_object_id: str, pairs: dict[str, str]) -> TxResult:
        """Insert or update the blob's attributes.

        Raises:
            ObjectNotFound: the wallet does not own `blob_object_id`.
        """
        return await self._run(transactions.set_attributes(self._tx, blob_object_id, pairs))

    async def remove_attributes(self, blob_object_id: str, keys: list[str]) -> TxResult:
        """Remove the keys that exist (absent keys are not an error).

        Raises:
            ObjectNotFound: the wallet does not own `blob_object_id`.
            MoveAbortError: `EMissingMetadata`, the blob has no attributes at all.
        """
        return await self._run(transactions.remove_attributes(self._tx, blob_object_id, keys))

    async def get_wal(self, mist: int) -> TxResult:
        """Swap `mist` of SUI for WAL at the exchange (devnet and testnet only).

        Raises:
            ChainError: this network has no exchange (mainnet).
            InsufficientGas: the wallet holds no more SUI than `mist`, which leaves no gas.
            MoveAbortError: the exchange holds too little WAL.
        """
        if not self.profile.exchange_objects:
            raise errors.ChainError(f"{self.profile.name} has no WAL exchange: buy WAL instead")
        return await self._run(transactions.get_wal(self._tx, mist))

    async def execute_ptb(self, build: Build, wal_needed: int | None = None) -> TxResult:
        """Run a caller-built PTB with the same coin selection, money checks and errors.

        Args:
            build: adds the commands: `build(ptb, info, wal)`, where `wal` is the argument of
                the wallet's WAL coins merged into one (None when `wal_needed` is None).
            wal_needed: the FROST the transaction spends; None: it takes no WAL coin.

        Raises:
            InsufficientWal, InsufficientGas: before anything was signed.
            TransactionRejected: refused before execution.
            TransactionFailed: executed and failed (`MoveAbortError` for an abort).
        """
        return await self._run(self._tx.execute(build, wal_needed))

    async def execute_signed(self, tx_bytes: bytes, signatures: list[bytes]) -> TxResult:
        """Submit a transaction signed elsewhere (offline signing, multi-party flows).

        Raises:
            TransactionRejected: refused before execution (bad signature, stale object).
            TransactionFailed: executed and failed (`MoveAbortError` for an abort).
        """
        return await self._run(self._tx.execute_signed(tx_bytes, signatures))
