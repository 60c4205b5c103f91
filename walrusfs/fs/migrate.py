"""`walrusfs fsck --migrate-to-pool`: move an unmounted volume's owned Blobs into a storage
pool, without uploading their bytes again.

The pool contract has no operation that turns a `Blob` into a pooled blob
(`storage_pool.move`), but the nodes keep a blob ID's slivers while any registration of it is
valid and confirm a new registration of what they hold. So each blob in use is registered in
the pool under its own blob ID (the write fee is paid again), certified with the nodes'
confirmations alone (`WalrusStore.move_into_pool`), its row pointed at the pooled blob, and
only then is the old Blob deleted: at no moment does the blob lack a valid registration. The
old Blob's Storage comes back to the wallet, and the next registration that grows the pool
absorbs it when it ends with the pool (the pool is created to end with the volume's
latest-ending blob, so blobs renewed together share that end). A blob the nodes no longer
confirm (lost or expired) is read and uploaded into the pool instead.

Rows not in use (waiting for their delayed delete) stay owned Blobs: the mount deletes them
as before. After the migration the volume's `storage` param is 'pool': its new blobs go to
the pool too.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import codec
from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs.fs import blobs, schema
from walrusfs.fs.errors import VolumeClaimed
from walrusfs.fs.pool import INITIAL_CAPACITY, POOL
from walrusfs.fs.writer import WriterLease, this_machine
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import NotEnoughConfirmations

log = logging.getLogger(__name__)


@dataclass
class MigrateReport:
    pool: str = ""
    created: bool = False  # the pool was made by this run
    moved: int = 0  # blobs registered in the pool from what the nodes hold (nothing uploaded)
    uploaded: int = 0  # blobs the nodes no longer confirmed, read and uploaded into the pool
    retired: int = 0  # old Blobs left unused, deleted by the mount after its next checkpoint
    wal_spent: int = 0  # FROST: the pool, the write fees, its growth
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Owned:
    row: int
    blob_id: str
    object_id: str
    end_epoch: int


def _owned_in_use(db: sqlite3.Connection) -> list[_Owned]:
    return [
        _Owned(int(r[0]), str(r[1]), str(r[2]), int(r[3]))
        for r in db.execute(
            "SELECT id, blob_id, object_id, end_epoch FROM blobs "
            "WHERE pool IS NULL AND refcount > 0 ORDER BY id"
        )
    ]


async def migrate_to_pool(volume_dir: Path, chain: WalrusChain, *, epochs: int) -> MigrateReport:
    """Move the volume's owned blobs in use into its pool (created if it has none).

    Args:
        epochs: the storage epochs of a blob that has to be uploaded again.

    Raises:
        FileNotFoundError: the volume has no database.
        VolumeClaimed: another machine holds the volume, or this copy is behind the chain's.
        chain.errors.ChainError, StoreError: a transaction or the nodes failed; what was
            moved so far stays moved (the rows say which), and a second run goes on.
    """
    db_path = volume_dir / "meta.db"
    if not db_path.exists():
        raise FileNotFoundError(db_path)
    db = schema.open_volume(db_path, uid=os.getuid(), gid=os.getgid(), chunk_size=0)
    store = WalrusStore(chain)
    report = MigrateReport()
    try:
        lease = WriterLease(
            chain,
            this_machine(volume_dir.parent.parent),
            volume_dir.name,
            schema.get_param(db, "volume_id") or "",
        )
        verdict = await lease.verdict(
            int(schema.get_param(db, "checkpoint_seq") or 0), blobs.known_data_blobs(db)
        )
        if verdict.refusal is not None:
            raise VolumeClaimed(verdict.refusal)
        wal_before = (await chain.balances()).wal
        info = await chain.system_info()
        owned = [o for o in _owned_in_use(db) if o.end_epoch > info.epoch]
        pool = schema.get_param(db, "pool")
        if not pool:
            latest = max((o.end_epoch for o in owned), default=info.epoch + epochs)
            ahead = min(max(latest - info.epoch, 1), info.max_epochs_ahead)
            pool, _ = await store.create_pool(INITIAL_CAPACITY, ahead)
            report.created = True
        report.pool = pool
        with schema.transaction(db):
            schema.set_param(db, "storage", POOL)
            schema.set_param(db, "pool", pool)
        for blob in owned:
            await _move(db, store, chain, blob, pool=pool, epochs=epochs, report=report)
        report.wal_spent = wal_before - (await chain.balances()).wal
        return report
    finally:
        await store.close()
        db.close()


async def _move(
    db: sqlite3.Connection,
    store: WalrusStore,
    chain: WalrusChain,
    blob: _Owned,
    *,
    pool: str,
    epochs: int,
    report: MigrateReport,
) -> None:
    blob_id = codec.BlobId.parse(blob.blob_id)
    attributes = await chain.attributes(blob.object_id)
    try:
        result = await store.move_into_pool(blob_id, pool, attributes)
        report.moved += 1
    except NotEnoughConfirmations as exc:
        log.warning("%s is not confirmed by the nodes (%s): uploading it again", blob_id, exc)
        data = await store.read(blob_id)
        result = await store.store(data, epochs, attributes=attributes, pool=pool, reuse=False)
        report.uploaded += 1
    if result.blob_id != blob_id:
        raise chain_errors.ChainError(f"{blob_id} came back as {result.blob_id}")
    with schema.transaction(db):
        kind, refcount = db.execute(
            "SELECT kind, refcount FROM blobs WHERE id = ?", (blob.row,)
        ).fetchone()
        moved = blobs.row_of(db, result.object_id)  # equal bytes moved before share it
        if moved is None:
            moved = blobs.add_unused(db, blobs.Certified.of_result(result, str(kind)))
        db.execute("UPDATE chunks SET blob = ? WHERE blob = ?", (moved, blob.row))
        db.execute(
            "UPDATE blobs SET refcount = refcount + ?, deleted_at = NULL WHERE id = ?",
            (int(refcount), moved),
        )
        db.execute(
            "UPDATE blobs SET refcount = 0, deleted_at = ? WHERE id = ?", (time.time(), blob.row)
        )
    report.retired += 1
    log.info("moved %s into pool %s (Blob %s retired)", blob_id, pool, blob.object_id)
