"""The volume's storage pool: where a pooled volume registers its blobs.

A volume whose param `storage` is 'pool' keeps its blobs and quilts in one Walrus
`StoragePool` (`chain/pools.py`): uploads register against it (the pool grows in the same
transaction when it lacks room), deleting a file's blob gives its capacity back to the pool
for the next uploads, and one `extend_storage_pool` renews every blob in it
(`walrusfs/fs/lifetime.py`). The pool is created by the upload worker (the one process that
signs) when the first upload needs it, with the volume's upload epochs; its ID is the
param `pool`. A pool that has ended (renewals off, or failing for too long) takes no more
blobs (`register_pooled_blob` aborts with `EInvalidEpochsAhead`): the next upload makes a new
one, and the ended pool's files are reported lost as expired blobs are.
"""

from __future__ import annotations

import logging
import sqlite3

import trio

from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs.fs import schema
from walrusfs.fs import worker_protocol as wp

log = logging.getLogger(__name__)

#: the capacity a new pool is created with (encoded bytes): one storage unit; each upload
#: grows it by exactly what its blob lacks, so no capacity is bought before it is used
INITIAL_CAPACITY = 1 << 20

#: unused pool capacity kept at a renewal, as a fraction of the capacity in use: the
#: uploads of the next epochs use it without growing the pool (growing costs nothing more
#: than the bytes, but one renewal of spare capacity is paid for nothing if it stays unused)
POOL_SPARE = 0.10

POOL = "pool"  # the `storage` param of a pooled volume
BLOBS = "blobs"  # ... of a volume of owned Blobs (a volume made before pools: no param)


class VolumePool:
    """The pool of one volume, created on first use.

    Args:
        chain: read to see whether the pool has ended (None: never looked at).
    """

    def __init__(
        self,
        db: sqlite3.Connection,
        worker: wp.Worker,
        epochs: int,
        chain: WalrusChain | None = None,
    ) -> None:
        self.db = db
        self.worker = worker
        self.epochs = epochs
        self.chain = chain
        self._lock = trio.Lock()
        #: a pool created while its ID could not be written (a full disk): kept here, and
        #: written by the next `get`, so a retry does not buy another
        self._unsaved: str | None = None
        self._end: tuple[str, int] | None = None  # (pool, its end epoch) as last read
        self.paid = 0  # FROST the pools this process created cost (counted in status)

    @property
    def enabled(self) -> bool:
        """The volume keeps its blobs in a pool."""
        return schema.get_param(self.db, "storage") == POOL

    @property
    def known(self) -> str | None:
        """The pool's object ID, None until it is created (or for a volume without one)."""
        return self._unsaved or schema.get_param(self.db, "pool") or None

    async def get(self) -> str | None:
        """The pool to register the next blob in (created now if the volume has none yet);
        None when the volume does not use a pool.

        Raises:
            What `Worker.create_pool` raises (InsufficientWal, InsufficientGas, WorkerError).
        """
        if not self.enabled:
            return None
        async with self._lock:
            pool = self.known
            if pool is not None and await self._ended(pool):
                log.warning("the storage pool %s has ended: the next blobs go to a new one", pool)
                pool = None
            if pool is None:
                pool, paid = await self.worker.create_pool(INITIAL_CAPACITY, self.epochs)
                self.paid += paid
                log.info("created the volume's storage pool %s (%d epochs)", pool, self.epochs)
                self._unsaved = pool
            if self._unsaved is not None:
                try:
                    with schema.transaction(self.db):
                        schema.set_param(self.db, "pool", self._unsaved)
                    self._unsaved = None
                except sqlite3.OperationalError as exc:  # a full disk: written next time
                    log.warning("the storage pool %s is not recorded yet: %s", pool, exc)
            return pool

    async def _ended(self, pool: str) -> bool:
        """The pool has ended by the current epoch: one read of the epoch, and of the pool only
        when the end last read of it has come (a renewal may have moved it). A chain that
        cannot be read, or that does not know the pool yet (a full node behind the one that
        executed its creation), says no: the upload then fails on its own if it has ended,
        and a pool is never replaced while it may be alive (its blobs would go unrenewed
        until the renewer finds them: lifetime.py renews every pool a blob in use is in)."""
        if self.chain is None:
            return False
        try:
            epoch = (await self.chain.system_info()).epoch
            if self._end is None or self._end[0] != pool or self._end[1] <= epoch:
                self._end = (pool, (await self.chain.pools.get(pool)).end_epoch)
        except (chain_errors.ChainError, OSError) as exc:
            log.info("could not look at the storage pool %s: %s", pool, exc)
            return False
        return self._end[1] <= epoch
