"""Recording certified uploads in the volume database.

Order, never violated: blob certified -> the chunk rows point at it and the blob's row is
recorded (one transaction) -> the staged bytes are removed. A chunk that changed while it
uploaded (its generation moved on) is left staged: the blob is unreferenced and deleted like
any unused blob.

A certified upload whose commit fails (meta.db on a full disk: "database or disk is full")
is kept in memory and only its commit is retried: uploading it again would pay for a new
blob at every retry.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from dataclasses import dataclass

from cache import Key
from walrusfs.fs import blobs
from walrusfs.fs.content import Content
from walrusfs.fs.schema import transaction
from walrusfs.store.writes import StoreResult

log = logging.getLogger(__name__)


@dataclass
class Uploaded:
    """A certified upload: the blob, and each chunk it holds as uploaded."""

    result: StoreResult
    kind: str
    uploaded: list[tuple[Key, int, str | None, int]]  # chunk, generation, patch, length


class DiskFull(OSError):
    """The volume's database could not record a certified upload; retried from memory."""


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "database or disk is full" in str(exc)
    )


class Committer:
    def __init__(self, db: sqlite3.Connection, content: Content) -> None:
        self.db = db
        self.content = content
        self.staging = content.staging
        #: certified uploads whose commit failed, and their chunks (not uploaded again)
        self.uncommitted: list[Uploaded] = []
        self.held: set[Key] = set()
        #: pooled blobs the uploader deleted or is deleting (and blobs it abandoned): a pool
        #: keeps one entry per blob ID, so an upload of equal bytes may be answered with one
        #: of them; such a result is never committed (its chunks stay staged and upload anew)
        self.deleted: set[str] = set()

    def commit(self, done: Uploaded) -> set[Key]:
        """Record a certified upload (`commit_all`). If the database cannot take it (a full
        disk), the result is kept and its chunks held: `retry` records it once there
        is room, and nothing is uploaded (nor paid for) again meanwhile.

        Raises:
            DiskFull: the disk is full (the result waits in `uncommitted`), so the job counts
                as failed and sync says why.
            sqlite3.OperationalError: any other failure of the commit (nothing is kept).
        """
        try:
            return self.commit_all(done)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            self.uncommitted.append(done)
            self.held.update(key for key, _, _, _ in done.uploaded)
            log.error(
                "certified %s, but the volume's disk is full: its commit waits (%s)",
                done.result.object_id,
                exc,
            )
            raise DiskFull(errno.ENOSPC, f"the certified upload cannot be recorded: {exc}") from exc

    def retry(self) -> int:
        """Commit the certified uploads the database refused earlier (room may be back); how
        many were. Whatever stops this (still full, or anything else) keeps the rest for
        later.

        Raises:
            sqlite3.OperationalError: a failure other than a full disk.
        """
        committed = 0
        while self.uncommitted:
            done = self.uncommitted[0]
            try:
                self.commit_all(done)
            except sqlite3.OperationalError as exc:
                if not is_full(exc):
                    raise
                break
            del self.uncommitted[0]
            self.held.difference_update(key for key, _, _, _ in done.uploaded)
            log.info("committed the certified upload %s", done.result.object_id)
            committed += 1
        return committed

    def commit_all(self, certified: Uploaded) -> set[Key]:
        """Record the certified blob and point the chunks that did not change during their
        upload at it (each its patch and length), in one transaction, then drop their staged
        bytes; the chunks committed. One transaction for a quilt's hundreds of files:
        committing them one by one would hold the loop ~0.1 s per quilt. The blob's row is in
        the same transaction, so a failed commit leaves no row that the deletion of unused
        blobs could take while the result waits to be committed again."""
        done: set[Key] = set()
        if certified.result.object_id in self.deleted:
            log.warning(
                "not committing %s: that blob was deleted (its chunks upload again)",
                certified.result.object_id,
            )
            return done
        with transaction(self.db):
            blob = blobs.add_unused(
                self.db, blobs.Certified.of_result(certified.result, certified.kind)
            )
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
                blobs.incref(self.db, blob, len(done))
        self.staging.remove_all(done)
        for key in done:
            self.content.last_write.pop(key, None)
        return done

    def commit_empty(self, key: Key, gen: int) -> None:
        """A staged chunk with no bytes is a hole: no blob needed."""
        c = self.content.chunk(*key)
        if c is None or not c.staged or self.content.gen.get(key) != gen:
            return
        with transaction(self.db):
            self.db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno = ?", key)
            self.content.decref(c.blob)
        self.staging.remove(key)
