"""`WalrusChain.pools`: the storage-pool reads and transactions of `chain.pools`, awaited from
trio (the work runs on the chain client's asyncio thread).

Every method may raise what a `WalrusChain` method may (`ChainUnavailable`, `ChainError`,
`WalletError`); the transactions also raise `InsufficientWal`/`InsufficientGas` before anything
is signed, `TransactionRejected`, and `MoveAbortError` (its subclass where the abort is named:
`PoolFull`, `PoolNotEmpty`, `BlobInPoolAlready`, `NotInPool`, `AlreadyCertified`, `Expired`,
`BlobNotDeletable`, `InvalidBlobId`, `PersistenceMismatch`, `IncompatibleEndEpoch`,
`InvalidPercent`, `DuplicateMetadata`, `MissingMetadata`, `NothingToExtract`, `WrongVersion`,
`QuorumNotReached`: one class for each abort of the pool contract, chain/transport.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from chain import move_types as mt
from chain import pool_transactions as ptx
from chain import pool_types as pt
from chain import pools
from chain.executor import Executor
from chain.records import TxResult
from chain.transactions import RelayTip
from chain.transport import Transport

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], Awaitable[T]]


class PoolClient:
    """One wallet's storage pools."""

    def __init__(self, run: Run[Any], rpc: Transport, tx: Executor) -> None:
        self._run = run
        self._rpc = rpc
        self._tx = tx

    # -- reads ------------------------------------------------------------------------------

    async def get(self, pool_id: str) -> pt.PoolState:
        """The pool's capacity, use and epochs.

        Raises:
            ObjectNotFound: there is no such pool (destroyed, or another network's).
        """
        state: pt.PoolState = await self._run(pools.pool(self._rpc, pool_id))
        return state

    async def owned(self) -> list[pt.PoolState]:
        """Every pool the wallet owns."""
        found: list[pt.PoolState] = await self._run(pools.owned_pools(self._rpc, self._tx.address))
        return found

    async def blob(self, state: pt.PoolState, blob_id: int) -> pt.PooledBlob | None:
        """The pool's blob of `blob_id`, None if the pool has none."""
        found: pt.PooledBlob | None = await self._run(pools.pooled_blob(self._rpc, state, blob_id))
        return found

    async def blob_object(self, object_id: str) -> pt.PooledBlob:
        """The PooledBlob object `object_id`.

        Raises:
            ObjectNotFound: deleted, burned, or never existed.
        """
        found: pt.PooledBlob = await self._run(pools.pooled_object(self._rpc, object_id))
        return found

    async def blobs(self, state: pt.PoolState) -> list[pt.PooledBlob]:
        """Every blob in the pool (its table listed, the objects read in batches)."""
        found: list[pt.PooledBlob] = await self._run(pools.pooled_blobs(self._rpc, state))
        return found

    # -- transactions -----------------------------------------------------------------------

    async def create(self, capacity: int, epochs: int) -> tuple[pt.PoolState, int]:
        """A new pool of `capacity` encoded bytes for `epochs` epochs, and the WAL paid.

        Raises:
            MoveAbortError: `EInvalidEpochsAhead` (epochs not in 1..max_epochs_ahead),
                `EInvalidResourceSize` (zero capacity), `EStorageExceeded` (the network is full).
        """
        created: tuple[pt.PoolState, int] = await self._run(
            ptx.create_pool(self._tx, capacity, epochs)
        )
        return created

    async def register(
        self,
        pool_id: str,
        blob_id: int,
        root_hash: int,
        size: int,
        *,
        deletable: bool,
        attributes: dict[str, str] | None = None,
        relay_tip: RelayTip | None = None,
    ) -> tuple[pt.PooledBlob, int, TxResult]:
        """Register a blob against the pool, growing the pool first by what it lacks (owned
        Storage ending with the pool is absorbed before new capacity is bought); attributes
        and a relay tip in the same transaction. The PooledBlob, the WAL paid, the result.

        Raises:
            BlobInPoolAlready: the pool holds this blob ID already.
            MoveAbortError: `EInvalidEpochsAhead` (the pool has expired), `EInvalidBlobId`.
        """
        registered: tuple[pt.PooledBlob, int, TxResult] = await self._run(
            ptx.register_pooled_blob(
                self._tx,
                pool_id,
                blob_id,
                root_hash,
                size,
                deletable=deletable,
                attributes=attributes or {},
                tip=relay_tip,
            )
        )
        return registered

    async def certify(
        self, pool_id: str, blob_id: int, signature: bytes, signers_bitmap: bytes, message: bytes
    ) -> TxResult:
        """Certify the pool's blob of `blob_id` with an aggregated confirmation.

        Raises:
            NotInPool: the pool holds no such blob.
            AlreadyCertified: certified before (by an earlier attempt, perhaps).
            QuorumNotReached: the signers hold fewer than 2f+1 shards.
        """
        result: TxResult = await self._run(
            ptx.certify_pooled_blob(
                self._tx,
                pool_id,
                blob_id,
                signature=signature,
                signers_bitmap=signers_bitmap,
                message=message,
            )
        )
        return result

    async def delete(self, pool_id: str, blob_ids: list[int]) -> TxResult:
        """Delete deletable blobs of the pool in one transaction (capacity back to the pool).

        Raises:
            NotInPool: one of them is not in the pool (nothing was deleted).
            MoveAbortError: `EBlobNotDeletable`, or `EInvalidEpochsAhead` (the pool expired).
        """
        result: TxResult = await self._run(ptx.delete_pooled_blobs(self._tx, pool_id, blob_ids))
        return result

    async def extend(self, pool_id: str, epochs: int) -> tuple[int, TxResult]:
        """Renew the pool, and so every blob in it, by `epochs`; the WAL paid.

        Raises:
            MoveAbortError: `EInvalidEpochsAhead` (expired, or beyond max_epochs_ahead).
        """
        extended: tuple[int, TxResult] = await self._run(ptx.extend_pool(self._tx, pool_id, epochs))
        return extended

    async def create_with_storage(self, storage_id: str) -> pt.PoolState:
        """A new pool backed by an owned Storage object (nothing paid).

        Raises:
            MoveAbortError: `EInvalidEpochsAhead` (the Storage has not started, or has
                ended), `EInvalidResourceSize` (it is empty).
        """
        created: pt.PoolState = await self._run(ptx.create_pool_with_storage(self._tx, storage_id))
        return created

    async def absorb(self, pool_id: str, storage_id: str) -> TxResult:
        """Grow the pool by an owned Storage that ends with it (nothing paid).

        Raises:
            IncompatibleEndEpoch: the Storage ends at another epoch than the pool.
            Expired: the Storage has not started.
        """
        result: TxResult = await self._run(ptx.absorb_storage(self._tx, pool_id, storage_id))
        return result

    async def shrink_by_percent(self, pool_id: str, percent: int) -> mt.Storage:
        """Take `percent` (0..100) of the pool's unused capacity out, as a Storage object.

        Raises:
            InvalidPercent: above 100.
            NothingToExtract: that is zero bytes.
        """
        storage: mt.Storage = await self._run(
            ptx.shrink_pool_by_percent(self._tx, pool_id, percent)
        )
        return storage

    async def burn_expired(self, pool_id: str, blob_ids: list[int]) -> TxResult:
        """Remove blobs of a pool that has ended (so it can be destroyed).

        Raises:
            MoveAbortError: `EInvalidEpochsAhead`, the pool has not ended.
            NotInPool: one of them is not in the pool.
        """
        result: TxResult = await self._run(ptx.burn_expired(self._tx, pool_id, blob_ids))
        return result

    async def destroy(self, pool_id: str) -> mt.Storage:
        """Destroy an empty pool; its Storage comes back to the wallet.

        Raises:
            PoolNotEmpty: it still holds blobs.
        """
        storage: mt.Storage = await self._run(ptx.destroy_pool(self._tx, pool_id))
        return storage

    async def shrink(self, pool_id: str, size: int) -> TxResult:
        """Take `size` unused bytes out of the pool, as a Storage object of the wallet.

        Raises:
            PoolFull: the pool has less than `size` unused.
            NothingToExtract: `size` is zero.
        """
        result: TxResult = await self._run(ptx.shrink_pool(self._tx, pool_id, size))
        return result
