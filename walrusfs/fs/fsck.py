"""`walrusfs fsck`: reconcile a volume's database with its staging area and the chain.

Run on an unmounted volume (the mount holds `<volume>/lock`). Each check repairs what it can
and says what it did; the exit code says what the user must know (docs/exit-codes.md):

    0   clean
    10  errors were found and repaired; no data was lost
    11  data was lost (the files are named): a blob expired or was deleted, a staged chunk's
        file is gone, or the database is damaged (restore a checkpoint: move meta.db away and
        mount)

Checks, in order (docs/durability.md has the crash windows they repair):
 1. SQLite integrity.
 2. staging <-> chunks (repair.repair): staging files no chunk refers to are removed; a staged
    chunk without its file reverts to its last upload (named: lost data if it had none).
 3. dentries naming missing inodes are removed; inodes no dentry names are moved to
    /lost+found/<inode>; link counts are recounted.
 4. chunks referring to missing blob rows become holes (named).
 5. blob reference counts are recounted.
 6. chain: the wallet's Blob objects of this volume that the database does not know (an
    upload certified just before a crash) are recorded as unused, so the next mount deletes
    them and reuses their Storage; blobs the database uses that are gone or expired on chain
    are reported with the files they held.
 7. staged chunks are uploaded now (unless --no-upload) and a checkpoint is taken.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cache.staging import Staging
from chain import errors as chain_errors
from chain.client import WalrusChain
from walrusfs.fs import blobs, schema
from walrusfs.fs.assemble import assemble
from walrusfs.fs.errors import UploadFailed
from walrusfs.fs.keys import load_keys
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.repair import repair
from walrusfs.fs.schema import ROOT_INODE, path_of, transaction
from walrusfs.fs.writer import WriterLease, this_machine
from walrusfs.store.client import WalrusStore
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

LOST_FOUND = b"lost+found"


@dataclass
class Report:
    repaired: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    damaged: bool = False  # the database itself: nothing else was checked
    claimed: str | None = None  # another machine holds the volume (writer.py): why

    def fix(self, message: str) -> None:
        log.warning("fsck: repaired: %s", message)
        self.repaired.append(message)

    def loss(self, message: str) -> None:
        log.error("fsck: DATA LOST: %s", message)
        self.lost.append(message)


def check_database(db: sqlite3.Connection, staging: Staging, report: Report) -> None:
    """Checks 2-5 (local only), in one transaction."""
    with transaction(db):
        done = repair(db, staging)
        for inode, chunkno, had_upload in done.reverted:
            name = path_of(db, inode) or f"inode {inode}"
            report.loss(
                f"{name}: chunk {chunkno} lost its unsynced changes (back to its last upload)"
                if had_upload
                else f"{name}: chunk {chunkno} was staged and its staged bytes are gone "
                "(a hole now)"
            )
        if done.removed:
            report.fix(f"removed {done.removed} staged chunk(s) no chunk row refers to")
        _check_tree(db, report)
        _check_chunks(db, report)
        _recount_blobs(db, report)


def _check_tree(db: sqlite3.Connection, report: Report) -> None:
    n = db.execute("DELETE FROM dentries WHERE inode NOT IN (SELECT id FROM inodes)").rowcount
    if n:
        report.fix(f"removed {n} directory entrie(s) naming missing inodes")
    n = db.execute("DELETE FROM dentries WHERE parent NOT IN (SELECT id FROM inodes)").rowcount
    if n:
        report.fix(f"removed {n} entrie(s) of missing directories")
    orphans = db.execute(
        "SELECT id, mode FROM inodes WHERE id != ? AND nlink > 0 AND id NOT IN "
        "(SELECT inode FROM dentries)",
        (ROOT_INODE,),
    ).fetchall()
    if orphans:
        lf = _lost_found(db)
        for inode, _mode in orphans:
            db.execute(
                "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)",
                (lf, str(inode).encode(), inode),
            )
            report.fix(f"inode {inode} had no name: now /lost+found/{inode}")
    # directories: 2 + subdirectories; others: their names (0 names: open-unlinked at the
    # crash, purged by the repair)
    wrong = db.execute(
        """
        SELECT id, nlink, want FROM (
            SELECT i.id, i.nlink, CASE WHEN i.mode & :fmt = :dir THEN 2 + (
                SELECT count(*) FROM dentries d JOIN inodes c ON c.id = d.inode
                WHERE d.parent = i.id AND c.mode & :fmt = :dir)
            ELSE (SELECT count(*) FROM dentries d WHERE d.inode = i.id) END AS want
            FROM inodes i)
        WHERE want != nlink AND want > 0
        """,
        {"fmt": 0o170000, "dir": stat.S_IFDIR},
    ).fetchall()
    for inode, nlink, want in wrong:
        db.execute("UPDATE inodes SET nlink = ? WHERE id = ?", (want, inode))
        report.fix(f"{path_of(db, inode) or inode}: link count {nlink} -> {want}")


def _lost_found(db: sqlite3.Connection) -> int:
    row = db.execute(
        "SELECT inode FROM dentries WHERE parent = ? AND name = ?", (ROOT_INODE, LOST_FOUND)
    ).fetchone()
    if row is not None:
        return int(row[0])
    now = time.time_ns()
    cur = db.execute(
        "INSERT INTO inodes (mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, btime_ns) "
        "VALUES (?, 0, 0, 2, ?, ?, ?, ?)",
        (stat.S_IFDIR | 0o700, now, now, now, now),
    )
    inode = int(cur.lastrowid or 0)
    db.execute(
        "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)",
        (ROOT_INODE, LOST_FOUND, inode),
    )
    db.execute("UPDATE inodes SET nlink = nlink + 1 WHERE id = ?", (ROOT_INODE,))
    return inode


def _check_chunks(db: sqlite3.Connection, report: Report) -> None:
    for inode, chunkno in blobs.chunks_of_missing_blobs(db):
        db.execute("DELETE FROM chunks WHERE inode = ? AND chunkno = ?", (inode, chunkno))
        report.loss(f"{path_of(db, inode) or inode}: chunk {chunkno} refers to a missing blob")


def _recount_blobs(db: sqlite3.Connection, report: Report) -> None:
    """Reference counts from the chunks (checkpoints are kept by retention, not by chunks)."""
    for r in blobs.recount(db):
        report.fix(f"blob row {r.id}: reference count {r.was} -> {r.now}")


def _not_ours(attrs: dict[str, str], local_seq: int, machine: str | None) -> bool:
    """Whether a blob of this volume that the database does not know may belong to another
    machine's copy of it: written by another machine, or a checkpoint newer than this copy.
    Such a blob is never taken for a leftover (deleting it would lose that machine's files)."""
    writer = attrs.get("walrusfs:machine")
    if writer is not None and machine is not None and writer != machine:
        return True
    if attrs.get("walrusfs:kind") == "checkpoint":
        try:
            return int(attrs.get("walrusfs:seq", "0")) > local_seq
        except ValueError:
            return True
    return False


async def check_chain(
    db: sqlite3.Connection, chain: WalrusChain, report: Report, machine: str | None = None
) -> None:
    """Check 6: the database against the wallet's Blob objects (`machine`: this machine's ID,
    writer.py).

    Raises:
        chain.errors.ChainError: the chain could not be read (`run_checks` notes it).
    """
    volume_id = schema.get_param(db, "volume_id")
    epoch = (await chain.system_info()).epoch
    owned = {b.id: b for b in await chain.blobs(valid_only=False)}
    known = set()
    for row in blobs.all_rows(db):
        object_id = row.object_id
        known.add(object_id)
        blob = owned.get(object_id)
        if row.refcount <= 0:
            if blob is None:  # deleted on chain already: only the row was left
                blobs.delete_unused(db, row.id)
            continue
        if blob is not None and blob.storage.end_epoch > epoch:
            continue  # in use and alive
        state = "no longer exists" if blob is None else f"expired at epoch {blob.storage.end_epoch}"
        files = schema.files_of_blob(db, row.id)
        if files:
            report.loss(f"blob {object_id} {state}; it held: {', '.join(files)}")
        else:
            report.notes.append(f"checkpoint blob {object_id} {state}")
    unknown = [b for b in owned.values() if b.id not in known and b.certified_epoch is not None]
    attributes = await chain.attributes_of([b.id for b in unknown])
    local_seq = int(schema.get_param(db, "checkpoint_seq") or 0)
    for blob in unknown:
        attrs = attributes[blob.id]
        if attrs.get("walrusfs:volume") != volume_id:
            continue
        if _not_ours(attrs, local_seq, machine):
            report.notes.append(
                f"blob {blob.id} of this volume was written by another machine "
                f"({attrs.get('walrusfs:host', '?')}): left alone"
            )
            continue
        blobs.add_unused(db, blobs.Certified.of_object(blob, blobs.kind_of(attrs)))
        report.fix(
            f"blob {blob.id} of this volume was not recorded: marked unused (deleted at mount)"
        )


def staged_chunks(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM chunks WHERE staged = 1").fetchone()[0])


async def run_checks(
    db_path: Path,
    staging_dir: Path,
    chain: WalrusChain | None,
    *,
    claimed: str | None = None,
    machine: str | None = None,
) -> tuple[Report, sqlite3.Connection, Staging]:
    """Checks 1-6; the caller uploads (check 7) with the returned database and staging.
    `claimed`: why another machine holds the volume (writer.py); then nothing on chain is
    taken for this volume's leftovers, since it may be that machine's."""
    report = Report(claimed=claimed)
    db = schema.connect(db_path)
    result = db.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        report.damaged = True
        report.loss(
            f"the database is damaged ({result}): move {db_path} away and mount the volume, "
            "which restores its newest checkpoint from Walrus"
        )
        return report, db, Staging(staging_dir)
    staging = Staging(staging_dir)
    check_database(db, staging, report)
    if claimed is not None:
        report.notes.append(f"blobs on chain not checked: {claimed}")
    elif chain is not None:
        try:
            await check_chain(db, chain, report, machine)
        except (StoreError, chain_errors.ChainError, OSError) as exc:
            report.notes.append(f"the chain could not be checked: {exc}")
    return report, db, staging


#: `progress(done, total)`: how far a long step is (bytes uploaded of those staged)
Progress = Callable[[int, int], None]


async def upload_staged(
    db: sqlite3.Connection,
    staging: Staging,
    chain: WalrusChain,
    volume_dir: Path,
    worker_argv: list[str],
    *,
    epochs: int,
    passphrase: str | None = None,
    progress: Progress | None = None,
    lease: WriterLease | None = None,
) -> None:
    """Check 7: upload every staged chunk and take a checkpoint, as a mount would;
    `progress(done, total)` in bytes about once a second.

    Args:
        epochs: how long the uploads are stored.
        lease: this machine's hold on the volume, stamped on the checkpoint.

    Raises:
        UploadFailed: the uploads did not finish (what is staged stays staged).
        KeyMismatch, BadKeyFile, WrongEncryption: the volume's key is not at hand.
        StoreError, chain.errors.ChainError, OSError: the checkpoint failed.
    """
    store = WalrusStore(chain)
    failed: OSError | None = None
    try:
        params = (await store.committee()).params
        keys, key = load_keys(volume_dir, db, chain, new=False, public=False, passphrase=passphrase)
        parts = assemble(
            db,
            staging,
            store,
            chain,
            volume_dir=volume_dir,
            params=params,
            chunk_size=int(schema.get_param(db, "chunk_size") or 0),
            keys=keys,
            volume_key=key,
            worker_argv=worker_argv,
            upload=UploadConfig(delay=0.0, epochs=epochs),
            lease=lease,
            checkpoint_interval=3600.0,
        )
        worker, uploader, checkpointer = parts.worker, parts.uploader, parts.checkpointer
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            await nursery.start(uploader.run)
            total = 0  # the most bytes pending at once (compaction may re-stage some)

            async def report(progress: Progress) -> None:
                nonlocal total
                while True:
                    left = uploader.pending()[1]
                    total = max(total, left)
                    if total:
                        progress(total - left, total)
                    await trio.sleep(1.0)

            if progress is not None:
                nursery.start_soon(report, progress)
            try:
                await uploader.flush()
            except OSError as exc:  # raised below, not as a nursery's exception group
                failed = exc
            else:
                if progress is not None and total:
                    progress(total, total)
                await checkpointer.checkpoint(final=True)
            nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await worker.aclose()
        if failed is not None:
            raise UploadFailed(
                f"uploading the staged data failed: {failed.strerror}; it stays staged: run "
                "`walrusfs fsck` again or mount the volume, which retries"
            )
    finally:
        await store.close()


async def fsck(
    volume_dir: Path,
    chain: WalrusChain,
    worker_argv: list[str],
    *,
    upload: bool,
    epochs: int,
    passphrase: str | None = None,
    progress: Progress | None = None,
) -> Report:
    """All checks on an unmounted volume (the caller holds its lock); `progress` follows the
    upload of what was staged.

    Args:
        upload: upload what is staged (for `epochs` epochs) unless another machine holds
            the volume; otherwise it stays staged for the next mount.
        passphrase: the volume's, when its key is derived from one.

    Raises:
        KeyMismatch, BadKeyFile, WrongEncryption: the key at hand is not the volume's
            (checked before anything is repaired).
        ServiceFailed: the chain could not be read to see who holds the volume.
        UploadFailed: the upload of what is staged did not finish.
    """
    db_path = volume_dir / "meta.db"
    lease = None
    claimed = None
    if db_path.exists():
        # the key first: a wrong passphrase is refused before anything is repaired or said
        # clean, and who holds the volume before any blob on chain is taken for a leftover
        probe = schema.connect(db_path)
        try:
            if probe.execute("PRAGMA quick_check").fetchone()[0] == "ok":
                load_keys(volume_dir, probe, chain, new=False, public=False, passphrase=passphrase)
                lease = WriterLease(
                    chain,
                    this_machine(volume_dir.parent.parent),
                    volume_dir.name,
                    schema.get_param(probe, "volume_id") or "",
                )
                verdict = await lease.verdict(
                    int(schema.get_param(probe, "checkpoint_seq") or 0),
                    blobs.known_data_blobs(probe),
                )
                claimed = verdict.refusal
        finally:
            probe.close()
    report, db, staging = await run_checks(
        db_path,
        volume_dir / "staging",
        chain,
        claimed=claimed,
        machine=None if lease is None else lease.machine.id,
    )
    try:
        if report.damaged:
            return report
        staged = staged_chunks(db)
        if staged and upload and claimed is not None:
            report.notes.append(
                f"{staged} staged chunk(s) not uploaded: another machine holds the volume"
            )
        elif staged and upload:
            log.warning("fsck: uploading %d staged chunk(s)", staged)
            await upload_staged(
                db,
                staging,
                chain,
                volume_dir,
                worker_argv,
                epochs=epochs,
                passphrase=passphrase,
                progress=progress,
                lease=lease,
            )
        elif staged:
            report.notes.append(f"{staged} staged chunk(s) upload at the next mount")
        with transaction(db):
            schema.set_param(db, "clean_unmount", "1")
        return report
    finally:
        db.close()
        staging.close()
