"""Every statement on the `blobs` table (schema.py documents its columns and sentinels).

No other module writes SQL on `blobs`: the rules of a row's life are here, in one place.

- A row is inserted only for a certified blob. A data blob starts unused (`refcount` 0,
  `deleted_at` now) and is due for deletion unless a chunk is committed to it; a checkpoint
  starts in use (`refcount` 1), kept by retention instead of by chunks.
- `incref` / `decref` move the count as chunks point at a blob or leave it; the moment the
  count reaches 0 is `deleted_at`, from which the deletion delay is counted.
- A row is deleted only while unused, once its Blob object is gone on chain.

Functions take the connection and never open a transaction of their own: the caller groups
them with its other statements (`schema.transaction`), between two awaits.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Container
from dataclasses import dataclass

import codec
from chain import move_types as mt
from walrusfs.store.writes import StoreResult

CHECKPOINT = "checkpoint"  # kind of a metadata checkpoint blob (checkpoint.py)
QUILT = "quilt"  # kind of a QuiltV1 blob of small files
BLOB = "blob"  # kind of a blob holding one chunk
#: the `walrusfs:kind` attribute on chain of a blob holding one chunk (docs/formats.md): the
#: name the blobs on chain carry, so it stays as it is; the table's kind is BLOB
DATA_ATTR = "data"


def kind_of(attrs: dict[str, str]) -> str:
    """The table's kind of an uploaded blob from its `walrusfs:kind` attribute."""
    return QUILT if attrs.get("walrusfs:kind") == QUILT else BLOB


_COLUMNS = "blob_id, object_id, kind, size, encoded_size, end_epoch, refcount, deleted_at, pool"


@dataclass(frozen=True)
class Certified:
    """A certified Walrus blob, as a row records it."""

    blob_id: str  # Walrus blob ID, base64url
    object_id: str  # the Sui Blob object
    kind: str  # BLOB, QUILT or CHECKPOINT
    size: int  # unencoded bytes (sealed, on an encrypted volume)
    encoded_size: int  # bytes paid for on the nodes
    end_epoch: int
    pool: str | None = None  # the StoragePool holding it (None: an owned Blob)

    @classmethod
    def of_result(cls, r: StoreResult, kind: str) -> Certified:
        """The blob an upload certified."""
        return cls(str(r.blob_id), r.object_id, kind, r.size, r.encoded_size, r.end_epoch, r.pool)

    @classmethod
    def of_object(cls, obj: mt.Blob, kind: str) -> Certified:
        """The blob a Sui Blob object holds (found on chain, not uploaded by this process)."""
        return cls(
            str(codec.BlobId.from_u256(obj.blob_id)),
            obj.id,
            kind,
            int(obj.size),
            int(obj.storage.storage_size),
            int(obj.storage.end_epoch),
            obj.pool,
        )

    def values(self, refcount: int, deleted_at: float | None) -> tuple[object, ...]:
        return (
            self.blob_id,
            self.object_id,
            self.kind,
            self.size,
            self.encoded_size,
            self.end_epoch,
            refcount,
            deleted_at,
            self.pool,
        )


@dataclass(frozen=True)
class Row:
    """The columns of a row that its users read (by name, not by position)."""

    id: int
    object_id: str
    refcount: int
    end_epoch: int
    pool: str | None = None  # the StoragePool holding it (None: an owned Blob)


@dataclass(frozen=True)
class Totals:
    """The blobs in use, for status."""

    count: int
    size: int
    encoded_size: int
    earliest_end_epoch: int | None


@dataclass(frozen=True)
class Recount:
    """A row whose reference count did not match its chunks (fsck)."""

    id: int
    was: int
    now: int


@dataclass(frozen=True)
class QuiltChunk:
    """A chunk of a file that is a patch of a quilt in use (compaction)."""

    blob: int
    blob_size: int
    inode: int
    chunkno: int
    length: int
    staged: bool


def _rows(db: sqlite3.Connection, where: str, args: tuple[object, ...]) -> list[Row]:
    """The rows `where` selects (a WHERE / ORDER BY clause of constant text, never data)."""
    return [
        Row(int(r["id"]), str(r["object_id"]), int(r["refcount"]), int(r["end_epoch"]), r["pool"])
        for r in _named(db).execute(
            f"SELECT id, object_id, refcount, end_epoch, pool FROM blobs {where}", args
        )
    ]


# -- inserting --------------------------------------------------------------------------------


def add_unused(db: sqlite3.Connection, blob: Certified) -> int:
    """Record a certified data blob that no chunk uses yet (due for deletion unless a chunk is
    committed to it in the same transaction); the row. A blob already recorded (a retried
    commit of the same upload) keeps its row."""
    found = row_of(db, blob.object_id)
    if found is not None:
        return found
    cur = db.execute(
        f"INSERT INTO blobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        blob.values(0, time.time()),
    )
    return int(cur.lastrowid or 0)


def add_checkpoint(db: sqlite3.Connection, blob: Certified) -> None:
    """Record a certified checkpoint, in use (kept by retention: `retire_checkpoints`); one
    already recorded stays as it is."""
    db.execute(
        f"INSERT OR IGNORE INTO blobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        blob.values(1, None),
    )


# -- reference counts -------------------------------------------------------------------------


def incref(db: sqlite3.Connection, row: int, count: int = 1) -> None:
    """`count` more chunks use the blob: it is no longer due for deletion."""
    db.execute(
        "UPDATE blobs SET refcount = refcount + ?, deleted_at = NULL WHERE id = ?", (count, row)
    )


def decref(db: sqlite3.Connection, row: int, count: int = 1) -> None:
    """`count` chunks no longer use the blob; once unused it is due for deletion, counted from
    now (`due_for_deletion`)."""
    db.execute("UPDATE blobs SET refcount = refcount - ? WHERE id = ?", (count, row))
    db.execute("UPDATE blobs SET deleted_at = ? WHERE id = ? AND refcount <= 0", (time.time(), row))


def recount(db: sqlite3.Connection) -> list[Recount]:
    """Set every data blob's reference count to the chunks that use it (checkpoints are kept by
    retention, not by chunks); the rows that were wrong."""
    wrong = [
        Recount(int(r["id"]), int(r["refcount"]), int(r["uses"]))
        for r in _named(db).execute(
            "SELECT b.id, b.refcount, count(c.blob) AS uses FROM blobs b "
            "LEFT JOIN chunks c ON c.blob = b.id WHERE b.kind != ? GROUP BY b.id "
            "HAVING count(c.blob) != b.refcount",
            (CHECKPOINT,),
        )
    ]
    for r in wrong:
        db.execute(
            "UPDATE blobs SET refcount = ?, deleted_at = CASE WHEN ? = 0 THEN "
            "coalesce(deleted_at, ?) ELSE NULL END WHERE id = ?",
            (r.now, r.now, time.time(), r.id),
        )
    return wrong


def retire_checkpoints(db: sqlite3.Connection, keep: int) -> None:
    """Mark the checkpoints beyond the newest `keep` unused (deleted like any unused blob)."""
    db.execute(
        "UPDATE blobs SET refcount = 0, deleted_at = ? WHERE kind = ? AND refcount > 0 AND id "
        "NOT IN (SELECT id FROM blobs WHERE kind = ? ORDER BY id DESC LIMIT ?)",
        (time.time(), CHECKPOINT, CHECKPOINT, keep),
    )


# -- deletion ---------------------------------------------------------------------------------


def due_for_deletion(db: sqlite3.Connection, *, unused_before: float, safe: float) -> list[Row]:
    """Unused blobs to delete on chain: unused since before `unused_before`, and, for data
    blobs, since before `safe` (the time of the newest certified checkpoint: that checkpoint
    then never refers to a deleted blob).

    Args:
        unused_before, safe: Unix times (`time.time()` seconds), as `deleted_at` is.
    """
    return _rows(
        db,
        "WHERE refcount <= 0 AND deleted_at < ? AND (kind = ? OR deleted_at < ?)",
        (unused_before, CHECKPOINT, safe),
    )


def unused(db: sqlite3.Connection, row: int) -> bool:
    """No chunk uses the blob (still): it may be deleted now."""
    found = db.execute("SELECT refcount FROM blobs WHERE id = ?", (row,)).fetchone()
    return found is not None and int(found[0]) <= 0


def delete_unused(db: sqlite3.Connection, row: int) -> int:
    """Forget a row whose Blob object is gone, unless a chunk uses it again; rows deleted."""
    return db.execute("DELETE FROM blobs WHERE id = ? AND refcount <= 0", (row,)).rowcount


# -- lifetime ---------------------------------------------------------------------------------


def due_for_renewal(db: sqlite3.Connection, epoch: int, horizon: int) -> list[Row]:
    """Owned blobs in use that are still stored at `epoch` and end within `horizon` epochs
    of it, the soonest first (pooled blobs are renewed with their pool: `pool_end`)."""
    return _rows(
        db,
        "WHERE refcount > 0 AND pool IS NULL AND end_epoch > ? AND end_epoch - ? <= ? "
        "ORDER BY end_epoch",
        (epoch, epoch, horizon),
    )


def set_end_epoch(db: sqlite3.Connection, row: int, end_epoch: int) -> None:
    db.execute("UPDATE blobs SET end_epoch = ? WHERE id = ?", (end_epoch, row))


def pools_in_use(db: sqlite3.Connection) -> list[str]:
    """The storage pools holding a blob in use (renewed each; usually one)."""
    return [
        str(p)
        for (p,) in db.execute(
            "SELECT DISTINCT pool FROM blobs WHERE refcount > 0 AND pool IS NOT NULL ORDER BY pool"
        )
    ]


def set_pool_end(db: sqlite3.Connection, pool: str, end_epoch: int) -> int:
    """Every blob of `pool` now ends at `end_epoch` (the pool was renewed); rows changed."""
    return db.execute(
        # only rows that differ: an update that changes nothing still counts as a change of
        # the database (`total_changes`), which would take a checkpoint for nothing
        "UPDATE blobs SET end_epoch = ? WHERE pool = ? AND end_epoch != ?",
        (end_epoch, pool, end_epoch),
    ).rowcount


def expiring(db: sqlite3.Connection, epoch: int, horizon: int) -> tuple[int, int | None]:
    """(blobs in use ending within `horizon` epochs of `epoch` or before, the earliest end)."""
    count, earliest = db.execute(
        "SELECT count(*), min(end_epoch) FROM blobs WHERE refcount > 0 AND end_epoch - ? <= ?",
        (epoch, horizon),
    ).fetchone()
    return int(count), None if earliest is None else int(earliest)


def end_epoch(db: sqlite3.Connection, row: int) -> int | None:
    found = db.execute("SELECT end_epoch FROM blobs WHERE id = ?", (row,)).fetchone()
    return None if found is None else int(found[0])


def newest_checkpoint_end(db: sqlite3.Connection) -> int | None:
    """The end epoch of the newest checkpoint in use (None: the volume has none)."""
    found = db.execute(
        "SELECT end_epoch FROM blobs WHERE kind = ? AND refcount > 0 ORDER BY id DESC LIMIT 1",
        (CHECKPOINT,),
    ).fetchone()
    return None if found is None else int(found[0])


# -- reading ----------------------------------------------------------------------------------


def row_of(db: sqlite3.Connection, object_id: str) -> int | None:
    found = db.execute("SELECT id FROM blobs WHERE object_id = ?", (object_id,)).fetchone()
    return None if found is None else int(found[0])


def location(db: sqlite3.Connection, row: int) -> tuple[str, int] | None:
    """(Walrus blob ID, stored size) of a row, None if there is no such row."""
    found = db.execute("SELECT blob_id, size FROM blobs WHERE id = ?", (row,)).fetchone()
    return None if found is None else (str(found[0]), int(found[1]))


def all_rows(db: sqlite3.Connection) -> list[Row]:
    return _rows(db, "", ())


def totals(db: sqlite3.Connection) -> Totals:
    r = (
        _named(db)
        .execute(
            "SELECT count(*) AS n, coalesce(sum(size), 0) AS size, "
            "coalesce(sum(encoded_size), 0) AS encoded, min(end_epoch) AS earliest "
            "FROM blobs WHERE refcount > 0"
        )
        .fetchone()
    )
    earliest = r["earliest"]
    return Totals(
        int(r["n"]), int(r["size"]), int(r["encoded"]), None if earliest is None else int(earliest)
    )


def unused_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM blobs WHERE refcount = 0").fetchone()[0])


class KnownDataBlobs(Container[str]):
    """Object IDs of the data blobs the volume records (checkpoints excluded: their writer
    lease may have changed on chain), asked one at a time (`in`): the caller asks about the
    wallet's blobs, and reading every row first cost a mount of a large volume more than
    asking (the object_id index answers each)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __contains__(self, object_id: object) -> bool:
        found = self.db.execute(
            "SELECT 1 FROM blobs WHERE object_id = ? AND kind != ?", (object_id, CHECKPOINT)
        ).fetchone()
        return found is not None


def known_data_blobs(db: sqlite3.Connection) -> KnownDataBlobs:
    """The data blobs the volume records, as a container of object IDs (`KnownDataBlobs`);
    it reads `db` when asked, so `db` must stay open while it is used."""
    return KnownDataBlobs(db)


def chunks_of_missing_blobs(db: sqlite3.Connection) -> list[tuple[int, int]]:
    """(inode, chunkno) of uploaded chunks whose blob row does not exist (fsck)."""
    return [
        (int(inode), int(chunkno))
        for inode, chunkno in db.execute(
            "SELECT inode, chunkno FROM chunks WHERE blob IS NOT NULL AND staged = 0 "
            "AND blob NOT IN (SELECT id FROM blobs)"
        )
    ]


def quilt_states(db: sqlite3.Connection) -> dict[int, tuple[int, int]]:
    """Quilt in use -> (its reference count, its chunks of unlinked files): the cheap look
    compaction takes every minute to find the quilts that lost a file since it last measured
    them. A deleted file still counts in the reference count until its inode is freed (when
    the kernel forgets it), so its unlinking shows in the second number first. One row per
    quilt, and one per unlinked file's chunk (through the partial index of unlinked inodes)."""
    unlinked = {
        int(r["blob"]): int(r["n"])
        for r in _named(db).execute(
            "SELECT c.blob, COUNT(*) AS n FROM inodes i JOIN chunks c ON c.inode = i.id "
            "WHERE i.nlink = 0 AND c.blob IS NOT NULL GROUP BY c.blob"
        )
    }
    return {
        int(r["id"]): (int(r["refcount"]), unlinked.get(int(r["id"]), 0))
        for r in _named(db).execute(
            "SELECT id, refcount FROM blobs WHERE kind = ? AND refcount > 0", (QUILT,)
        )
    }


def quilt_chunks(db: sqlite3.Connection, blob: int) -> list[QuiltChunk]:
    """The chunks of linked files that quilt `blob` holds, with the quilt's size (through the
    index on chunks.blob)."""
    return [
        QuiltChunk(
            int(r["id"]),
            int(r["size"]),
            int(r["inode"]),
            int(r["chunkno"]),
            int(r["length"]),
            bool(r["staged"]),
        )
        for r in _named(db).execute(
            "SELECT b.id, b.size, c.inode, c.chunkno, c.length, c.staged FROM blobs b "
            "JOIN chunks c ON c.blob = b.id JOIN inodes i ON i.id = c.inode "
            "WHERE b.id = ? AND i.nlink > 0",
            (blob,),
        )
    ]


@dataclass(frozen=True)
class Placement:
    """Where a chunk of a file is: staged, or the patch / blob that holds it."""

    staged: bool
    patch: str | None
    blob_id: str | None
    object_id: str | None
    end_epoch: int | None


def placements(db: sqlite3.Connection, inode: int) -> list[Placement]:
    """Each chunk of a file, in file order (the `user.walrus.*` attributes)."""
    return [
        Placement(bool(r["staged"]), r["patch"], r["blob_id"], r["object_id"], r["end_epoch"])
        for r in _named(db).execute(
            "SELECT c.staged, c.patch, b.blob_id, b.object_id, b.end_epoch FROM chunks c "
            "LEFT JOIN blobs b ON b.id = c.blob WHERE c.inode = ? ORDER BY c.chunkno",
            (inode,),
        )
    ]


def _named(db: sqlite3.Connection) -> sqlite3.Cursor:
    """A cursor on `db` whose rows are read by column name (the connection's own factory,
    shared with every other module, stays tuples)."""
    cur = db.cursor()
    cur.row_factory = sqlite3.Row
    return cur
