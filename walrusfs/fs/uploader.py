"""Moves staged chunks to Walrus, and deletes blobs no file uses any more.

A staged chunk is uploaded once it has been idle for `delay` seconds and its file is closed
(or the chunk is full: a file being written for a long time uploads as it goes). Single-chunk
files up to `quilt_threshold` bytes are batched into quilts (one blob, one registration and
one certificate for up to k_s - 1 files, quilts.py); other chunks become one blob each.
rsync's temp-file-then-rename costs one upload: a rename changes a dentry, not the inode's
chunks. This module decides when; a job (uploads.py) uploads, and commits.py records.

Order, never violated: blob certified -> the chunk row points at it (one transaction) -> the
staging file is removed. If the chunk changed while it was uploading (its generation moved
on), the new blob is left unreferenced and deleted like any unused blob.

Failures: a failure backs off the chunks of that job (15 s doubling to 5 min); other chunks
go on, unless the failure says every upload would fail now (no WAL, nodes unreachable),
which pauses all uploads for the back-off. A failed upload that registered a Blob is retried
as it was (plans.py); if a chunk of it changes or goes, the registration is abandoned
(deleted, its Storage returns to the wallet).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio

import codec
from cache import Key
from chain import errors as chain_errors
from walrusfs.fs import blobs, crypto
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.commits import Committer, DiskFull
from walrusfs.fs.compaction import COMPACT_INTERVAL, Compactor
from walrusfs.fs.content import Content
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.plans import Attempts, Plan, PlanFiles
from walrusfs.fs.pool import VolumePool
from walrusfs.fs.quilts import batch_full, quilt_batches, quilt_candidate
from walrusfs.fs.schema import get_param
from walrusfs.fs.uploads import Jobs, UploadStats
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

DELETE_DELAY = 10.0  # seconds an unused blob is kept, so reads already under way finish
QUILT_WINDOW = 2.0  # seconds a partial quilt waits for more small files (unless syncing)
SCAN_INTERVAL = 0.5  # at most two scans for ready chunks per second: a scan reads every staged row


def _everyone_fails(exc: BaseException) -> bool:
    """A failure every upload would meet now (no funds, nodes or chain unreachable, the
    worker gone), as opposed to one of these chunks' own (a quilt the codec refuses, a
    certified upload waiting for room in the database)."""
    if isinstance(exc, DiskFull):
        return False
    return not isinstance(exc, wp.DataError)


class Uploader:
    def __init__(
        self,
        db: sqlite3.Connection,
        content: Content,
        worker: wp.Worker,
        *,
        pool: VolumePool | None = None,
        config: UploadConfig,
        volume_id: str,
        params: codec.EncodingParams,
        keys: crypto.VolumeKeys | None = None,
        volume_name: str = "",
        machine: str | None = None,
        orphans: Sequence[str] = (),
        plan_files: PlanFiles | None = None,
    ) -> None:
        """`machine`: this machine's ID, carried by every blob (walrusfs/fs/writer.py);
        `orphans`: Blob objects of this volume an earlier process of this machine registered
        and never certified: each is continued when `plan_files` holds its plan and its
        chunks are still staged (`_resume_plans`), else deleted when the uploader starts so
        its Storage returns."""
        self.db = db
        self.machine = machine
        self._orphans = list(orphans)
        self.plan_files = plan_files
        self.content = content
        self.clock = content.clock  # idle times (content.last_write) are in its seconds
        self.staging = content.staging
        self.worker = worker
        self.config = config
        self.volume_id = volume_id
        self.keys = keys
        self.volume_name = volume_name
        self.params = params
        self.max_patches = params.k_s - 1
        self.inflight: dict[Key, int] = {}  # chunk -> generation being uploaded
        self.stats = UploadStats()
        self._wake = trio.Event()
        self._progress = trio.Event()
        self._running = 0
        self._forced = 0
        self._compacting = 0  # compactions re-staging files right now
        self._retry_at = 0.0
        self._backoff = config.retry_after
        #: chunks whose last upload failed: (monotonic time of the next try, back-off)
        self._chunk_retry: dict[Key, tuple[float, float]] = {}
        #: chunks of failed uploads that registered a Blob: retried with the same request
        self._attempts = Attempts()
        self.commits = Committer(db, content)
        attributes = {"walrusfs:volume": volume_id, "walrusfs:name": volume_name}
        if machine is not None:
            attributes["walrusfs:machine"] = machine
        self.jobs = Jobs(
            db,
            content,
            worker,
            config=config,
            params=params,
            keys=keys,
            attributes=attributes,
            stats=self.stats,
            inflight=self.inflight,
            attempts=self._attempts,
            commits=self.commits,
            plan_files=plan_files,
            pool=pool,
        )
        self.pool = pool
        self._resume_plans()
        self._nursery: trio.Nursery | None = None
        self._compacted_at = self.clock()
        self.compactor = Compactor(
            db, content, params, compact_below=config.compact_below, record=self.jobs.file_attr
        )
        #: told how many database changes were housekeeping only (Checkpointer.ignore)
        self.housekeeping: Callable[[int], None] = lambda changes: None

    # -- status -----------------------------------------------------------------------------

    def pending_sizes(self) -> list[int]:
        """Bytes of each chunk staged for upload, in flight included."""
        return [
            self.staging.size((inode, chunkno))
            for inode, chunkno in self.db.execute(
                "SELECT c.inode, c.chunkno FROM chunks c JOIN inodes i ON i.id = c.inode "
                "WHERE c.staged = 1 AND i.nlink > 0"
            )
        ]

    def pending(self) -> tuple[int, int]:
        """(chunks, bytes) staged for upload, in flight included."""
        sizes = self.pending_sizes()
        return len(sizes), sum(sizes)

    def wake(self) -> None:
        self._wake.set()

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()
        self.content.space_freed.set()
        self.content.space_freed = trio.Event()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            last_scan = 0.0
            while True:
                with trio.move_on_after(1.0):
                    await self._wake.wait()
                self._wake = trio.Event()
                pause = last_scan + SCAN_INTERVAL - self.clock()
                if pause > 0:
                    await trio.sleep(pause)
                last_scan = self.clock()
                try:
                    await self._delete_orphans()
                    if self.commits.retry():
                        self._progressed()
                    self.stats.uncommitted = len(self.commits.uncommitted)
                    await self._settle_attempts()
                    await self._schedule()
                    await self._delete_unused()
                    if last_scan - self._compacted_at >= COMPACT_INTERVAL:
                        await self.compact()
                except Exception as exc:
                    # a bug here must not end the mount (and every open file with it): the
                    # data stays staged, the round is tried again later, the log says why
                    log.exception("upload scheduling failed (internal error); retrying")
                    self.stats.failing = True
                    self.stats.last_error = f"internal error: {exc!r}"
                    await trio.sleep(self.config.retry_after)

    def _eligible(self, free: int) -> tuple[list[tuple[Key, int]], list[Key]]:
        """(small single-chunk files with their sizes, other chunks) ready for upload; stops
        once there is enough for `free` jobs."""
        now = self.clock()
        force = self._forced > 0
        if not force and now < self._retry_at:
            return [], []
        small: list[tuple[Key, int]] = []
        big: list[Key] = []
        cs = self.content.chunk_size
        # Every staged chunk, in row order, read from the staged chunks' own index; the file
        # of each is read only for a chunk that passes the checks in memory. Joining every
        # row with its inode read a page of the inodes table per staged chunk, every scan,
        # when thousands wait for their delay (the loop serves no request meanwhile).
        staged = sorted(
            self.db.execute("SELECT rowid, inode, chunkno FROM chunks WHERE staged = 1")
        )
        for _, inode, chunkno in staged:
            if len(big) >= free and len(small) >= free * self.max_patches:
                break
            key = (inode, chunkno)
            if key in self.inflight or key in self._attempts or key in self.commits.held:
                continue
            if not force:
                retry = self._chunk_retry.get(key)
                if retry is not None and now < retry[0]:
                    continue
                if now - self.content.last_write.get(key, 0.0) < self.config.delay:
                    continue
                if self.content.writers.get(inode) and self.staging.size(key) < cs:
                    continue
            linked = self.db.execute(
                "SELECT size FROM inodes WHERE id = ? AND nlink > 0", (inode,)
            ).fetchone()
            if linked is None:  # unlinked: purged, never uploaded
                continue
            size = int(linked[0])
            if chunkno == 0 and quilt_candidate(size, self.config.quilt_threshold, self.params):
                small.append((key, min(size, cs)))
            else:
                big.append(key)
        return small, big

    async def _schedule(self) -> None:
        """Start at most as many jobs as there are free slots: while they run, small files
        accumulate into fuller quilts (one quilt per file would cost a blob's fixed overhead
        and two transactions each)."""
        free = self.config.jobs - self._running
        if free <= 0:
            return
        now = self.clock()
        if self._forced or now >= self._retry_at:
            for plan in self._attempts.plans():
                keys = [key for key, _ in plan.chunks]
                if free <= 0 or any(key in self.inflight for key in keys):
                    continue
                retry = self._chunk_retry.get(keys[0])
                if self._forced or retry is None or now >= retry[0]:
                    self._start(self.jobs.retry_job, keys)
                    free -= 1
        if free <= 0:
            return
        small, big = self._eligible(free)
        batches = quilt_batches(small, self.params)
        last = batches.pop() if batches and not batch_full(batches[-1][1], self.params) else None
        batch = [] if last is None else last[0]
        jobs: list[tuple[Any, list[Key]]] = [(self.jobs.quilt_job, keys) for keys, _ in batches]
        jobs += [(self.jobs.blob_job, [key]) for key in big]
        if batch:
            now = self.clock()
            oldest = min(self.content.last_write.get(k, 0.0) for k in batch)
            # while compaction re-stages files one by one, the first few must not be quilted
            # alone: the partial quilt waits for the rest (full quilts and blobs go on)
            due = self._forced or now - oldest >= self.config.delay + QUILT_WINDOW
            if due and not self._compacting:
                jobs.append((self.jobs.quilt_job, batch))
        for job, keys in jobs[:free]:
            self._start(job, keys)

    def _start(self, job: Any, keys: list[Key]) -> None:
        assert self._nursery is not None
        for key in keys:
            self.inflight[key] = self.content.generation(key)
        self._running += 1
        self._nursery.start_soon(self._guard, job, keys)

    async def _guard(self, job: Any, keys: list[Key]) -> None:
        """Run an upload job; a failure leaves its chunks staged and backs them off (never
        raises: an exception here would end the uploader's nursery and with it the mount).
        Only a failure that every upload would meet now (funds, the network) pauses the
        others too; one that is the chunks' own (a quilt the codec refuses) does not."""
        try:
            await job(keys)
            self._backoff = self.config.retry_after
            self.stats.failing = False
            self.stats.short = None
            for key in keys:
                self._chunk_retry.pop(key, None)
        except Exception as exc:
            if isinstance(exc, chain_errors.InsufficientFunds):
                currency = "SUI" if isinstance(exc, chain_errors.InsufficientGas) else "WAL"
                self.stats.short = (currency, exc.need, exc.have)
                log.error(
                    "uploads paused: not enough %s (%s); %d bytes wait in staging, writes go on "
                    "until the staging limit",
                    currency,
                    exc,
                    self.pending()[1],
                )
            if isinstance(exc, (StoreError, chain_errors.ChainError, OSError)):
                message = str(exc)
                log.warning("upload of %d chunk(s) failed, will retry: %s", len(keys), message)
            else:
                message = f"internal error: {exc!r}"
                log.exception("upload of %d chunk(s) failed (internal error)", len(keys))
            self.stats.failures += 1
            self.stats.failing = True
            self.stats.last_error = message
            self.stats.last_error_at = time.time()
            now = self.clock()
            for key in keys:
                _, backoff = self._chunk_retry.get(key, (0.0, self.config.retry_after / 2))
                backoff = min(backoff * 2, 300.0)
                self._chunk_retry[key] = (now + backoff, backoff)
            if _everyone_fails(exc):
                self._retry_at = now + self._backoff
                self._backoff = min(self._backoff * 2, 300.0)
        finally:
            self._running -= 1
            for key in keys:
                self.inflight.pop(key, None)
            self.stats.uncertified = self.worker.uncertified
            self.stats.uncommitted = len(self.commits.uncommitted)
            self._progressed()
            self.wake()  # a slot is free

    def _resume_plans(self) -> None:
        """Take up the uploads an earlier process registered and did not commit (a crash or
        kill -9): the plan of each whose chunks are all still staged, each with the bytes
        the request read (`Plan.resumable_with`), becomes a failed attempt, retried first
        with the same request, which the worker continues on the same Blob (asking the
        nodes what they hold before sending a sliver, and finding it certified if the dead
        process had certified it). A plan whose Blob is committed is dropped; any other
        is abandoned by `_settle_attempts` (its Blob deleted). Blobs with a plan are not
        orphans to delete."""
        if self.plan_files is None:
            return
        for object_id, doc in self.plan_files.load().items():
            if blobs.row_of(self.db, object_id) is not None:
                self.plan_files.drop(object_id)  # committed just before the kill
                continue
            plan = Plan.from_json(doc)
            keys = [key for key, _ in plan.chunks]
            if plan.resumable_with(self._staged_size):
                plan.chunks = [(key, self.content.generation(key)) for key in keys]
                self.stats.resumed += 1
                log.info(
                    "continuing the upload of %d chunk(s) registered as %s", len(keys), object_id
                )
            # else every generation is -1: `_settle_attempts` abandons it
            self._attempts.keep(plan)
            if object_id in self._orphans:
                self._orphans.remove(object_id)

    def _staged_size(self, key: Key) -> int | None:
        chunk = self.content.chunk(*key)
        if chunk is None or not chunk.staged or not self.staging.exists(key):
            return None
        return self.staging.size(key)

    async def _delete_orphans(self) -> None:
        """Delete the registered, never certified Blobs an earlier process left (a crash or
        kill -9 between paying and certifying): nothing will certify them, and deleting one
        gives its Storage back for the next registration."""
        while self._orphans:
            object_id = self._orphans[0]
            if blobs.row_of(self.db, object_id) is not None:  # continued and committed since
                self._orphans.pop(0)
                continue
            self.commits.deleted.add(object_id)  # see Committer.deleted
            try:
                await self.worker.abandon(object_id, None if self.pool is None else self.pool.known)
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning(
                    "could not delete uncertified blob %s (retrying later): %s", object_id, exc
                )
                return
            log.info("deleted blob %s: registered by an earlier run, never certified", object_id)
            self._orphans.pop(0)
            self.stats.orphans_deleted += 1

    async def _settle_attempts(self) -> None:
        """Abandon the registrations of failed uploads that will never be retried as they were
        (a chunk of them changed or went): the Blob is deleted, its Storage returns to the
        wallet for the next registration (chain.client reuses owned Storage)."""
        for plan in self._attempts.plans():
            if any(key in self.inflight for key, _ in plan.chunks):
                continue
            if all(self.jobs.current(key, gen) for key, gen in plan.chunks):
                continue
            assert plan.registered is not None
            if not await self.jobs.abandon(plan.registered):
                continue
            log.info("abandoned the registration %s: its chunks changed", plan.registered)
            self._attempts.forget(plan)
            self.stats.uncertified = self.worker.uncertified
            self.wake()

    async def _delete_unused(self) -> None:
        """Delete blobs no chunk uses (their Storage goes back to the wallet for reuse)."""
        # only blobs unused since before the newest certified checkpoint was taken, so that
        # checkpoint never refers to a deleted blob (walrusfs/fs/checkpoint.py)
        safe = float(get_param(self.db, "checkpoint_time") or 0.0)
        due = blobs.due_for_deletion(self.db, unused_before=time.time() - DELETE_DELAY, safe=safe)
        for row in due:
            object_id = row.object_id
            if not blobs.unused(self.db, row.id):
                continue  # used again since `due` was read (a pooled blob reused by an upload)
            if row.pool is not None:
                self.commits.deleted.add(object_id)  # see Committer.deleted
            try:
                await self.worker.delete(object_id, row.pool)
            except chain_errors.ObjectNotFound:
                log.info("blob object %s is already gone", object_id)
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("could not delete unused blob %s (retrying later): %s", object_id, exc)
                continue
            self.housekeeping(blobs.delete_unused(self.db, row.id))

    # -- compaction -------------------------------------------------------------------------

    async def compact(self) -> int:
        """Re-stage the live files of sparse quilts (compaction.py), to be quilted anew; the
        chunks re-staged. Not while uploads are failing (no WAL?): that would only add to
        what waits."""
        self._compacted_at = self.clock()
        if self.clock() < self._retry_at and not self._forced:
            return 0
        self._compacting += 1
        try:
            restaged, quilts = await self.compactor.restage()
        finally:
            self._compacting -= 1
        self.stats.compacted += quilts
        self.stats.restaged += restaged
        if restaged:
            self.wake()
        return restaged

    # -- sync -------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Upload everything staged now, and return when it is certified.

        Raises:
            OSError: EIO with the reason, if an upload fails meanwhile (the data stays
                staged and is retried later).
        """
        failures = self.stats.failures
        self._forced += 1
        try:
            await self.compact()
            while True:
                chunks, _ = self.pending()
                if chunks == 0:
                    return
                if self.stats.failures != failures:
                    raise OSError(errno.EIO, f"upload failed: {self.stats.last_error}")
                progress = self._progress
                self.wake()
                with trio.move_on_after(1.0):
                    await progress.wait()
        finally:
            self._forced -= 1
