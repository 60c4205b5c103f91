"""The volume's storage pool: where a pooled volume registers its blobs.

A volume whose param `storage` is 'pool' keeps its blobs and quilts in one Walrus
`StoragePool` (`chain/pools.py`): uploads register against it (the pool grows in the same
transaction when it lacks room), deleting a file's blob gives its capacity back to the pool
for the next uploads, and one `extend_storage_pool` renews every blob in it
(`walrusfs/fs/lifetime.py`). The pool is created by the upload worker (the one process that
signs) when the first upload needs it, with the volume's upload epochs; its ID is the
param `pool`.
"""

from __future__ import annotations

import logging
import sqlite3

import trio

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
    """The pool of one volume, created on first use."""

    def __init__(self, db: sqlite3.Connection, worker: wp.Worker, epochs: int) -> None:
        self.db = db
        self.worker = worker
        self.epochs = epochs
        self._lock = trio.Lock()

    @property
    def enabled(self) -> bool:
        """The volume keeps its blobs in a pool."""
        return schema.get_param(self.db, "storage") == POOL

    @property
    def known(self) -> str | None:
        """The pool's object ID, None until it is created (or for a volume without one)."""
        return schema.get_param(self.db, "pool") or None

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
            if pool is None:
                pool = await self.worker.create_pool(INITIAL_CAPACITY, self.epochs)
                with schema.transaction(self.db):
                    schema.set_param(self.db, "pool", pool)
                log.info("created the volume's storage pool %s (%d epochs)", pool, self.epochs)
            return pool
