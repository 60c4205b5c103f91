"""Blob lifetime: extend blobs before their end epoch, and say so loudly when that fails.

Every Walrus blob is paid for until an end epoch; after it the nodes may drop its slivers and
the file is gone. The blobs of a volume's storage pool end with the pool, and one extension of
the pool renews them all (unused capacity is taken out of it first, so the renewal pays for
what the volume holds). The renewer checks the volume's blobs every `interval` seconds and at every
`walrusfs sync`: blobs whose end epoch is within `horizon` epochs are extended by `epochs`
(paid in WAL by the upload worker, the one process that sends transactions). Blobs within
`warn_horizon` that are not being renewed (renewals off, or failing for lack of WAL) are
reported in `walrusfs status` and in the log at every check, long before they expire.

Policy per volume (params `renew`, `renew_horizon`, `renew_epochs`), set by `walrusfs mount
--renew-horizon N --renew-epochs N --no-renew` and kept for the next mounts.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

import trio

from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs.fs import blobs, schema
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.defaults import DEFAULTS
from walrusfs.fs.pool import VolumePool
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenewPolicy:
    enabled: bool = DEFAULTS.renew
    horizon: int = DEFAULTS.renew_horizon  # extend blobs ending within this many epochs
    epochs: int = DEFAULTS.epochs  # by this many epochs

    @property
    def warn_horizon(self) -> int:
        return self.horizon + max(2, self.horizon)

    @classmethod
    def of_volume(
        cls,
        db: sqlite3.Connection,
        *,
        enabled: bool | None,
        horizon: int | None,
        epochs: int | None,
        default_epochs: int,
    ) -> RenewPolicy:
        """The volume's stored policy, with the given values (not None) replacing it; the
        result is stored back.

        Args:
            horizon: extend blobs ending within this many epochs.
            epochs: extend them by this many epochs.
            default_epochs: `epochs` when neither given nor stored (the upload epochs).
        """
        stored_on = schema.get_param(db, "renew")
        stored_h = schema.get_param(db, "renew_horizon")
        stored_e = schema.get_param(db, "renew_epochs")
        policy = cls(
            enabled if enabled is not None else stored_on != "0",
            horizon if horizon is not None else int(stored_h or cls.horizon),
            epochs if epochs is not None else int(stored_e or default_epochs),
        )
        schema.set_param(db, "renew", "1" if policy.enabled else "0")
        schema.set_param(db, "renew_horizon", str(policy.horizon))
        schema.set_param(db, "renew_epochs", str(policy.epochs))
        return policy


class Renewer:
    def __init__(
        self,
        db: sqlite3.Connection,
        worker: wp.Worker,
        chain: WalrusChain,
        policy: RenewPolicy,
        *,
        interval: float = 600.0,
        pool: VolumePool | None = None,
    ) -> None:
        self.db = db
        #: the volume's storage pool: its blobs are renewed by one extension of the pool
        self.pool = pool
        self.worker = worker
        self.chain = chain
        self.policy = policy
        self.interval = interval
        self.epoch: int | None = None
        self.extended = 0
        self.pool_renewals = 0  # transactions that renewed the pool
        self.wal_spent = 0
        self.last_error: str | None = None
        self.expiring: tuple[int, int | None] = (0, None)  # (blobs, earliest end epoch)
        self._lock = trio.Lock()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.check()
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("blob renewal check failed (retried): %s", exc)
            await trio.sleep(self.interval)

    def describe(self, blob_row: int) -> str:
        """The files a blob holds, for log lines (three named at most)."""
        files = schema.files_of_blob(self.db, blob_row, limit=4)
        if not files:
            return "no file (the metadata checkpoint, or an unused blob)"
        return ", ".join(files[:3]) + (" and more" if len(files) > 3 else "")

    def expired(self, blob_row: int) -> int | None:
        """The end epoch of a blob that has expired by the last known epoch, else None."""
        if self.epoch is None:
            return None
        end = blobs.end_epoch(self.db, blob_row)
        return end if end is not None and end <= self.epoch else None

    async def check(self) -> None:
        """Read the epoch, extend the blobs in use ending within the horizon (when renewals
        are on) and count those at risk. A failed extension ends the pass and is kept in
        `last_error`, not raised.

        Raises:
            chain.errors.ChainError: the epoch could not be read.
        """
        async with self._lock:
            info = await self.chain.system_info()
            self.epoch = epoch = info.epoch
            if self.policy.enabled:
                await self._renew(epoch)
            self._report(epoch)

    async def _renew(self, epoch: int) -> None:
        """Every pool a blob in use is in (the volume's, and any earlier one: a pool that
        ended and was replaced, one a crash left unrecorded, one a rebuild found), then the
        owned blobs due; a failure of one is kept in `last_error` and the others go on."""
        failed = False
        for pool in blobs.pools_in_use(self.db):
            failed |= not await self._renew_pool(pool, epoch)
        failed |= not await self._renew_owned(epoch)
        if not failed:
            self.last_error = None

    async def _renew_owned(self, epoch: int) -> bool:
        for row in blobs.due_for_renewal(self.db, epoch, self.policy.horizon):
            object_id, end_epoch = row.object_id, row.end_epoch
            try:
                answer = await self.worker.extend(object_id, self.policy.epochs)
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                self.last_error = str(exc)
                log.error(
                    "cannot extend blob %s (ends at epoch %d, now %d; holds %s): %s",
                    object_id,
                    end_epoch,
                    epoch,
                    self.describe(row.id),
                    exc,
                )
                return False
            blobs.set_end_epoch(self.db, row.id, answer.end_epoch)
            self.extended += 1
            self.wal_spent += answer.paid
            log.info("extended blob %s from epoch %d to %d", object_id, end_epoch, answer.end_epoch)
        return True

    async def _renew_pool(self, pool: str, epoch: int) -> bool:
        """Extend the pool when it ends within the horizon: one transaction renews every
        blob in it (`storage_pool.move` `extend_storage_pool`). The end is the chain's, not the
        rows' (a crash between an extension and its rows, or a restore of an older checkpoint,
        leaves them behind: they are brought up to it, never extended twice for it). False
        when that failed (kept in `last_error`)."""
        try:
            end = (await self.chain.pools.get(pool)).end_epoch
        except (chain_errors.ChainError, OSError) as exc:
            self.last_error = f"storage pool {pool}: {exc}"
            log.error("cannot read the storage pool %s: %s", pool, exc)
            return False
        if end <= epoch:
            return True  # ended: its blobs are reported expired (`_report`), not renewable
        blobs.set_pool_end(self.db, pool, end)
        if end - epoch > self.policy.horizon:
            return True
        try:
            answer = await self.worker.extend_pool(pool, self.policy.epochs)
        except (StoreError, chain_errors.ChainError, OSError) as exc:
            self.last_error = str(exc)
            log.error(
                "cannot extend the storage pool %s (ends at epoch %d, now %d): %s",
                pool,
                end,
                epoch,
                exc,
            )
            return False
        count = blobs.set_pool_end(self.db, pool, answer.end_epoch)
        self.extended += count
        self.wal_spent += answer.paid
        self.pool_renewals += 1
        log.info(
            "extended the storage pool %s (%d blobs) from epoch %d to %d",
            pool,
            count,
            end,
            answer.end_epoch,
        )
        return True

    def _report(self, epoch: int) -> None:
        """Count the blobs in use that are at risk: within the warning horizon while nothing
        renews them (renewals off or failing), and any already expired."""
        renewing = self.policy.enabled and self.last_error is None
        horizon = 0 if renewing else self.policy.warn_horizon
        self.expiring = count, earliest = blobs.expiring(self.db, epoch, horizon)
        if not count:
            return
        why = (
            f"renewal fails: {self.last_error}"
            if self.policy.enabled
            else "renewals are off for this volume (mount with --renew to turn them on)"
        )
        log.warning(
            "%d blob(s) expire by epoch %d (now %d) and their files are lost then: %s",
            count,
            earliest,
            epoch,
            why if not renewing else "they could not be renewed in time",
        )
