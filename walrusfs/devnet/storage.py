"""A storage node's disk: checksummed sliver and metadata files, and its view of the chain.

Layout under the node directory (`walrusfs devnet status` prints it):

    blobs/<blob id>/metadata            BlobMetadata, inner BCS (as PUT), in a record
    blobs/<blob id>/<pair>.primary      SliverData BCS of the primary sliver of pair <pair>
    blobs/<blob id>/<pair>.secondary    SliverData BCS of the secondary sliver of pair <pair>
    node.db                             SQLite: registrations and the follower cursor (`SCHEMA`)

A record is the file's whole content:

    width   field
    4       magic     b"WSN2"
    4       checksum  CRC-32 (zlib's, little-endian) of the payload
    rest    payload

(`WSN1` records, which older devnets wrote, carry a 32-byte BLAKE2b-256 instead and are read
too. The checksum detects bit rot and torn writes, as RocksDB's block CRCs do for real nodes;
it is not a defence against someone who can write the node's disk. CRC-32 is enough for that
and cheaper: BLAKE2b costs 0.16 ms per 200 KB sliver on each PUT and GET, CRC-32 0.03 ms.)

Writes go to a temporary file in the same directory and are renamed over the target: after a
kill -9 a file is the old record or the new one, never a torn one, and temporary leftovers are
removed at start. They are not fsynced one by one (two fsyncs per sliver would be most of a
node's time: a 64 MiB blob at 1000 shards is 2000 slivers). Instead `sync_blob` flushes the
node's filesystem once (syncfs) before the node signs a blob's confirmation, as a database's
group commit does: what a node has confirmed survives a power cut; a record torn by one that came
before its confirmation fails its checksum and counts as absent, which the client's upload
(not yet certified) repairs. A record whose checksum fails (bit rot, a truncated
copy) is treated as absent and removed, so the node never serves bytes it did not verify when
they arrived; the client recovers from the other nodes.

Deletion removes the blob's directory. Nothing else on the node holds sliver bytes: the index
keeps only blob IDs, object IDs and epochs.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import logging
import os
import shutil
import sqlite3
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from codec.blob_id import BlobId
from codec.sliver import Axis


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return cast(Callable[[int], int], fn)


_syncfs = _load_syncfs()

MAGIC = b"WSN2"
log = logging.getLogger(__name__)

_HEADER = len(MAGIC) + 4
_MAGIC_V1 = b"WSN1"  # BLAKE2b-256 records of older devnets
_HEADER_V1 = len(_MAGIC_V1) + 32
_TMP_PREFIX = ".tmp-"

SCHEMA = """
-- One row per registered, not deleted Blob object (permanent or deletable), from the events of
-- the Walrus package. A blob ID is stored while any of its rows has end_epoch > current epoch.
--   object_id         0x-hex ID of the Sui Blob object (BlobRegistered.object_id)
--   blob_id           32 raw bytes
--   deletable         0/1
--   size              unencoded length the blob was registered with
--   registered_epoch  epoch of BlobRegistered
--   end_epoch         first epoch the blob is no longer stored (raised by extensions)
--   certified_epoch   epoch of the first BlobCertified; NULL: not certified
--   event_tx/event_ix EventID of the latest status-changing event (registration/certification)
CREATE TABLE IF NOT EXISTS registrations (
    object_id TEXT PRIMARY KEY,
    blob_id BLOB NOT NULL,
    deletable INTEGER NOT NULL,
    size INTEGER NOT NULL,
    registered_epoch INTEGER NOT NULL,
    end_epoch INTEGER NOT NULL,
    certified_epoch INTEGER,
    event_tx TEXT NOT NULL,
    event_ix INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS registrations_by_blob ON registrations (blob_id);
-- Storage pools (StoragePoolCreated, StoragePoolExtended; walrus storage_pool_info.rs): a
-- pooled blob is stored until its pool's end epoch, which an extension raises.
CREATE TABLE IF NOT EXISTS pools (
    pool_id TEXT PRIMARY KEY,
    end_epoch INTEGER NOT NULL
);
-- The registrations that are pooled blobs (PooledBlobRegistered), and their pool: their
-- end_epoch in `registrations` is their pool's, raised with it.
CREATE TABLE IF NOT EXISTS pooled (
    object_id TEXT PRIMARY KEY,
    pool_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pooled_by_pool ON pooled (pool_id);
-- Blob IDs the chain declared invalid (InvalidBlobID events): event_tx/event_ix = that event.
CREATE TABLE IF NOT EXISTS invalid_blobs (
    blob_id BLOB PRIMARY KEY,
    event_tx TEXT NOT NULL,
    event_ix INTEGER NOT NULL
);
-- key/value: `cursor` = last checkpoint whose events are applied (0: none);
--            `epoch` = the Walrus epoch the node last saw;
--            `attested` = the last epoch whose shards the node attested to hold
--            (epoch_sync_done), after fetching the shards it gained.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass
class PoolEvents:
    """One checkpoint's storage-pool events, as the index applies them."""

    #: (pool ID, end epoch) of StoragePoolCreated
    created: list[tuple[str, int]] = field(default_factory=list)
    #: (pool ID, new end epoch) of StoragePoolExtended
    extended: list[tuple[str, int]] = field(default_factory=list)
    #: pooled blob object ID -> its pool (PooledBlobRegistered)
    pooled: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    object_id: str
    blob_id: bytes
    deletable: bool
    size: int
    registered_epoch: int
    end_epoch: int
    certified_epoch: int | None
    event_tx: str
    event_ix: int


def _record(payload: bytes) -> bytes:
    return MAGIC + zlib.crc32(payload).to_bytes(4, "little") + payload


def _payload(raw: bytes) -> bytes | None:
    """The payload of an intact record, None if it fails its checksum."""
    if raw[: len(MAGIC)] == MAGIC:
        payload = raw[_HEADER:]
        ok = zlib.crc32(payload).to_bytes(4, "little") == raw[len(MAGIC) : _HEADER]
    elif raw[: len(_MAGIC_V1)] == _MAGIC_V1:
        payload = raw[_HEADER_V1:]
        digest = hashlib.blake2b(payload, digest_size=32).digest()
        ok = digest == raw[len(_MAGIC_V1) : _HEADER_V1]
    else:
        return None
    return payload if ok else None


class CorruptRecord(OSError):
    """A file failed its checksum: it is treated as missing."""


class NodeStore:
    """Files and index of one node. Thread-safe: the node calls it from worker threads."""

    def __init__(self, root: Path, fsync: bool = True) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.fsync = fsync
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            str(root / "node.db"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._remove_leftovers()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- files ------------------------------------------------------------------------------

    def _remove_leftovers(self) -> None:
        for directory in self.blobs.iterdir():
            if not directory.is_dir():
                continue
            for tmp in directory.glob(_TMP_PREFIX + "*"):
                tmp.unlink(missing_ok=True)

    def _dir(self, blob_id: BlobId) -> Path:
        return self.blobs / str(blob_id)

    @staticmethod
    def _sliver_name(pair: int, axis: Axis) -> str:
        return f"{pair}.{axis.value}"

    def _write(self, path: Path, payload: bytes) -> None:
        tmp = f"{path.parent}/{_TMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            fd = os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # the blob's first file
            path.parent.mkdir(exist_ok=True)
            fd = os.open(tmp, flags, 0o644)
        try:
            record = memoryview(_record(payload))
            while record:
                record = record[os.write(fd, record) :]
        finally:
            os.close(fd)
        os.replace(tmp, path)

    def sync_blob(self, blob_id: BlobId) -> None:
        """Make the blob's files durable before its confirmation is signed (see the module
        docstring): one syncfs of the filesystem holding them, or a sync where there is none."""
        if not self.fsync:
            return
        try:
            fd = os.open(self._dir(blob_id), os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def _read(self, path: Path) -> bytes | None:
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = _payload(raw)
        if payload is None:
            path.unlink(missing_ok=True)
            raise CorruptRecord(f"{path}: checksum mismatch; removed")
        return payload

    def put_metadata(self, blob_id: BlobId, metadata_bcs: bytes) -> None:
        self._write(self._dir(blob_id) / "metadata", metadata_bcs)

    def get_metadata(self, blob_id: BlobId) -> bytes | None:
        """The stored metadata (inner BCS), None if there is none.

        Raises:
            CorruptRecord: the file failed its checksum (it is removed).
        """
        return self._read(self._dir(blob_id) / "metadata")

    def has_metadata(self, blob_id: BlobId) -> bool:
        return (self._dir(blob_id) / "metadata").exists()

    def put_sliver(self, blob_id: BlobId, pair: int, axis: Axis, sliver_bcs: bytes) -> None:
        self._write(self._dir(blob_id) / self._sliver_name(pair, axis), sliver_bcs)

    def get_sliver(self, blob_id: BlobId, pair: int, axis: Axis) -> bytes | None:
        """The stored `SliverData` of pair `pair`, None if there is none.

        Raises:
            CorruptRecord: the file failed its checksum (it is removed).
        """
        return self._read(self._dir(blob_id) / self._sliver_name(pair, axis))

    def has_sliver(self, blob_id: BlobId, pair: int, axis: Axis) -> bool:
        return (self._dir(blob_id) / self._sliver_name(pair, axis)).exists()

    def missing_pairs(self, blob_id: BlobId, pairs: list[int]) -> list[int]:
        """The pairs of `pairs` not holding both slivers (one directory listing)."""
        try:
            names = set(os.listdir(self._dir(blob_id)))
        except FileNotFoundError:
            return list(pairs)
        return [
            p
            for p in pairs
            if self._sliver_name(p, Axis.PRIMARY) not in names
            or self._sliver_name(p, Axis.SECONDARY) not in names
        ]

    def sync_all(self) -> None:
        """Make everything written so far durable (one syncfs): after a shard sync, before the
        node attests it holds its shards."""
        if not self.fsync:
            return
        fd = os.open(self.blobs, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    def remove_pairs_where(self, drop: Callable[[BlobId, int], bool]) -> int:
        """Remove the sliver files of every pair `drop(blob, pair)` selects; how many."""
        removed = 0
        for blob in self.stored_blobs():
            directory = self._dir(blob)
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                pair, dot, axis = name.partition(".")
                wanted = dot and pair.isdigit() and axis in ("primary", "secondary")
                if wanted and drop(blob, int(pair)):
                    (directory / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def stored_blobs(self) -> list[BlobId]:
        out = []
        for directory in self.blobs.iterdir():
            with contextlib.suppress(ValueError):
                out.append(BlobId.parse(directory.name))
        return out

    def remove_blob(self, blob_id: BlobId) -> bool:
        path = self._dir(blob_id)
        if not path.exists():
            return False
        shutil.rmtree(path)
        return True

    # -- index ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def meta(self, key: str, default: int = 0) -> int:
        """The index's value of `key` (`cursor`, `epoch`, `attested`), or `default`."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else int(row[0])

    def apply_events(
        self,
        cursor: int,
        registered: list[Registration],
        certified: list[tuple[str, int | None, int, str, int]],
        deleted: list[str],
        invalid: list[tuple[bytes, str, int]] | None = None,
        *,
        pools: PoolEvents | None = None,
    ) -> None:
        """Apply one checkpoint's events and advance the cursor, atomically.

        Args:
            cursor: the checkpoint whose events these are.
            registered: Blobs and pooled blobs (a pooled blob's end epoch is its pool's,
                filled in here).
            certified: (object_id, end_epoch, epoch, event_tx, event_ix) rows; an extension
                is a certification that only raises end_epoch. A pooled blob's row has
                end_epoch None (its pool's stays).
            deleted: object IDs of deleted Blobs and pooled blobs.
            invalid: (blob_id, event_tx, event_ix) of InvalidBlobID events.
            pools: the storage-pool events.
        """
        pools = pools or PoolEvents()
        with self._tx() as db:
            for pool_id, end_epoch in pools.created:
                db.execute("INSERT OR REPLACE INTO pools VALUES (?, ?)", (pool_id, end_epoch))
            for object_id, pool_id in pools.pooled.items():
                row = db.execute(
                    "SELECT end_epoch FROM pools WHERE pool_id = ?", (pool_id,)
                ).fetchone()
                if row is None:  # a pool created before this index began: not stored here
                    log.warning("pooled blob %s of an unknown pool %s: ignored", object_id, pool_id)
                    registered = [r for r in registered if r.object_id != object_id]
                    continue
                db.execute("INSERT OR REPLACE INTO pooled VALUES (?, ?)", (object_id, pool_id))
                registered = [
                    dataclasses.replace(r, end_epoch=int(row[0])) if r.object_id == object_id else r
                    for r in registered
                ]
            for r in registered:
                db.execute(
                    "INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.object_id,
                        r.blob_id,
                        int(r.deletable),
                        r.size,
                        r.registered_epoch,
                        r.end_epoch,
                        r.certified_epoch,
                        r.event_tx,
                        r.event_ix,
                    ),
                )
            for object_id, cert_end, epoch, tx, ix in certified:
                db.execute(
                    "UPDATE registrations SET end_epoch = COALESCE(?, end_epoch), "
                    "certified_epoch = COALESCE(certified_epoch, ?), event_tx = ?, event_ix = ? "
                    "WHERE object_id = ?",
                    (cert_end, epoch, tx, ix, object_id),
                )
            for pool_id, end_epoch in pools.extended:
                db.execute("UPDATE pools SET end_epoch = ? WHERE pool_id = ?", (end_epoch, pool_id))
                db.execute(
                    "UPDATE registrations SET end_epoch = ? WHERE object_id IN "
                    "(SELECT object_id FROM pooled WHERE pool_id = ?)",
                    (end_epoch, pool_id),
                )
            for object_id in deleted:
                db.execute("DELETE FROM registrations WHERE object_id = ?", (object_id,))
                db.execute("DELETE FROM pooled WHERE object_id = ?", (object_id,))
            for blob_id, tx, ix in invalid or []:
                db.execute(
                    "INSERT OR IGNORE INTO invalid_blobs VALUES (?, ?, ?)", (blob_id, tx, ix)
                )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)", (str(cursor),)
            )

    def set_meta(self, key: str, value: int) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))

    def live_blobs(self, epoch: int) -> list[tuple[BlobId, bool]]:
        """Blob IDs with a registration valid in `epoch`, and whether one is certified."""
        with self._lock:
            rows = self._db.execute(
                "SELECT blob_id, MAX(certified_epoch IS NOT NULL) FROM registrations "
                "WHERE end_epoch > ? GROUP BY blob_id",
                (epoch,),
            ).fetchall()
        return [(BlobId(bytes(r[0])), bool(r[1])) for r in rows]

    def set_epoch(self, epoch: int) -> None:
        """Record the epoch and forget registrations that have expired."""
        with self._tx() as db:
            db.execute("DELETE FROM registrations WHERE end_epoch <= ?", (epoch,))
            db.execute(
                "DELETE FROM pooled WHERE object_id NOT IN (SELECT object_id FROM registrations)"
            )
            db.execute("DELETE FROM pools WHERE end_epoch <= ?", (epoch,))
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('epoch', ?)", (str(epoch),)
            )

    def registrations(self, blob_id: BlobId, epoch: int) -> list[Registration]:
        """The blob's registrations still valid in `epoch`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM registrations WHERE blob_id = ? AND end_epoch > ?",
                (blob_id.raw, epoch),
            ).fetchall()
        return [
            Registration(r[0], bytes(r[1]), bool(r[2]), r[3], r[4], r[5], r[6], r[7], r[8])
            for r in rows
        ]

    def invalid_event(self, blob_id: BlobId) -> tuple[str, int] | None:
        """The InvalidBlobID event of the blob, if the chain declared it invalid."""
        with self._lock:
            row = self._db.execute(
                "SELECT event_tx, event_ix FROM invalid_blobs WHERE blob_id = ?", (blob_id.raw,)
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def live_blob_ids(self, epoch: int) -> set[bytes]:
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT blob_id FROM registrations WHERE end_epoch > ?", (epoch,)
            ).fetchall()
        return {bytes(r[0]) for r in rows}
