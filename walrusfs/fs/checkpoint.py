"""Metadata checkpoints: the volume database as a Walrus blob, and restoring it anywhere.

The database is the only thing that knows which blobs make up which file; losing the machine
must not lose the volume. So a consistent snapshot of it is uploaded, on an interval when it
changed, on `walrusfs sync` (and so before `walrusfs umount`), and at a clean unmount. Its
Blob object carries the attributes

    walrusfs:volume   volume ID (params.volume_id)     walrusfs:kind  checkpoint
    walrusfs:name     volume name (the --volume)       walrusfs:seq   1, 2, 3, ...
    walrusfs:time     unix seconds of the snapshot     walrusfs:encryption  wfe1 | none
    walrusfs:key-check  fingerprint of the volume key (a wrong key is refused before reading)
    walrusfs:machine, walrusfs:host   the machine that wrote it (walrusfs/fs/writer.py)
    walrusfs:writer   the lease of the machine that has the volume mounted read-write; absent
                      on the checkpoint of a clean unmount (writer.py)

and its content is (docs/formats.md):

    offset  size  field
    0       4     magic "WFC1"
    4       ...   zlib stream of the SQLite database file (a backup, not the live file + WAL)

sealed as one WFE1 stream (walrusfs/fs/crypto.py) on an encrypted volume. The newest
`RETAIN` checkpoints are kept; older ones are deleted and their Storage reused. A blob that no
file uses any more is deleted only once a checkpoint taken after it became unused is
certified, so the newest checkpoint never refers to a deleted blob.

Restore: mounting a volume name that has no local database looks for the newest checkpoint of
that name among the wallet's Blob objects, and rebuilds the database from it; files then read
from Walrus. What was staged but not uploaded when the snapshot was taken comes back at its
last uploaded version (the log names each such chunk).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import trio

import codec
from chain import errors as chain_errors
from chain import move_types as mt
from chain.client import WalrusChain
from walrusfs.fs import blobs, crypto, schema
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.pool import VolumePool
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

MAGIC = b"WFC1"
RETAIN = 3  # checkpoints kept on Walrus per volume
KIND = blobs.CHECKPOINT


@dataclass(frozen=True)
class CheckpointRef:
    object_id: str
    blob_id: str
    volume_id: str
    name: str
    seq: int
    time: float
    encryption: str
    key_check: str | None
    size: int
    encoded_size: int
    end_epoch: int
    machine: str | None = None  # walrusfs:machine of the machine that wrote it
    host: str | None = None
    writer: str | None = None  # walrusfs:writer, the lease (writer.py)
    pool: str | None = None  # the storage pool holding it (None: an owned Blob)

    def certified(self) -> blobs.Certified:
        """The checkpoint's blob, as the volume records it."""
        return blobs.Certified(
            self.blob_id,
            self.object_id,
            KIND,
            self.size,
            self.encoded_size,
            self.end_epoch,
            self.pool,
        )


class Stamp(Protocol):
    """Who writes the volume: the attributes each checkpoint carries (writer.WriterLease)."""

    def attributes(self, *, final: bool) -> dict[str, str]: ...

    def wrote(self, object_id: str, *, final: bool) -> None: ...


#: database pages copied per backup step; the loop's statements wait for at most one step
SNAPSHOT_PAGES = 256


def _write_snapshot(db: sqlite3.Connection, out: Path) -> int:
    """Copy the database, compress it into `out` (WFC1); the database bytes copied.

    Runs in a worker thread: the one exception to "threads never touch the database". It is
    SQLite's online backup through the mount's own connection (the database is opened in
    EXCLUSIVE mode, so a second connection cannot read it), a few pages per step: a step
    waits while the loop holds a write transaction, and what the loop commits between steps
    is written to the copy as well, so the copy is the database as committed when the last
    step ran, a state between two of the loop's transactions."""
    dest = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        db.backup(dest, pages=SNAPSHOT_PAGES, sleep=0.002)
        data = dest.serialize()
    finally:
        dest.close()
    with open(out, "wb") as f:
        f.write(MAGIC + zlib.compress(data, 6))
        f.flush()
        os.fsync(f.fileno())
    return len(data)


class CheckpointUnusable(ValueError):
    """A checkpoint that does not hold this volume's intact database (an older one may)."""


def decode_checkpoint(blob: bytes, keys: crypto.VolumeKeys | None) -> bytes:
    """The SQLite database file held by a checkpoint blob.

    Args:
        keys: the volume's keys; None for a plaintext checkpoint.

    Raises:
        CheckpointUnusable: not a walrusfs checkpoint, sealed with other keys, or corrupt.
    """
    try:
        plain = crypto.open_stream(keys, blob) if keys is not None else blob
        if plain[:4] != MAGIC:
            raise CheckpointUnusable("not a walrusfs checkpoint (bad magic)")
        return _inflate(plain[4:])
    except (crypto.DecryptError, zlib.error) as exc:
        raise CheckpointUnusable(str(exc)) from None


#: zero bytes a checkpoint may lack at its end: the upload worker left a stored file's
#: trailing zeros out until checkpoints were stored `exact`, and a zlib stream ends with its
#: Adler-32 checksum, whose last bytes are zero in about 1 of 256 checkpoints
MISSING_ZEROS = 4


def _inflate(stream: bytes) -> bytes:
    """The zlib `stream` decompressed; one written before checkpoints were stored exact and
    cut short by its trailing zeros gets them back (the checksum then proves it whole).

    Raises:
        zlib.error: corrupt, or cut by more than MISSING_ZEROS bytes.
    """
    for pad in range(MISSING_ZEROS + 1):
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(stream + bytes(pad))
        except zlib.error:
            if pad == MISSING_ZEROS:
                raise
            continue
        if inflater.eof and not inflater.unused_data:
            return data
    raise zlib.error("incomplete or truncated stream")


class Checkpointer:
    """Uploads checkpoints through the upload worker and keeps the newest RETAIN."""

    def __init__(
        self,
        db: sqlite3.Connection,
        db_path: Path,
        worker: wp.Worker,
        *,
        name: str,
        epochs: int,
        interval: float,
        keys: crypto.VolumeKeys | None,
        pool: VolumePool | None = None,
    ) -> None:
        self.db = db
        self.pool = pool  # the volume's storage pool, if it keeps its blobs in one
        self.db_path = db_path
        self.worker = worker
        self.name = name
        self.epochs = epochs
        self.interval = interval
        self.keys = keys
        self._lock = trio.Lock()
        self._changes_at_last = -1  # _changes() when the last snapshot was taken
        self._ignored = 0  # changes that need no checkpoint (see ignore)
        self.last_error: str | None = None
        self.stamp: Stamp | None = None  # set by the mount of a writer

    @property
    def seq(self) -> int:
        return int(schema.get_param(self.db, "checkpoint_seq") or 0)

    @property
    def time(self) -> float | None:
        """Unix time of the snapshot of the newest certified checkpoint (None: none yet)."""
        value = schema.get_param(self.db, "checkpoint_time")
        return None if value is None else float(value)

    def _changes(self) -> int:
        return self.db.total_changes - self._ignored

    def ignore(self, changes: int) -> None:
        """Housekeeping that a restored checkpoint redoes by itself (forgetting blobs already
        deleted on chain) is no reason for a new checkpoint."""
        self._ignored += changes

    def dirty(self) -> bool:
        return self._changes() != self._changes_at_last

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            try:
                await self.checkpoint()
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                log.warning("checkpoint failed (retried at the next interval): %s", exc)

    def expired(self, epoch: int) -> bool:
        """Whether the newest checkpoint this volume has made is no longer stored at `epoch`
        (renewals failed or were off): the volume could not be restored from it."""
        end = blobs.newest_checkpoint_end(self.db)
        return end is not None and end <= epoch

    async def checkpoint(self, *, final: bool = False, force: bool = False) -> bool:
        """Upload a checkpoint if the database changed since the last one (or `force`);
        whether one was written. `final`: the last of this mount (it carries no writer
        lease).

        Raises:
            StoreError, chain.errors.ChainError, OSError: the upload failed (kept in
                `last_error`); the next call tries again.
        """
        async with self._lock:
            if not self.dirty() and not force:
                return False
            try:
                await self._checkpoint(final)
                return True
            except (StoreError, chain_errors.ChainError, OSError) as exc:
                self.last_error = str(exc)
                raise

    async def _checkpoint(self, final: bool) -> None:
        seq = self.seq + 1
        volume_id = schema.get_param(self.db, "volume_id") or ""
        # The copy holds everything committed before `taken` (and what the loop commits while
        # it is made): blobs unused before `taken` are in no file of it, which is all the
        # deletion rule relies on (uploader._delete_unused).
        taken = time.time()
        changes = self._changes()
        out = self.db_path.with_name(f"checkpoint-{seq}.tmp")
        try:
            nbytes = await trio.to_thread.run_sync(_write_snapshot, self.db, out)
            encryption = "none" if self.keys is None else "wfe1"
            attributes = {
                "walrusfs:volume": volume_id,
                "walrusfs:kind": KIND,
                "walrusfs:name": self.name,
                "walrusfs:seq": str(seq),
                "walrusfs:time": f"{taken:.3f}",
                "walrusfs:encryption": encryption,
            }
            if self.keys is not None:
                attributes["walrusfs:key-check"] = self.keys.check_value()
            if self.stamp is not None:
                attributes |= self.stamp.attributes(final=final)
            pool = None if self.pool is None else await self.pool.get()
            stored = await self.worker.store_blob(
                wp.Source(str(out), exact=True), wp.Upload(self.epochs, attributes, pool=pool)
            )
        finally:
            out.unlink(missing_ok=True)
        r = stored.result
        if r is None:  # a snapshot is never empty: the worker lost the file
            raise OSError(errno.EIO, f"checkpoint {seq}: the upload worker stored nothing")
        before = self._changes()
        with schema.transaction(self.db):
            blobs.add_checkpoint(self.db, blobs.Certified.of_result(r, KIND))
            schema.set_param(self.db, "checkpoint_seq", str(seq))
            schema.set_param(self.db, "checkpoint_time", f"{taken:.3f}")
            blobs.retire_checkpoints(self.db, RETAIN)
        # its own bookkeeping is no reason for another checkpoint; changes made while it
        # uploaded are
        self._changes_at_last = self._changes() if before == changes else changes
        self.last_error = None
        if self.stamp is not None:
            self.stamp.wrote(r.object_id, final=final)
        log.info(
            "checkpoint %d of volume %s certified: %s (%d bytes of metadata)",
            seq,
            self.name,
            r.blob_id,
            nbytes,
        )


# -- finding and restoring ------------------------------------------------------------------


def ref_of(obj: mt.Blob, attrs: dict[str, str]) -> CheckpointRef | None:
    """The checkpoint a Blob object holds, from its attributes (None: not one)."""
    try:
        return CheckpointRef(
            object_id=obj.id,
            blob_id=str(codec.BlobId.from_u256(obj.blob_id)),
            volume_id=attrs["walrusfs:volume"],
            name=attrs.get("walrusfs:name", ""),
            seq=int(attrs["walrusfs:seq"]),
            time=float(attrs.get("walrusfs:time", "0")),
            encryption=attrs.get("walrusfs:encryption", "none"),
            key_check=attrs.get("walrusfs:key-check"),
            size=int(obj.size),
            encoded_size=int(obj.storage.storage_size),
            end_epoch=int(obj.storage.end_epoch),
            machine=attrs.get("walrusfs:machine"),
            host=attrs.get("walrusfs:host"),
            writer=attrs.get("walrusfs:writer"),
            pool=obj.pool,
        )
    except (KeyError, ValueError):
        return None


async def list_checkpoints(chain: WalrusChain, name: str | None = None) -> list[CheckpointRef]:
    """The wallet's certified checkpoints (of volume `name`), newest first.

    Raises:
        chain.errors.ChainError: the wallet's blobs or their attributes could not be read.
    """
    owned = [b for b in await chain.blobs(valid_only=True) if b.certified_epoch is not None]
    attributes = await chain.attributes_of([b.id for b in owned])
    found = []
    for blob in owned:
        attrs = attributes[blob.id]
        if attrs.get("walrusfs:kind") != KIND:
            continue
        ref = ref_of(blob, attrs)
        if ref is not None and (name is None or ref.name == name):
            found.append(ref)
    found.sort(key=lambda r: (r.time, r.seq), reverse=True)
    return found


def _install(data: bytes, ref: CheckpointRef, db_path: Path) -> None:
    """Write the database, check it is this volume's and intact, record the checkpoint it came
    from, then rename it into place (a crash leaves no half-restored volume)."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(db_path.name + ".restore")
    tmp.write_bytes(data)
    check = sqlite3.connect(tmp, isolation_level=None)
    try:
        try:
            intact = check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            volume_id = schema.get_param(check, "volume_id")
        except sqlite3.DatabaseError:
            intact, volume_id = False, None
        if not intact:
            raise CheckpointUnusable(f"checkpoint {ref.seq} holds a damaged database")
        if volume_id != ref.volume_id:
            raise CheckpointUnusable(f"checkpoint {ref.seq} holds another volume's database")
        blobs.add_checkpoint(check, ref.certified())
        schema.set_param(check, "checkpoint_seq", str(ref.seq))
        schema.set_param(check, "checkpoint_time", f"{ref.time:.3f}")
        schema.set_param(check, "clean_unmount", "0")  # run the repair: staging is gone
    finally:
        check.close()
    os.replace(tmp, db_path)


async def restore(
    store: WalrusStore, ref: CheckpointRef, db_path: Path, keys: crypto.VolumeKeys | None
) -> None:
    """Rebuild the volume database at `db_path` from a checkpoint (`keys` None: a plaintext
    checkpoint); nothing is left at `db_path` when it fails.

    Raises:
        CheckpointUnusable: it does not hold an intact database of its volume.
        StoreError: the blob could not be read (BlobUnavailable, BlobNotFound).
        chain.errors.ChainError: the committee could not be read.
    """
    blob = await store.read(codec.BlobId.parse(ref.blob_id), use_cache=False)

    def decode_and_install() -> None:
        _install(decode_checkpoint(blob, keys), ref, db_path)

    await trio.to_thread.run_sync(decode_and_install)
