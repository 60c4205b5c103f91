"""The volume database: its settings, the checkpoint snapshot, and repair of unlinked inodes
(no mount, no network)."""

from __future__ import annotations

import os
import sqlite3
import threading
import zlib
from pathlib import Path

import pytest

from cache.staging import Staging
from walrusfs.fs import checkpoint, content, repair, schema
from walrusfs.fs import ops as fsops


def _volume(tmp_path: Path) -> sqlite3.Connection:
    path = tmp_path / "meta.db"
    schema.open_volume(path, uid=0, gid=0, chunk_size=1 << 20).close()
    return schema.connect(path)


def test_one_process_holds_the_database(tmp_path: Path) -> None:
    """EXCLUSIVE locking: once the mount has written, nobody else can even read the file (the
    mount never takes per-statement locks, and no second opener sees a half state)."""
    db = _volume(tmp_path)
    db.execute("UPDATE params SET value = 'x' WHERE key = 'created'")
    other = sqlite3.connect(tmp_path / "meta.db", timeout=0.1)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("SELECT count(*) FROM params").fetchone()
    other.close()
    assert not (tmp_path / "meta.db-shm").exists()  # the WAL index lives in memory
    db.close()


def test_snapshot_is_a_committed_state_while_the_loop_writes(tmp_path: Path) -> None:
    """The checkpoint copy is made in a thread through the mount's connection while the loop
    goes on committing: it must be some state between two transactions, never a torn one."""
    db = _volume(tmp_path)
    db.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, v BLOB)")
    db.execute("INSERT INTO params VALUES ('total', '0')")
    for i in range(2000):  # enough pages for many backup steps
        db.execute("INSERT INTO t VALUES (?, ?)", (i, bytes(2000)))
    out = tmp_path / "snap.wfc1"
    done = threading.Event()
    result: list[int] = []

    def snapshot() -> None:
        result.append(checkpoint._write_snapshot(db, out))
        done.set()

    thread = threading.Thread(target=snapshot)
    thread.start()
    i = 2000
    while not done.is_set() or i < 2200:  # transactions of two statements each
        db.execute("BEGIN")
        db.execute("INSERT INTO t VALUES (?, ?)", (i, bytes(2000)))
        db.execute("UPDATE params SET value = ? WHERE key = 'total'", (str(i + 1),))
        db.execute("COMMIT")
        i += 1
    thread.join()
    raw = out.read_bytes()
    assert raw[:4] == checkpoint.MAGIC and result[0] > 2000 * 2000
    (tmp_path / "copy.db").write_bytes(zlib.decompress(raw[4:]))  # as restore() does
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    rows = copy.execute("SELECT count(*) FROM t").fetchone()[0]
    total = int(copy.execute("SELECT value FROM params WHERE key = 'total'").fetchone()[0])
    assert rows >= 2000 and total in (0, rows)  # both statements of a transaction, or neither
    db.close()


def test_repair_deletes_unlinked_inodes_and_only_their_references(tmp_path: Path) -> None:
    """Files unlinked while open (or not purged yet) when a mount ended go at the next mount:
    their rows, staged bytes and blob references, and nothing else. More of them than one
    statement's batch, sharing a quilt with a file that stays: the quilt keeps exactly the
    survivor's reference and is not due for deletion; a blob only they used is."""
    db = _volume(tmp_path)
    staging = Staging(tmp_path / "staging")

    def blob(name: str, kind: str) -> int:
        return int(
            db.execute(
                "INSERT INTO blobs (blob_id, object_id, kind, size, encoded_size, end_epoch, "
                "refcount) VALUES (?, ?, ?, 1, 1, 9, 0)",
                (name, "0x" + name, kind),
            ).lastrowid
            or 0
        )

    quilt, alone = blob("q", "quilt"), blob("b", "blob")

    def inode(nlink: int) -> int:
        return int(
            db.execute(
                "INSERT INTO inodes (mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, "
                "btime_ns) VALUES (33188, 0, 0, ?, 0, 0, 0, 0)",
                (nlink,),
            ).lastrowid
            or 0
        )

    def chunk(ino: int, chunkno: int, blob: int | None) -> None:
        db.execute(
            "INSERT INTO chunks (inode, chunkno, staged, blob, length) VALUES (?, ?, ?, ?, 3)",
            (ino, chunkno, int(blob is None), blob),
        )
        if blob is None:
            staging.write((ino, chunkno), 0, b"abc")
        else:
            db.execute("UPDATE blobs SET refcount = refcount + 1 WHERE id = ?", (blob,))

    keep = inode(1)
    chunk(keep, 0, quilt)
    chunk(keep, 1, None)
    doomed = [inode(0) for _ in range(content.PURGE_BATCH * 2 + 7)]
    for ino in doomed:
        chunk(ino, 0, quilt)
        chunk(ino, 1, None)
        db.execute("INSERT INTO xattrs VALUES (?, X'61', X'62')", (ino,))
    chunk(doomed[-1], 2, alone)

    # inside the start-up transaction, as the mount (`repair.recover`) and fsck call it: its own
    # all-or-nothing purge nests (a BEGIN there once wedged every crashed volume)
    with schema.transaction(db):
        repair.repair(db, staging)
    assert not db.in_transaction

    left = {int(i) for (i,) in db.execute("SELECT id FROM inodes")}
    assert keep in left and not left & set(doomed)
    assert db.execute("SELECT count(*) FROM xattrs").fetchone() == (0,)
    assert {(int(i), int(c)) for i, c in db.execute("SELECT inode, chunkno FROM chunks")} == {
        (keep, 0),
        (keep, 1),
    }
    assert sorted(staging.keys()) == [(keep, 1)]
    assert staging.read((keep, 1), 0, 10) == b"abc"
    rows = dict(
        (
            (int(i), (int(r), d))
            for i, r, d in db.execute("SELECT id, refcount, deleted_at FROM blobs")
        )
    )
    assert rows[quilt] == (1, None)
    assert rows[alone][0] == 0 and rows[alone][1] is not None
    staging.close()
    db.close()


def test_sync_wal_fsyncs_the_file_holding_the_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync() in the mount ends in `schema.sync_wal`: with synchronous=NORMAL a commit sits in
    the WAL unsynced, and the WAL file is what must reach the disk. (It once committed an
    empty transaction under synchronous=FULL, which syncs nothing at all.)"""
    db = _volume(tmp_path)
    db.execute("UPDATE params SET value = 'after' WHERE key = 'created'")
    wal = tmp_path / "meta.db-wal"
    assert wal.stat().st_size > 0  # the commit is there, not in meta.db
    synced: list[Path] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    schema.sync_wal(tmp_path / "meta.db")
    assert synced == [wal]
    db.close()  # the last connection checkpoints the WAL into meta.db and removes it
    synced.clear()
    schema.sync_wal(tmp_path / "meta.db")
    assert synced == [] and not wal.exists()


def test_transaction_nests_and_leaves_nothing_open(tmp_path: Path) -> None:
    """One helper groups writes: nested blocks are savepoints, any exception rolls back just
    its own block, and no path leaves a transaction open (an open one made every later BEGIN of
    the mount fail, and the changes made after it were lost at unmount)."""
    db = _volume(tmp_path)
    with schema.transaction(db):
        schema.set_param(db, "a", "1")
        with pytest.raises(OSError), schema.transaction(db):
            schema.set_param(db, "b", "1")
            raise OSError(28, "No space left on device")
        with schema.transaction(db):
            schema.set_param(db, "c", "1")
    assert not db.in_transaction
    assert (schema.get_param(db, "a"), schema.get_param(db, "b"), schema.get_param(db, "c")) == (
        "1",
        None,
        "1",
    )
    with pytest.raises(KeyError), schema.transaction(db):
        schema.set_param(db, "d", "1")
        raise KeyError("d")
    assert not db.in_transaction and schema.get_param(db, "d") is None
    with schema.transaction(db):  # still usable
        schema.set_param(db, "e", "1")
    db.close()


def test_transaction_rolls_back_a_commit_that_fails(tmp_path: Path) -> None:
    """COMMIT can fail and leave the transaction open (SQLITE_FULL on a full disk; here a
    deferred foreign key, which SQLite checks at COMMIT): the helper rolls back and re-raises."""
    db = _volume(tmp_path)
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    db.execute("CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), schema.transaction(db):
        db.execute("INSERT INTO c VALUES (7)")
    assert not db.in_transaction
    assert db.execute("SELECT count(*) FROM c").fetchone() == (0,)
    db.close()


def test_an_older_volume_gets_the_indexes_when_opened(tmp_path: Path) -> None:
    """A volume made with the first indexes (the staged chunks indexed by `staged` alone)
    keeps schema version 1 and its rows, gets every index of `schema.INDEXES` when it is
    opened, without the one replaced, and the statements of the mount's start-up and of
    readdir read through them (a page of a directory without sorting it)."""
    path = tmp_path / "meta.db"
    schema.open_volume(path, uid=0, gid=0, chunk_size=1 << 20).close()
    old = sqlite3.connect(path, isolation_level=None)
    for name in ("dentries_parent", "chunks_staged_keys", "inodes_unlinked"):
        old.execute(f"DROP INDEX {name}")
    old.execute("CREATE INDEX chunks_staged ON chunks (staged) WHERE staged = 1")
    old.execute(
        "INSERT INTO inodes (id, mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, btime_ns) "
        "VALUES (2, 33188, 0, 0, 1, 0, 0, 0, 0)"
    )
    old.execute("INSERT INTO dentries (parent, name, inode) VALUES (1, X'61', 2)")
    old.execute("INSERT INTO chunks (inode, chunkno, staged, length) VALUES (2, 0, 1, 0)")
    old.close()

    db = schema.open_volume(path, uid=0, gid=0, chunk_size=1 << 20)
    named = "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    assert {str(n) for (n,) in db.execute(named)} == set(schema.INDEXES)
    assert schema.get_param(db, "schema_version") == "1"
    assert db.execute("SELECT inode, staged FROM chunks").fetchall() == [(2, 1)]
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    def plan(sql: str, *args: object) -> str:
        return " ".join(str(r[3]) for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))

    assert "chunks_staged_keys" in plan("SELECT inode, chunkno, blob FROM chunks WHERE staged = 1")
    assert "inodes_unlinked" in plan("SELECT id FROM inodes WHERE nlink = 0")
    assert "dentries_parent" in plan(fsops.READDIR_SQL, 1, 0, 10)
    assert "TEMP B-TREE" not in plan(fsops.READDIR_SQL, 1, 0, 10)
    db.close()
    # opened again: nothing left to add
    db = schema.open_volume(path, uid=0, gid=0, chunk_size=1 << 20)
    assert {str(n) for (n,) in db.execute(named)} == set(schema.INDEXES)
    db.close()
