"""Upload jobs: one quilt or one blob from staged chunks to a certified, committed blob.

A job plans its request (chunks, their sealed file records, attributes), sends it to the
upload worker and commits what comes back (commits.py). What a failure must not cost:

- an upload that failed after its Blob was registered (paid) is retried with the same
  request (the same chunks, tags and attributes: the same blob ID), which the worker's store
  continues on the same Blob object instead of registering again (plans.py);
- a quilt is planned again at upload time with its chunks' current sizes and exact tags
  (a file may have grown since the plan) and each chunk file is read only up to its planned
  size; a quilt the codec still refuses is split, a single file stored as a blob: one bad
  batch never turns into a retry loop that blocks every writer;
- a chunk of zeros only stays a hole (no blob), and a chunk's trailing zeros are not stored
  (its length says where its bytes end: upload_worker.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio

import codec
from cache import Key
from chain import errors as chain_errors
from walrusfs.fs import blobs, crypto
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.commits import Committer, Uploaded
from walrusfs.fs.content import Content
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.plans import Attempts, Plan, PlanFiles, drop_batch, sources
from walrusfs.fs.pool import VolumePool
from walrusfs.fs.quilts import quiltable
from walrusfs.fs.records import FILE_ATTR, file_record
from walrusfs.store.errors import StoreError
from walrusfs.store.writes import StoreResult

log = logging.getLogger(__name__)

T = TypeVar("T", wp.BlobStored, wp.QuiltStored)
#: sends a plan's request, given where each chunk is read, what the upload carries and who is
#: told of its registration
Send = Callable[[dict[Key, wp.Source], wp.Upload, wp.Registered], Awaitable[T]]

#: a quilted file up to this size stays readable from memory after its upload (write-through
#: into the mount's segment cache): reading a file just written costs no patch fetch
WRITE_THROUGH_MAX = 1 << 20


@dataclass
class UploadStats:
    blobs: int = 0
    quilts: int = 0
    chunks: int = 0
    bytes: int = 0
    wal_spent: int = 0  # FROST
    failures: int = 0
    compacted: int = 0  # quilts whose live files were re-staged to be quilted anew
    restaged: int = 0  # chunks re-staged by compaction
    last_error: str | None = None
    last_error_at: float | None = None
    recent: list[str] = field(default_factory=list)
    #: uploads paused for lack of funds: (currency "WAL" | "SUI", needed, held), in FROST or
    #: MIST, from the last failed upload; None once an upload goes through
    short: tuple[str, int, int] | None = None
    failing: bool = False  # the last upload failed (writes get ENOSPC once staging is full)
    #: Blob objects registered (paid) whose upload failed and is not certified yet: each is
    #: continued by the retry of its upload, or deleted when abandoned (status: show them)
    uncertified: int = 0
    #: certified uploads whose commit to the database failed (full disk): retried from memory
    uncommitted: int = 0
    holes: int = 0  # chunks of zeros only, committed as holes instead of uploaded
    #: uncertified Blobs an earlier process of this machine left, deleted at start
    orphans_deleted: int = 0
    #: uploads an earlier process registered and did not commit, continued (plans.py)
    resumed: int = 0


def _read_files(paths: dict[str, Path]) -> dict[str, bytes]:
    """The files that still exist (a worker thread: the loop may remove some meanwhile)."""
    out = {}
    for ident, path in paths.items():
        try:
            out[ident] = path.read_bytes()
        except FileNotFoundError:
            continue
    return out


class Jobs:
    """The upload jobs of one uploader, sharing its statistics, the chunks in flight (with
    the generation each job uploads) and the failed attempts to retry."""

    def __init__(
        self,
        db: sqlite3.Connection,
        content: Content,
        worker: wp.Worker,
        *,
        config: UploadConfig,
        params: codec.EncodingParams,
        keys: crypto.VolumeKeys | None,
        attributes: dict[str, str],
        stats: UploadStats,
        inflight: dict[Key, int],
        attempts: Attempts,
        commits: Committer,
        plan_files: PlanFiles | None = None,
        pool: VolumePool | None = None,
    ) -> None:
        """`attributes`: what every blob of the volume carries (its ID, name, machine);
        `plan_files`: where plans of registered uploads are kept until committed (None:
        nowhere, a crash leaves the registration to be deleted)."""
        self.db = db
        self.content = content
        self.staging = content.staging
        self.worker = worker
        self.config = config
        self.params = params
        self.keys = keys
        self.volume_attributes = attributes
        self.stats = stats
        self.inflight = inflight
        self.attempts = attempts
        self.commits = commits
        self.plan_files = plan_files
        #: the volume's storage pool (None, or not enabled: uploads register owned Blobs)
        self.pool = pool

    def _ready(self, keys: Sequence[Key]) -> list[tuple[Key, int]]:
        """The chunks (with generations) still worth uploading; empty ones become holes."""
        out = []
        for key in keys:
            gen = self.inflight[key]
            if self.content.gen.get(key) != gen or not self.staging.exists(key):
                continue  # removed or changed meanwhile: the next round takes it
            if self.staging.size(key) == 0:
                self.commits.commit_empty(key, gen)
                continue
            out.append((key, gen))
        return out

    def _attributes(self, kind: str) -> dict[str, str]:
        return {**self.volume_attributes, "walrusfs:kind": kind}

    def file_attr(self, key: Key, length: int | None = None) -> str:
        """The chunk's sealed file record (records.py), of its staged bytes unless `length`."""
        return file_record(
            self.db,
            self.keys,
            key,
            chunk_size=self.content.chunk_size,
            length=self.staging.size(key) if length is None else length,
        )

    def current(self, key: Key, gen: int) -> bool:
        """The chunk is still staged with the bytes of generation `gen`."""
        return self.content.gen.get(key) == gen and self.staging.exists(key)

    async def _send(self, plan: Plan, send: Send[T]) -> T:
        """Send a plan to the worker (a retry sends the same request, with the batch file
        written again); its plan is kept on disk from its registration until its commit. A
        failure that registered a Blob keeps the plan for its retry. A Blob the plan named
        and the upload did not use (the bytes differ from the plan's: a plan a crash left,
        whose files changed before it) is abandoned."""
        # the sizes the request reads (nothing awaits before `sources` reads the small ones)
        plan.sizes = {key: self.staging.size(key) for key, _ in plan.chunks}
        where, _ = await sources(self.staging, [key for key, _ in plan.chunks], plan.caps)
        earlier = plan.registered

        def registered(object_id: str) -> None:
            if self.plan_files is None:
                return
            try:
                self.plan_files.save(object_id, plan)
            except OSError as exc:  # a full disk: the upload goes on, only its resume is lost
                log.warning("the plan of blob %s could not be kept (%s)", object_id, exc)

        try:
            pool = None if self.pool is None else await self.pool.get()
            upload = wp.Upload(self.config.epochs, plan.attributes, plan.registered, pool)
            answer = await send(where, upload, registered)
        except wp.WorkerError as exc:
            if exc.registered is not None:
                plan.registered = exc.registered
                self.attempts.keep(plan)
            if earlier is not None and exc.registered not in (None, earlier):
                await self.abandon(earlier)
            raise
        finally:
            drop_batch(where)
        self.attempts.forget(plan)
        used = None if answer.result is None else answer.result.object_id
        if used is not None and used in self.commits.deleted:
            # a pool holds one entry per blob ID: these bytes matched a blob the uploader was
            # deleting, and the worker reused it; the retry registers them anew
            raise wp.WorkerError(f"blob {used} was deleted while this upload reused it")
        if earlier is not None and earlier != used:
            await self.abandon(earlier)
        return answer

    async def abandon(self, object_id: str) -> bool:
        """Delete a registered Blob no upload will use (its Storage returns to the wallet)
        and its kept plan; False when it could not be deleted now (logged: the next mount
        deletes it if it is still uncertified). A blob a file uses is kept: in a storage pool
        another upload of the same bytes may have continued and committed it."""
        if blobs.row_of(self.db, object_id) is not None:
            log.info("not abandoning blob %s: a file uses it", object_id)
            if self.plan_files is not None:
                self.plan_files.drop(object_id)
            return True
        self.commits.deleted.add(object_id)  # an answer that continued it is not committed
        try:
            await self.worker.abandon(object_id, None if self.pool is None else self.pool.known)
        except (StoreError, chain_errors.ChainError, OSError) as exc:
            log.warning("could not abandon blob %s (retrying later): %s", object_id, exc)
            return False
        if self.plan_files is not None:
            self.plan_files.drop(object_id)
        return True

    def _committed(self, result: StoreResult) -> None:
        """The upload of `result` is committed: its plan is no longer kept."""
        if self.plan_files is not None:
            self.plan_files.drop(result.object_id)

    async def retry_job(self, keys: list[Key]) -> None:
        """Send again the plan of the failed upload `keys[0]` belongs to (the same request:
        its registered Blob is continued), unless a chunk of it changed meanwhile. Raises what
        `blob_job` raises."""
        plan = self.attempts.get(keys[0])
        if plan is None:
            return
        if not all(self.current(key, gen) for key, gen in plan.chunks):
            return  # changed meanwhile: the uploader abandons it
        if plan.kind == "blob":
            await self._upload_blob(plan)
        else:
            await self._upload_quilt(plan)

    async def blob_job(self, keys: list[Key]) -> None:
        """Upload the one chunk of `keys` as a blob of its own and commit it; nothing when it
        changed or went meanwhile, a hole when it holds no bytes.

        Raises:
            WorkerError, DataError: the upload failed; one that registered a Blob keeps its
                plan in `attempts` for `retry_job`.
            chain.errors.InsufficientFunds: the wallet cannot pay (InsufficientWal or Gas).
            DiskFull: certified, but the commit waits for room in the database.
        """
        ready = self._ready(keys)
        if not ready:
            return
        ((key, gen),) = ready
        attributes = {**self._attributes(blobs.DATA_ATTR), FILE_ATTR: self.file_attr(key)}
        await self._upload_blob(Plan("blob", [(key, gen)], attributes, {}, {}))

    async def _upload_blob(self, plan: Plan) -> None:
        ((key, gen),) = plan.chunks

        async def send(
            where: dict[Key, wp.Source], upload: wp.Upload, registered: wp.Registered
        ) -> wp.BlobStored:
            return await self.worker.store_blob(where[key], upload, registered)

        answer = await self._send(plan, send)
        if answer.hole:
            self.stats.holes += 1
            self.commits.commit_empty(key, gen)
            return
        result = answer.result
        if result is None:
            return
        self.commits.commit(Uploaded(result, blobs.BLOB, [(key, gen, None, answer.length)]))
        self._committed(result)
        self.stats.blobs += 1
        self._account(result, 1, answer.length)

    async def quilt_job(self, keys: list[Key]) -> None:
        """Upload the chunks of `keys` as quilts, planned again with their current sizes and
        tags, and commit them. A quilt the codec refuses is split, down to single blobs.
        Raises what `blob_job` raises (a DataError only for a refused quilt that registered
        a Blob)."""
        ready = self._ready(keys)
        if not ready:
            return
        for batch in self._replan(ready):
            if len(batch) == 1 and not self._quiltable([batch[0][0]]):
                await self.blob_job([batch[0][0]])  # too large for a quilt of its own now
                continue
            tags = {key: {FILE_ATTR: self.file_attr(key)} for key, _ in batch}
            caps = {
                key: self.staging.size(key) for key, _ in batch if not self.staging.is_small(key)
            }
            await self._quilt_or_split(
                Plan("quilt", batch, self._attributes(blobs.QUILT), tags, caps)
            )

    def _quiltable(self, keys: list[Key], tags: list[int] | None = None) -> bool:
        return quiltable([self.staging.size(key) for key in keys], self.params, tags)

    def _replan(self, ready: list[tuple[Key, int]]) -> list[list[tuple[Key, int]]]:
        """The planned quilt again, with the chunks' sizes now and their exact tags: split
        where it no longer fits (a file grew since the plan; long paths make long tags)."""
        tag = {key: len(self.file_attr(key)) for key, _ in ready}
        ordered = sorted(ready, key=lambda kg: self.staging.size(kg[0]))
        batches: list[list[tuple[Key, int]]] = []
        while ordered:
            n = len(ordered)
            while n > 1 and not self._quiltable(
                [k for k, _ in ordered[:n]], [tag[k] for k, _ in ordered[:n]]
            ):
                n = (n + 1) // 2 if n > 2 else 1
            batches.append(ordered[:n])
            ordered = ordered[n:]
        return batches

    async def _quilt_or_split(self, plan: Plan) -> None:
        """Store a quilt; if the codec still refuses it ("data": no retry can change that),
        store each half, down to single files as blobs."""
        try:
            await self._upload_quilt(plan)
        except wp.DataError as exc:
            if exc.registered is not None:
                raise
            log.warning("quilt of %d file(s) refused (%s); splitting it", len(plan.chunks), exc)
            if len(plan.chunks) == 1:
                key, gen = plan.chunks[0]
                attributes = {**self._attributes(blobs.DATA_ATTR), FILE_ATTR: self.file_attr(key)}
                await self._upload_blob(Plan("blob", [(key, gen)], attributes, {}, {}))
                return
            half = len(plan.chunks) // 2
            for part in (plan.chunks[:half], plan.chunks[half:]):
                keys = {key for key, _ in part}
                await self._quilt_or_split(
                    Plan(
                        "quilt",
                        part,
                        plan.attributes,
                        {k: v for k, v in plan.tags.items() if k in keys},
                        {k: v for k, v in plan.caps.items() if k in keys},
                    )
                )

    async def _upload_quilt(self, plan: Plan) -> None:
        idents = {f"{k[0]}.{k[1]}": (k, gen) for k, gen in plan.chunks}
        inline = self.staging.small_bytes([k for k, _ in plan.chunks])

        async def send(
            where: dict[Key, wp.Source], upload: wp.Upload, registered: wp.Registered
        ) -> wp.QuiltStored:
            items = [
                wp.QuiltItem(ident, where[key], plan.tags[key])
                for ident, (key, _) in idents.items()
            ]
            return await self.worker.store_quilt(items, upload, registered)

        answer = await self._send(plan, send)
        for ident in answer.holes:
            self.stats.holes += 1
            self.commits.commit_empty(*idents[ident])
        result = answer.result
        if result is None:
            return
        # Copies for the segment cache: small chunks' bytes are at hand, files are read off the
        # loop before the commits; a copy is used only if its chunk commits, i.e. did not
        # change since the upload (nor since the copy).
        files = {
            ident: self.staging.path(idents[ident][0])
            for ident, length in answer.lengths.items()
            if length <= WRITE_THROUGH_MAX and idents[ident][0] not in inline
        }
        copies = await trio.to_thread.run_sync(_read_files, files)
        for ident, (key, _) in idents.items():
            if key in inline:
                copies[ident] = inline[key]
        committed = self.commits.commit(
            Uploaded(
                result,
                blobs.QUILT,
                [
                    (idents[ident][0], idents[ident][1], patch, answer.lengths[ident])
                    for ident, patch in answer.patches.items()
                ],
            )
        )
        self._committed(result)
        for ident, patch in answer.patches.items():
            copy = copies.get(ident)
            if copy is None or idents[ident][0] not in committed:
                continue
            length = answer.lengths[ident]
            if len(copy) >= length and not any(copy[length:]):  # trailing zeros not stored
                self.content.stored.remember_patch(patch, copy[:length])
        self.stats.quilts += 1
        self._account(result, len(answer.patches), sum(answer.lengths.values()))

    def _account(self, result: StoreResult, chunks: int, nbytes: int) -> None:
        self.stats.chunks += chunks
        self.stats.bytes += nbytes
        self.stats.wal_spent += result.cost

    # -- database ---------------------------------------------------------------------------
