"""Moves staged chunks to Walrus, and deletes blobs no file uses any more.

A staged chunk is uploaded once it has been idle for `delay` seconds and its file is closed
(or the chunk is full: a file being written for a long time uploads as it goes). Single-chunk
files up to `quilt_threshold` bytes are batched into quilts (one blob, one registration and
one certificate for up to k_s - 1 files); other chunks become one blob each. rsync's
temp-file-then-rename costs one upload: a rename changes a dentry, not the inode's chunks.

Order, never violated: blob certified -> the chunk row points at it (one transaction) -> the
staging file is removed. If the chunk changed while it was uploading (its generation moved
on), the new blob is left unreferenced and deleted like any unused blob.

Failures, and what they must not cost:
- a failure backs off the chunks of that job (15 s doubling to 5 min); other chunks go on,
  unless the failure says every upload would fail now (no WAL, nodes unreachable), which
  pauses all uploads for the back-off;
- an upload that failed after its Blob was registered (paid) is retried with the same
  request (the same chunks, tags and attributes: the same blob ID), which the worker's store
  continues on the same Blob object instead of registering again; if a chunk of it changes
  or goes, the registration is abandoned (deleted, its Storage returns to the wallet);
- a quilt is planned again at upload time with its chunks' current sizes and exact tags
  (a file may have grown since the plan) and each chunk file is read only up to its planned
  size; a quilt the codec still refuses is split, a single file stored as a blob: one bad
  batch never turns into a retry loop that blocks every writer;
- a certified upload whose commit fails (meta.db on a full disk: "database or disk is
  full") is kept in memory and only its commit is retried: uploading it again paid for a
  new blob at every retry;
- a chunk of zeros only stays a hole (no blob), and a chunk's trailing zeros are not stored
  (its length says where its bytes end: upload_worker.py).
"""

from __future__ import annotations

import errno
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio

import codec
from cache.staging import Key
from chain import errors as chain_errors
from walrusfs.fs import crypto
from walrusfs.fs.content import Content
from walrusfs.fs.schema import files_of_blob, get_param, path_of, transaction
from walrusfs.fs.upload_worker import UploadWorker, WorkerError, result_from_json
from walrusfs.store.client import StoreResult
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

DELETE_DELAY = 10.0  # seconds an unused blob is kept, so reads already under way finish
QUILT_WINDOW = 2.0  # seconds a partial quilt waits for more small files (unless syncing)
QUILT_MAX_BLOB = 64 << 20  # quilt blob size at most (its encoding holds ~10x this in memory)
#: a quilted file up to this size stays readable from memory after its upload (write-through
#: into the mount's segment cache): reading a file just written costs no patch fetch
WRITE_THROUGH_MAX = 1 << 20
NO_QUILT = 1 << 62  # quilt_blob_size of files no quilt can hold
# QuiltV1 keeps each patch's identifier ("<inode>.<chunk>") and tags twice: before its data
# (with a 6-byte header) and in the index. The tag is the sealed file record (FILE_ATTR),
# whose length grows with the file's path: TAG_ESTIMATE covers paths of ~120 bytes. The index
# must fit in the columns the patches leave free, so with hundreds of files the index sets
# the symbol size: underestimating it (it was 32 bytes a file) planned quilts 8x smaller than
# built, and compaction then re-quilted full quilts forever. Sparse-quilt checks use the
# exact tags (`Uploader._tag_sizes`).
TAG_ESTIMATE = 460
ENTRY_BASE = 64  # header, identifier and tag lengths, the tag's key
INDEX_BASE = 64  # identifier, end column, the tag's key and lengths
FILE_ATTR = "walrusfs:file"  # blob attribute / quilt patch tag: the sealed file record
SCAN_INTERVAL = 0.5  # at most two scans for ready chunks per second: a scan reads every staged row
COMPACT_INTERVAL = 60.0  # seconds between looks for sparse quilts (and at every sync)
COMPACT_BATCH = 64 << 20  # bytes re-staged per round of compaction at most


@dataclass(frozen=True)
class UploadConfig:
    delay: float = 3.0  # idle seconds before a closed file's chunk is uploaded
    epochs: int = 10  # storage epochs bought per blob
    quilt_threshold: int = 4 << 20  # single-chunk files up to this size go into quilts
    jobs: int = 2  # uploads (blob or quilt) at once; each holds ~10x its bytes while encoding
    retry_after: float = 15.0  # first back-off after a failed upload (doubles, up to 5 min)
    #: a quilt is compacted when a quilt of its live files alone would be smaller than this
    #: fraction of it (0: never)
    compact_below: float = 0.5


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


T = TypeVar("T")


def quilt_blob_size(
    sizes: Sequence[int], params: codec.EncodingParams, tags: Sequence[int] | None = None
) -> int:
    """The quilt blob for files of these (plaintext) sizes (QuiltV1 pads every file to whole
    columns of k_p symbols, so one large file among small ones makes a huge blob); `tags`:
    the length of each file's tag, when known (else TAG_ESTIMATE each)."""
    tag = [TAG_ESTIMATE] * len(sizes) if tags is None else tags
    entries = [crypto.sealed_size(s) + ENTRY_BASE + t for s, t in zip(sizes, tag, strict=True)]
    index = codec.quilt.INDEX_PREFIX_LEN + sum(INDEX_BASE + t for t in tag)
    try:
        symbol = codec.quilt.quilt_symbol_size([index, *entries], params)
    except codec.QuiltError:
        return NO_QUILT  # beyond the largest symbol: these files make no quilt together
    return params.k_p * params.k_s * symbol


@functools.lru_cache(maxsize=4096)
def _fits_alone(size: int, n_shards: int) -> bool:
    return quilt_blob_size([size], codec.EncodingParams(n_shards)) <= QUILT_MAX_BLOB


def quilt_candidate(size: int, threshold: int, params: codec.EncodingParams) -> bool:
    """A single-chunk file goes into a quilt if it is at most `threshold` bytes and a quilt of
    it alone stays within QUILT_MAX_BLOB (at small shard counts a few MB already do not)."""
    return size <= threshold and _fits_alone(size, params.n_shards)


@dataclass(frozen=True)
class Source:
    """Where the upload worker reads a chunk: a whole file, or a span of a file (of an upload
    batch, or the planned bytes of a chunk file)."""

    path: str
    offset: int | None = None
    length: int | None = None
    batch: bool = False  # an upload batch, removed when the job ends

    def request(self) -> dict[str, Any]:
        """The fields of a "blob" request (upload_worker.py)."""
        if self.offset is None:
            return {"path": self.path}
        return {"path": self.path, "offset": self.offset, "length": self.length}

    def item(self) -> list[Any]:
        """The path and span of a "quilt" item, before its tags."""
        return [self.path, self.offset, self.length]


@dataclass
class _Plan:
    """One upload request, kept so that its retry sends the very same one: the same chunks
    (with the generations their bytes had), tags and attributes make the same blob ID, so the
    worker continues the Blob it registered (`registered`) instead of paying for another.
    The file records in tags and attributes are sealed with a random nonce: made again, they
    would change a quilt's blob ID and a blob's attributes."""

    kind: str  # "blob" | "quilt"
    chunks: list[tuple[Key, int]]  # (chunk, generation)
    attributes: dict[str, str]
    tags: dict[Key, dict[str, str]]  # a quilt's files' tags
    caps: dict[Key, int]  # a quilt's chunk files: the bytes planned (read no more)
    registered: str | None = None


@dataclass
class _Certified:
    """A certified upload whose commit failed (a full disk): committed again from here."""

    result: StoreResult
    kind: str
    uploaded: list[tuple[Key, int, str | None, int]]  # chunk, generation, patch, length


class DiskFull(OSError):
    """The volume's database could not record a certified upload; retried from memory."""


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "database or disk is full" in str(exc)
    )


def _everyone_fails(exc: BaseException) -> bool:
    """A failure every upload would meet now (no funds, nodes or chain unreachable, the
    worker gone), as opposed to one of these chunks' own (a quilt the codec refuses, a
    certified upload waiting for room in the database)."""
    if isinstance(exc, DiskFull):
        return False
    return not (isinstance(exc, WorkerError) and exc.kind == "data")


def _read_files(paths: dict[str, Path]) -> dict[str, bytes]:
    """The files that still exist (a worker thread: the loop may remove some meanwhile)."""
    out = {}
    for ident, path in paths.items():
        try:
            out[ident] = path.read_bytes()
        except FileNotFoundError:
            continue
    return out


def quilt_batches(
    small: list[tuple[T, int]], params: codec.EncodingParams
) -> list[tuple[list[T], list[int]]]:
    """Small files in quilts of similar sizes: sorted by size, each batch the longest run
    whose quilt blob stays within QUILT_MAX_BLOB (bounded memory for its encoding, and
    little padding paid for). Each batch comes with its files' sizes."""
    max_patches = params.k_s - 1
    ordered = sorted(small, key=lambda ks: ks[1])
    batches: list[tuple[list[T], list[int]]] = []
    while ordered:
        hi = min(len(ordered), max_patches)
        sizes = [size for _, size in ordered[:hi]]
        if quilt_blob_size(sizes, params) > QUILT_MAX_BLOB:
            lo = 1  # the largest prefix that fits (one file alone always does)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if quilt_blob_size(sizes[:mid], params) <= QUILT_MAX_BLOB:
                    lo = mid
                else:
                    hi = mid - 1
            hi = lo
        batches.append(([key for key, _ in ordered[:hi]], sizes[:hi]))
        ordered = ordered[hi:]
    return batches


class Uploader:
    def __init__(
        self,
        db: sqlite3.Connection,
        content: Content,
        worker: UploadWorker,
        *,
        config: UploadConfig,
        volume_id: str,
        params: codec.EncodingParams,
        keys: crypto.VolumeKeys | None = None,
        volume_name: str = "",
        machine: str | None = None,
        orphans: Sequence[str] = (),
    ) -> None:
        """`machine`: this machine's ID, carried by every blob (walrusfs/fs/writer.py);
        `orphans`: Blob objects of this volume an earlier process of this machine registered
        and never certified, deleted when the uploader starts so their Storage returns."""
        self.db = db
        self.machine = machine
        self._orphans = list(orphans)
        self.content = content
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
        #: quilts found not sparse with their exact tags -> their live files then (sealing
        #: every tag again each minute would cost the loop a seal and a path per file)
        self._dense: dict[int, int] = {}
        self._retry_at = 0.0
        self._backoff = config.retry_after
        #: chunks whose last upload failed: (monotonic time of the next try, back-off)
        self._chunk_retry: dict[Key, tuple[float, float]] = {}
        #: chunks of failed uploads that registered a Blob: retried with the same request
        self._attempts: dict[Key, _Plan] = {}
        #: certified uploads whose commit failed, and their chunks (not uploaded again)
        self._uncommitted: list[_Certified] = []
        self._held: set[Key] = set()
        self._nursery: trio.Nursery | None = None
        self._compacted_at = time.monotonic()
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
                pause = last_scan + SCAN_INTERVAL - time.monotonic()
                if pause > 0:
                    await trio.sleep(pause)
                last_scan = time.monotonic()
                try:
                    await self._delete_orphans()
                    self._retry_commits()
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
        now = time.monotonic()
        force = self._forced > 0
        if not force and now < self._retry_at:
            return [], []
        small: list[tuple[Key, int]] = []
        big: list[Key] = []
        cs = self.content.chunk_size
        for inode, chunkno, size in self.db.execute(
            "SELECT c.inode, c.chunkno, i.size FROM chunks c JOIN inodes i ON i.id = c.inode "
            "WHERE c.staged = 1 AND i.nlink > 0"
        ):
            if len(big) >= free and len(small) >= free * self.max_patches:
                break
            key = (inode, chunkno)
            if key in self.inflight or key in self._attempts or key in self._held:
                continue
            if not force:
                retry = self._chunk_retry.get(key)
                if retry is not None and now < retry[0]:
                    continue
                if now - self.content.last_write.get(key, 0.0) < self.config.delay:
                    continue
                if self.content.writers.get(inode) and self.staging.size(key) < cs:
                    continue
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
        now = time.monotonic()
        if self._forced or now >= self._retry_at:
            for plan in self._plans():
                keys = [key for key, _ in plan.chunks]
                if free <= 0 or any(key in self.inflight for key in keys):
                    continue
                retry = self._chunk_retry.get(keys[0])
                if self._forced or retry is None or now >= retry[0]:
                    self._start(self._retry_job, keys)
                    free -= 1
        if free <= 0:
            return
        small, big = self._eligible(free)
        batches = quilt_batches(small, self.params)
        last = batches.pop() if batches and not self._full(batches[-1][1]) else None
        batch = [] if last is None else last[0]
        jobs: list[tuple[Any, list[Key]]] = [(self._quilt_job, keys) for keys, _ in batches]
        jobs += [(self._blob_job, [key]) for key in big]
        if batch:
            now = time.monotonic()
            oldest = min(self.content.last_write.get(k, 0.0) for k in batch)
            # while compaction re-stages files one by one, the first few must not be quilted
            # alone: the partial quilt waits for the rest (full quilts and blobs go on)
            due = self._forced or now - oldest >= self.config.delay + QUILT_WINDOW
            if due and not self._compacting:
                jobs.append((self._quilt_job, batch))
        for job, keys in jobs[:free]:
            self._start(job, keys)

    def _full(self, sizes: list[int]) -> bool:
        """A batch (given by its files' sizes) that cannot take more files of its size."""
        if len(sizes) >= self.max_patches:
            return True
        return quilt_blob_size([*sizes, max(sizes)], self.params) > QUILT_MAX_BLOB

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
                    "until the staging limit", currency, exc, self.pending()[1],
                )  # fmt: skip
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
            now = time.monotonic()
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
            self.stats.uncommitted = len(self._uncommitted)
            self._progressed()
            self.wake()  # a slot is free

    def _ready(self, keys: Sequence[Key]) -> list[tuple[Key, int]]:
        """The chunks (with generations) still worth uploading; empty ones become holes."""
        out = []
        for key in keys:
            gen = self.inflight[key]
            if self.content.gen.get(key) != gen or not self.staging.exists(key):
                continue  # removed or changed meanwhile: the next round takes it
            if self.staging.size(key) == 0:
                self._commit_empty(key, gen)
                continue
            out.append((key, gen))
        return out

    def _attributes(self, kind: str) -> dict[str, str]:
        out = {"walrusfs:volume": self.volume_id, "walrusfs:kind": kind,
               "walrusfs:name": self.volume_name}  # fmt: skip
        if self.machine is not None:
            out["walrusfs:machine"] = self.machine
        return out

    async def _delete_orphans(self) -> None:
        """Delete the registered, never certified Blobs an earlier process left (a crash or
        kill -9 between paying and certifying): nothing will certify them, and deleting one
        gives its Storage back for the next registration."""
        while self._orphans:
            object_id = self._orphans[0]
            try:
                await self.worker.call({"op": "abandon", "object_id": object_id})
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("could not delete uncertified blob %s (retrying later): %s",
                            object_id, exc)  # fmt: skip
                return
            log.info("deleted blob %s: registered by an earlier run, never certified", object_id)
            self._orphans.pop(0)
            self.stats.orphans_deleted += 1

    def _file_attr(self, key: Key, length: int | None = None) -> str:
        """What `walrusfs fsck --rebuild` needs to put the chunk back in a tree without the
        database: the file's path, metadata and the chunk's place, sealed with the volume's
        metadata key (a path is as private as the content)."""
        inode, chunkno = key
        row = self.db.execute(
            "SELECT mode, uid, gid, size, mtime_ns FROM inodes WHERE id = ?", (inode,)
        ).fetchone()
        mode, uid, gid, size, mtime_ns = row if row is not None else (0o100644, 0, 0, 0, 0)
        info = {
            "path": path_of(self.db, inode), "inode": inode, "chunk": chunkno,
            "chunk_size": self.content.chunk_size, "mode": mode, "uid": uid, "gid": gid,
            "size": size, "mtime_ns": mtime_ns,
            "length": self.staging.size(key) if length is None else length,
        }  # fmt: skip
        return crypto.seal_json(self.keys, info)

    async def _sources(
        self, keys: list[Key], caps: dict[Key, int] | None = None
    ) -> tuple[dict[Key, Source], dict[Key, bytes]]:
        """Where the upload worker reads each chunk: a file chunk's own file (up to its cap,
        when given); small chunks (cache/staging.py) from one batch file written now, in a
        worker thread. Also the bytes of the small ones. The caller removes the batch
        (`_drop_batch`) when the job ends."""
        small = self.staging.small_bytes(keys)
        caps = caps or {}
        out: dict[Key, Source] = {
            k: Source(str(self.staging.path(k)), 0, caps[k])
            if k in caps
            else Source(str(self.staging.path(k)))
            for k in keys
        }
        if small:
            batch = self.staging.batch_path()
            order = list(small)
            spans = await trio.to_thread.run_sync(
                self.staging.write_batch, batch, [small[k] for k in order]
            )
            for key, (offset, length) in zip(order, spans, strict=True):
                out[key] = Source(str(batch), offset, length, batch=True)
        return out, small

    @staticmethod
    def _drop_batch(sources: dict[Key, Source]) -> None:
        for source in sources.values():
            if source.batch:
                Path(source.path).unlink(missing_ok=True)
                return

    def _plans(self) -> list[_Plan]:
        """The failed uploads that registered a Blob, each once."""
        seen: dict[int, _Plan] = {}
        for plan in self._attempts.values():
            seen.setdefault(id(plan), plan)
        return list(seen.values())

    def _forget_plan(self, plan: _Plan) -> None:
        for key, _ in plan.chunks:
            if self._attempts.get(key) is plan:
                del self._attempts[key]

    async def _settle_attempts(self) -> None:
        """Abandon the registrations of failed uploads that will never be retried as they were
        (a chunk of them changed or went): the Blob is deleted, its Storage returns to the
        wallet for the next registration (chain.client reuses owned Storage)."""
        for plan in self._plans():
            if any(key in self.inflight for key, _ in plan.chunks):
                continue
            if all(self._current(key, gen) for key, gen in plan.chunks):
                continue
            assert plan.registered is not None
            try:
                await self.worker.call({"op": "abandon", "object_id": plan.registered})
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("could not abandon blob %s (retrying later): %s",
                            plan.registered, exc)  # fmt: skip
                continue
            log.info("abandoned the registration %s: its chunks changed", plan.registered)
            self._forget_plan(plan)
            self.stats.uncertified = self.worker.uncertified
            self.wake()

    def _current(self, key: Key, gen: int) -> bool:
        """The chunk is still staged with the bytes of generation `gen`."""
        return self.content.gen.get(key) == gen and self.staging.exists(key)

    async def _call(self, plan: _Plan) -> dict[str, Any]:
        """Send a plan to the worker (a retry sends the same request, with the batch file
        written again); a failure that registered a Blob keeps the plan for its retry."""
        keys = [key for key, _ in plan.chunks]
        sources, _ = await self._sources(keys, plan.caps)
        request: dict[str, Any] = {"op": plan.kind, "epochs": self.config.epochs,
                                   "attributes": plan.attributes}  # fmt: skip
        if plan.registered is not None:
            request["resume"] = plan.registered
        if plan.kind == "blob":
            request.update(sources[keys[0]].request())
        else:
            request["items"] = [[f"{k[0]}.{k[1]}", *sources[k].item(), plan.tags[k]] for k in keys]
        try:
            answer = await self.worker.call(request)
        except WorkerError as exc:
            if exc.registered is not None:
                plan.registered = exc.registered
                for key in keys:
                    self._attempts[key] = plan
            raise
        finally:
            self._drop_batch(sources)
        self._forget_plan(plan)
        return answer

    async def _retry_job(self, keys: list[Key]) -> None:
        plan = self._attempts.get(keys[0])
        if plan is None:
            return
        if not all(self._current(key, gen) for key, gen in plan.chunks):
            return  # changed meanwhile: `_settle_attempts` abandons it
        if plan.kind == "blob":
            await self._upload_blob(plan)
        else:
            await self._upload_quilt(plan)

    async def _blob_job(self, keys: list[Key]) -> None:
        ready = self._ready(keys)
        if not ready:
            return
        ((key, gen),) = ready
        attributes = {**self._attributes("data"), FILE_ATTR: self._file_attr(key)}
        await self._upload_blob(_Plan("blob", [(key, gen)], attributes, {}, {}))

    async def _upload_blob(self, plan: _Plan) -> None:
        ((key, gen),) = plan.chunks
        answer = await self._call(plan)
        if answer.get("hole"):
            self.stats.holes += 1
            self._commit_empty(key, gen)
            return
        if answer["result"] is None:
            return
        result = result_from_json(answer["result"])
        self._commit_certified(_Certified(result, "blob", [(key, gen, None, answer["length"])]))
        self.stats.blobs += 1
        self._account(result, 1, answer["length"])

    async def _quilt_job(self, keys: list[Key]) -> None:
        ready = self._ready(keys)
        if not ready:
            return
        for batch in self._replan(ready):
            if len(batch) == 1 and not self._quiltable([batch[0][0]]):
                await self._blob_job([batch[0][0]])  # too large for a quilt of its own now
                continue
            tags = {key: {FILE_ATTR: self._file_attr(key)} for key, _ in batch}
            caps = {key: self.staging.size(key) for key, _ in batch
                    if not self.staging.is_small(key)}  # fmt: skip
            await self._quilt_or_split(_Plan("quilt", batch, self._attributes("quilt"), tags, caps))

    def _quiltable(self, keys: list[Key], tags: list[int] | None = None) -> bool:
        sizes = [self.staging.size(key) for key in keys]
        return (
            len(keys) <= self.max_patches
            and quilt_blob_size(sizes, self.params, tags) <= QUILT_MAX_BLOB
        )

    def _replan(self, ready: list[tuple[Key, int]]) -> list[list[tuple[Key, int]]]:
        """The planned quilt again, with the chunks' sizes now and their exact tags: split
        where it no longer fits (a file grew since the plan; long paths make long tags)."""
        tag = {key: len(self._file_attr(key)) for key, _ in ready}
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

    async def _quilt_or_split(self, plan: _Plan) -> None:
        """Store a quilt; if the codec still refuses it ("data": no retry can change that),
        store each half, down to single files as blobs."""
        try:
            await self._upload_quilt(plan)
        except WorkerError as exc:
            if exc.kind != "data" or exc.registered is not None:
                raise
            log.warning("quilt of %d file(s) refused (%s); splitting it", len(plan.chunks), exc)
            if len(plan.chunks) == 1:
                key, gen = plan.chunks[0]
                attributes = {**self._attributes("data"), FILE_ATTR: self._file_attr(key)}
                await self._upload_blob(_Plan("blob", [(key, gen)], attributes, {}, {}))
                return
            half = len(plan.chunks) // 2
            for part in (plan.chunks[:half], plan.chunks[half:]):
                keys = {key for key, _ in part}
                await self._quilt_or_split(_Plan(
                    "quilt", part, plan.attributes,
                    {k: v for k, v in plan.tags.items() if k in keys},
                    {k: v for k, v in plan.caps.items() if k in keys},
                ))  # fmt: skip

    async def _upload_quilt(self, plan: _Plan) -> None:
        idents = {f"{k[0]}.{k[1]}": (k, gen) for k, gen in plan.chunks}
        inline = self.staging.small_bytes([k for k, _ in plan.chunks])
        answer = await self._call(plan)
        for ident in answer.get("holes", []):
            self.stats.holes += 1
            self._commit_empty(*idents[ident])
        if answer["result"] is None:
            return
        result = result_from_json(answer["result"])
        # Copies for the segment cache: small chunks' bytes are at hand, files are read off the
        # loop before the commits; a copy is used only if its chunk commits, i.e. did not
        # change since the upload (nor since the copy).
        files = {
            ident: self.staging.path(idents[ident][0])
            for ident, length in answer["lengths"].items()
            if length <= WRITE_THROUGH_MAX and idents[ident][0] not in inline
        }
        copies = await trio.to_thread.run_sync(_read_files, files)
        for ident, (key, _) in idents.items():
            if key in inline:
                copies[ident] = inline[key]
        committed = self._commit_certified(
            _Certified(result, "quilt", [
                (idents[ident][0], idents[ident][1], patch, answer["lengths"][ident])
                for ident, patch in answer["patches"].items()
            ])
        )  # fmt: skip
        for ident, patch in answer["patches"].items():
            copy = copies.get(ident)
            if copy is None or idents[ident][0] not in committed:
                continue
            length = answer["lengths"][ident]
            if len(copy) >= length and not any(copy[length:]):  # trailing zeros not stored
                self.content.remember_patch(patch, copy[:length])
        self.stats.quilts += 1
        self._account(result, len(answer["patches"]), sum(answer["lengths"].values()))

    def _account(self, result: StoreResult, chunks: int, nbytes: int) -> None:
        self.stats.chunks += chunks
        self.stats.bytes += nbytes
        self.stats.wal_spent += result.cost

    # -- database ---------------------------------------------------------------------------

    def _blob_row(self, r: StoreResult, kind: str) -> int:
        """The blobs row of a certified blob, unreferenced (and so due for deletion) until a
        chunk is committed to it."""
        row = self.db.execute("SELECT id FROM blobs WHERE object_id = ?", (r.object_id,)).fetchone()
        if row is not None:
            return int(row[0])
        cur = self.db.execute(
            "INSERT INTO blobs (blob_id, object_id, kind, size, encoded_size, end_epoch, "
            "refcount, deleted_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (str(r.blob_id), r.object_id, kind, r.size, r.encoded_size, r.end_epoch, time.time()),
        )
        return int(cur.lastrowid or 0)

    def _commit_certified(self, done: _Certified) -> set[Key]:
        """Record a certified upload (`_commit_all`). If the database cannot take it (a full
        disk), the result is kept and its chunks held: `_retry_commits` records it once there
        is room, and nothing is uploaded (nor paid for) again meanwhile. Raises DiskFull then,
        so the job counts as failed (sync says why)."""
        try:
            return self._commit_all(done)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            self._uncommitted.append(done)
            self._held.update(key for key, _, _, _ in done.uploaded)
            self.stats.uncommitted = len(self._uncommitted)
            log.error("certified %s, but the volume's disk is full: its commit waits (%s)",
                      done.result.object_id, exc)  # fmt: skip
            raise DiskFull(errno.ENOSPC, f"the certified upload cannot be recorded: {exc}") from exc

    def _retry_commits(self) -> None:
        """Commit the certified uploads the database refused earlier (room may be back).
        Whatever stops this (still full, or anything else) keeps the rest for later."""
        while self._uncommitted:
            done = self._uncommitted[0]
            try:
                self._commit_all(done)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                break
            del self._uncommitted[0]
            self._held.difference_update(key for key, _, _, _ in done.uploaded)
            log.info("committed the certified upload %s", done.result.object_id)
            self._progressed()
        self.stats.uncommitted = len(self._uncommitted)

    def _commit_all(self, certified: _Certified) -> set[Key]:
        """Record the certified blob and point the chunks that did not change during their
        upload at it (each its patch and length), in one transaction, then drop their staged
        bytes; the chunks committed. One transaction for a quilt's hundreds of files:
        committing them one by one held the loop ~0.1 s per quilt. The blob's row is in the
        same transaction, so a failed commit leaves no row that the deletion of unused blobs
        could take while the result waits to be committed again."""
        done: set[Key] = set()
        with transaction(self.db):
            blob = self._blob_row(certified.result, certified.kind)
            for key, gen, patch, length in certified.uploaded:
                c = self.content.chunk(*key)
                if c is None or not c.staged or self.content.gen.get(key) != gen:
                    log.debug("chunk %s changed during its upload; it is uploaded again", key)
                    continue
                self.db.execute(
                    "UPDATE chunks SET staged = 0, blob = ?, patch = ?, length = ? "
                    "WHERE inode = ? AND chunkno = ?",
                    (blob, patch, length, *key),
                )
                self.content.decref(c.blob)
                done.add(key)
            if done:
                self.db.execute(
                    "UPDATE blobs SET refcount = refcount + ?, deleted_at = NULL WHERE id = ?",
                    (len(done), blob),
                )
        self.staging.remove_all(done)
        for key in done:
            self.content.last_write.pop(key, None)
        return done

    def _commit_empty(self, key: Key, gen: int) -> None:
        """A staged chunk with no bytes is a hole: no blob needed."""
        c = self.content.chunk(*key)
        if c is None or not c.staged or self.content.gen.get(key) != gen:
            return
        with transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno = ?", key)
            self.content.decref(c.blob)
        self.staging.remove(key)

    async def _delete_unused(self) -> None:
        """Delete blobs no chunk uses (their Storage goes back to the wallet for reuse)."""
        # only blobs unused since before the newest certified checkpoint was taken, so that
        # checkpoint never refers to a deleted blob (walrusfs/fs/checkpoint.py)
        safe = float(get_param(self.db, "checkpoint_time") or 0.0)
        due = self.db.execute(
            "SELECT id, object_id FROM blobs WHERE refcount <= 0 AND deleted_at < ? "
            "AND (kind = 'checkpoint' OR deleted_at < ?)",
            (time.time() - DELETE_DELAY, safe),
        ).fetchall()
        for row_id, object_id in due:
            try:
                await self.worker.call({"op": "delete", "object_id": object_id})
            except chain_errors.ObjectNotFound:
                log.info("blob object %s is already gone", object_id)
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("could not delete unused blob %s (retrying later): %s", object_id, exc)
                continue
            cur = self.db.execute("DELETE FROM blobs WHERE id = ? AND refcount <= 0", (row_id,))
            self.housekeeping(cur.rowcount)

    # -- compaction -------------------------------------------------------------------------

    def sparse_quilts(self) -> list[tuple[int, list[tuple[int, int, int]]]]:
        """Quilts worth compacting, with their live chunks (inode, chunkno, length) not
        re-staged yet: those where a quilt of the live files alone would be below
        `compact_below` of the quilt's size. Measured against the quilt a fresh upload would
        make, not against the file bytes, so a fully live quilt of tiny files (mostly column
        padding) is never compacted."""
        if self.config.compact_below <= 0:
            return []
        live: dict[int, list[tuple[int, int, int]]] = {}
        staged: set[int] = set()
        sizes: dict[int, int] = {}
        for blob, size, inode, chunkno, length, is_staged in self.db.execute(
            "SELECT b.id, b.size, c.inode, c.chunkno, c.length, c.staged FROM blobs b "
            "JOIN chunks c ON c.blob = b.id JOIN inodes i ON i.id = c.inode "
            "WHERE b.kind = 'quilt' AND b.refcount > 0 AND i.nlink > 0"
        ):
            sizes[blob] = size
            if is_staged:
                staged.add(blob)
            else:
                live.setdefault(blob, []).append((inode, chunkno, length))
        out = []
        for blob, chunks in live.items():
            if blob in staged:
                continue  # being compacted already
            if self._dense.get(blob) == len(chunks):
                continue  # measured exactly, and no file of it deleted since
            lengths = [length for _, _, length in chunks]
            limit = self.config.compact_below * sizes[blob]
            # the estimate first (cheap; with paths of ordinary length it is above the exact
            # size, so a full quilt stops here), then the exact tags for those that pass
            if quilt_blob_size(lengths, self.params) >= limit:
                continue
            if quilt_blob_size(lengths, self.params, self._tag_sizes(chunks)) < limit:
                out.append((blob, chunks))
            else:
                self._dense[blob] = len(chunks)
        return out

    def _tag_sizes(self, chunks: list[tuple[int, int, int]]) -> list[int]:
        return [len(self._file_attr((inode, chunkno), length)) for inode, chunkno, length in chunks]

    async def compact(self) -> int:
        """Re-stage the live files of sparse quilts (Content.stage reads each patch back):
        they are quilted again with other small files, the old quilt's reference count drops
        to 0 and it is deleted like any unused blob, its Storage reused. Costs a read of the
        live patches and an upload of them; returns the chunks re-staged."""
        self._compacted_at = time.monotonic()
        if time.monotonic() < self._retry_at and not self._forced:
            return 0  # uploads are failing (no WAL?): do not add to what waits
        self._compacting += 1
        try:
            restaged = await self._compact()
        finally:
            self._compacting -= 1
        if restaged:
            self.wake()
        return restaged

    async def _compact(self) -> int:
        budget = COMPACT_BATCH
        restaged = 0
        for blob, chunks in self.sparse_quilts():
            if budget <= 0:
                break
            log.info(
                "compacting quilt %d: %d live file(s) of %s re-staged", blob, len(chunks),
                ", ".join(files_of_blob(self.db, blob, limit=3)),
            )  # fmt: skip
            before = restaged
            for inode, chunkno, length in chunks:
                try:
                    await self.content.stage(inode, chunkno)
                except OSError as exc:
                    log.warning("compaction: inode %d chunk %d not re-staged: %s", inode,
                                chunkno, exc)  # fmt: skip
                    continue
                budget -= length
                restaged += 1
            if restaged > before:
                self.stats.compacted += 1
        self.stats.restaged += restaged
        return restaged

    # -- sync -------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Upload everything staged now, and return when it is certified.

        Raises OSError(EIO) with the reason if an upload fails meanwhile (the data stays
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
                    raise OSError(5, f"upload failed: {self.stats.last_error}")
                progress = self._progress
                self.wake()
                with trio.move_on_after(1.0):
                    await progress.wait()
        finally:
            self._forced -= 1
