"""The mount's SQLite metadata: the one place that documents every table, column and sentinel.

The database is authoritative while a volume is mounted. It lives at
`<data_dir>/volumes/<volume>/meta.db`, in WAL mode, and is only ever touched from the trio
thread of the mount (see docs/mount.md, "Concurrency rules"): every sequence of statements
between two `await`s is atomic with respect to other requests.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from walrusfs.fs.errors import SchemaMismatch

#: Bumped when a table or the meaning of a column changes; a volume with another version is
#: refused at mount time instead of being misread.
SCHEMA_VERSION = 1

ROOT_INODE = 1


def create_tables(
    db: sqlite3.Connection,
    *,
    uid: int,
    gid: int,
    chunk_size: int,
    encryption: str = "wfe1",
    storage: str = "blobs",
) -> None:
    """Create an empty volume: the tables below and the root directory.

    inodes: one row per file, directory, symlink, fifo, socket or device.
      id          INTEGER PRIMARY KEY AUTOINCREMENT: the inode number the kernel sees. AUTOINCREMENT
                  so that numbers are never reused: the kernel may still hold an unlinked one.
      mode        st_mode (file type and permission bits).
      uid, gid    owner.
      size        st_size. Regular files: bytes; symlinks: length of the target; directories: 0.
      nlink       hard links (dentries naming it; directories: 2 + subdirectories). 0 means
                  unlinked but still known to the kernel (lookup count > 0, e.g. open); the row
                  and its chunks are purged when the kernel forgets it.
      rdev        device number of character and block devices, else 0.
      atime_ns, mtime_ns, ctime_ns, btime_ns   timestamps in nanoseconds since the epoch.

    dentries: directory entries.
      id          INTEGER PRIMARY KEY AUTOINCREMENT: the stable readdir cursor (next_id = id + 3,
                  because offsets 1 and 2 are "." and "..").
      parent      inode of the directory.  name: BLOB, never "." or "..".  inode: the target.
      UNIQUE(parent, name).

    symlinks:  inode -> target (BLOB).
    xattrs:    (inode, name BLOB) -> value BLOB. The read-only `user.walrus.*` names are computed,
               never stored.

    chunks: the content of regular files, in fixed chunks of `params.chunk_size` bytes: chunk
      `chunkno` covers file bytes [chunkno * chunk_size, (chunkno + 1) * chunk_size). A chunk
      with no row is a hole (reads as zeros).
      inode, chunkno   PRIMARY KEY.
      staged      1: the staging file `<inode>.<chunkno>` (cache/staging.py) holds the chunk's
                  current bytes; `blob`/`patch`/`length` still describe the previous upload, if
                  any, until the uploader replaces them. 0: the bytes are on Walrus.
      blob        blobs.id holding the uploaded bytes, NULL if the chunk was never uploaded.
      patch       the quilt patch ID (text form) when the chunk is a patch of a quilt blob, NULL
                  when it is a whole blob of its own.
      length      bytes of the chunk held by the blob/patch; file bytes of the chunk past
                  `length` (up to the file size) read as zeros. A truncate inside an uploaded
                  chunk only lowers `length`.

    blobs: certified Walrus blobs (Sui Blob objects) this volume uses. A row is inserted only
      after certification (never-violated order: certified -> referenced -> staging dropped).
      id          INTEGER PRIMARY KEY AUTOINCREMENT.
      blob_id     Walrus blob ID, base64url.        object_id: the Sui Blob object ID (0x...).
      kind        'blob' (one chunk) or 'quilt' (QuiltV1 of small files).
      size        unencoded bytes.   encoded_size: bytes paid for on the nodes.
      end_epoch   first epoch in which the blob is no longer stored.
      refcount    chunks referencing it. 0: no file uses it any more; `deleted_at` is set and
                  the blob is deleted on chain (its Storage resource reused) after a delay, so
                  reads that started before the change still finish.
      deleted_at  unix time when refcount reached 0, NULL while in use.
      pool        the StoragePool holding the blob (0x...), `object_id` then being its
                  PooledBlob; NULL: an owned Blob with Storage of its own. A pooled blob's
                  end_epoch is its pool's, raised for all of them when the pool is renewed.
                  (Added to volumes made before pools when they are opened: `COLUMNS`.)

    params: key -> value (TEXT). Keys: schema_version, volume_id (random hex, names the volume
      in Blob attributes), chunk_size, created (unix seconds), clean_unmount ('1' after a clean
      unmount, '0' while mounted: a '0' at mount time means the last mount crashed),
      encryption ('wfe1': every chunk, patch and checkpoint is a WFE1 stream, walrusfs/fs/crypto.py;
      'none': a public volume, plaintext blobs; missing: a volume made before encryption existed,
      'none'), key_check (fingerprint of the volume key, crypto.VolumeKeys.check_value; missing
      until the first mount with a key), storage ('pool': new blobs are registered in the
      volume's StoragePool, walrusfs/fs/pool.py; 'blobs' or missing: each blob is an owned
      Blob, as volumes made before pools), pool (that StoragePool's object ID, set when the
      first upload creates it).

    Encrypted volumes: `blobs.size` is the size of the sealed stream (what is on Walrus),
    `chunks.length` the plaintext bytes of the chunk it holds.

    Indexes besides the primary keys and UNIQUE constraints are `INDEXES` (each says which
    statements it serves).
    """
    now = time.time_ns()
    db.executescript(
        """
        CREATE TABLE inodes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
            size INTEGER NOT NULL DEFAULT 0, nlink INTEGER NOT NULL,
            rdev INTEGER NOT NULL DEFAULT 0,
            atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
            btime_ns INTEGER NOT NULL
        );
        CREATE TABLE dentries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            parent INTEGER NOT NULL, name BLOB NOT NULL, inode INTEGER NOT NULL,
            UNIQUE (parent, name)
        );
        CREATE TABLE symlinks (inode INTEGER PRIMARY KEY, target BLOB NOT NULL);
        CREATE TABLE xattrs (
            inode INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
            PRIMARY KEY (inode, name)
        );
        CREATE TABLE chunks (
            inode INTEGER NOT NULL, chunkno INTEGER NOT NULL,
            staged INTEGER NOT NULL, blob INTEGER, patch TEXT, length INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (inode, chunkno)
        );
        CREATE TABLE blobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            blob_id TEXT NOT NULL, object_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            size INTEGER NOT NULL, encoded_size INTEGER NOT NULL, end_epoch INTEGER NOT NULL,
            refcount INTEGER NOT NULL, deleted_at REAL, pool TEXT
        );
        CREATE TABLE params (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )
    add_indexes(db)
    db.execute(
        "INSERT INTO inodes (id, mode, uid, gid, nlink, atime_ns, mtime_ns, ctime_ns, btime_ns) "
        "VALUES (?, ?, ?, ?, 2, ?, ?, ?, ?)",
        (ROOT_INODE, 0o040755, uid, gid, now, now, now, now),
    )
    for key, value in {
        "schema_version": str(SCHEMA_VERSION),
        "volume_id": secrets.token_hex(16),
        "chunk_size": str(chunk_size),
        "created": str(int(time.time())),
        "clean_unmount": "1",
        "encryption": encryption,
        "storage": storage,
    }.items():
        db.execute("INSERT INTO params VALUES (?, ?)", (key, value))


#: The indexes of a volume besides its primary keys and UNIQUE constraints, by name. A volume
#: made before one of them existed gets it when it is next opened (`add_indexes`): an index
#: changes no table and no column's meaning, so the schema version stays, and a walrusfs that
#: does not know an index reads and writes the volume as before (SQLite keeps every index of
#: the file up to date, whoever writes).
INDEXES = {
    # path_of, `..` and the link checks: the names of an inode
    "dentries_inode": "ON dentries (inode)",
    # readdir: a directory's entries in id order (its stable cursor), read a page at a time
    # from where the last page ended; without it every page sorted the whole directory
    "dentries_parent": "ON dentries (parent, id)",
    # reference counts, blobs.recount and the files of a blob
    "chunks_blob": "ON chunks (blob)",
    # the staged chunks (crash repair at every mount, the uploader's scans, status): the
    # partial index holds only them, and holds what those statements read of them, so they
    # read a few pages however many chunks the volume has (one table page per staged chunk,
    # scattered over the file, made the repair of a large volume the costliest part of a
    # mount). It replaces `chunks_staged ON chunks (staged) WHERE staged = 1`, dropped
    # (`DROPPED_INDEXES`).
    "chunks_staged_keys": "ON chunks (inode, chunkno, blob) WHERE staged = 1",
    # files unlinked while open when the last mount ended, purged by the repair at mount:
    # without it a scan of every inode
    "inodes_unlinked": "ON inodes (id) WHERE nlink = 0",
}
#: Indexes of older volumes that another of `INDEXES` replaces, dropped by `add_indexes`.
DROPPED_INDEXES = ("chunks_staged",)


#: Columns added to a table after volumes existed: (table, column, declaration). A volume
#: made before one gets it (NULL in every row) when it is next opened (`add_columns`); a NULL
#: means what the volume meant before the column existed, so the schema version stays.
COLUMNS = (("blobs", "pool", "TEXT"),)


def add_columns(db: sqlite3.Connection) -> None:
    """Give the volume every column of `COLUMNS` it lacks, in one transaction."""
    missing = [
        (table, column, decl)
        for table, column, decl in COLUMNS
        if column not in {str(r[1]) for r in db.execute(f"PRAGMA table_info({table})")}
    ]
    if not missing:
        return
    with transaction(db):
        for table, column, decl in missing:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def add_indexes(db: sqlite3.Connection) -> None:
    """Give the volume every index of `INDEXES` it lacks and drop those `DROPPED_INDEXES`
    names, in one transaction (on a volume made before them, a scan of the tables once)."""
    have = {
        str(name) for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    missing = [name for name in INDEXES if name not in have]
    dropped = [name for name in DROPPED_INDEXES if name in have]
    if not missing and not dropped:
        return
    with transaction(db):
        for name in missing:
            db.execute(f"CREATE INDEX {name} {INDEXES[name]}")
        for name in dropped:
            db.execute(f"DROP INDEX {name}")


#: SQLite's own page cache for the volume database. SQLite's default (2 MB) holds the
#: metadata of a few thousand files; past it, each lookup of a file whose pages left the
#: kernel's page cache read them from disk. With EXCLUSIVE locking the cache stays valid
#: between transactions, so the pages the mount uses stay in its memory.
DB_CACHE_BYTES = 64 << 20


def connect(path: Path) -> sqlite3.Connection:
    """Open (not create) a volume database with the mount's settings.

    WAL + synchronous=NORMAL: a crash keeps the database transaction-consistent and may lose
    the last commits; fsync() on a file makes them durable (`sync_wal`).

    A page cache of DB_CACHE_BYTES (see there).

    EXCLUSIVE locking: one process opens a volume's database (the volume lock sees to it), so
    the file locks are taken once and kept, and the WAL index lives in memory. In the default
    mode SQLite takes and drops POSIX locks around every statement, a tenth of the mount's
    CPU per FUSE request (measured on getxattr). A checkpoint snapshot is therefore a backup
    through this same connection (checkpoint.py), not a second connection.
    """
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL is entered: no shared memory
    db.execute(f"PRAGMA cache_size=-{DB_CACHE_BYTES >> 10}")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("PRAGMA wal_autocheckpoint=8192")
    return db


def sync_wal(path: Path) -> None:
    """Make every transaction committed to the database at `path` durable, from any thread.

    With synchronous=NORMAL a commit is not synced, and an empty transaction under
    synchronous=FULL syncs nothing: SQLite only syncs when it writes
    frames. Committed transactions are in the WAL, or were moved into the database file by a
    checkpoint, which synced it; so an fsync of the WAL file is enough."""
    try:
        fd = os.open(f"{path}-wal", os.O_RDONLY)
    except FileNotFoundError:  # no WAL: everything is in the database file, synced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_savepoints = itertools.count()


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """All of the block's statements, or none of them: the one way to group writes to meta.db.

    Outside a transaction it is BEGIN ... COMMIT; inside one (repair() within the mount's
    start-up transaction, a helper called from a handler that already opened one) it is a
    SAVEPOINT released into the outer transaction, so callers compose without knowing who
    opened what. Any exception, including trio's Cancelled and a COMMIT that fails (SQLITE_FULL
    on a full disk leaves the transaction open), rolls the block back and is re-raised: no
    path leaves a transaction open behind it, which would turn every later BEGIN of the mount
    into "cannot start a transaction within a transaction".

    The block must not `await`: the mount's handlers share one connection, and statements of
    another request would land inside this transaction.
    """
    if _in_transaction(db):
        name = f"sp{next(_savepoints)}"
        db.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            db.execute(f"ROLLBACK TO {name}")
            db.execute(f"RELEASE {name}")
            raise
        db.execute(f"RELEASE {name}")
        return
    db.execute("BEGIN")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if _in_transaction(db):  # a failed COMMIT (SQLITE_FULL, SQLITE_BUSY) leaves it open
            db.execute("ROLLBACK")
        raise


def _in_transaction(db: sqlite3.Connection) -> bool:
    return db.in_transaction


def open_volume(
    path: Path,
    *,
    uid: int,
    gid: int,
    chunk_size: int,
    encryption: str = "wfe1",
    storage: str = "blobs",
) -> sqlite3.Connection:
    """The volume database at `path`, created (atomically) if it does not exist yet, with
    every index of `INDEXES` (`add_indexes`).

    Args:
        uid, gid, chunk_size, encryption, storage: the root's owner and the volume's
            parameters, used only when the database is created (an existing one keeps its
            own).

    Raises:
        SchemaMismatch: the database has another schema version than this walrusfs reads.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".new")
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp, isolation_level=None)
        create_tables(
            db, uid=uid, gid=gid, chunk_size=chunk_size, encryption=encryption, storage=storage
        )
        db.close()
        tmp.rename(path)
    db = connect(path)
    try:
        version = get_param(db, "schema_version")
        if version != str(SCHEMA_VERSION):
            raise SchemaMismatch(
                f"{path} has schema version {version}, this walrusfs reads version {SCHEMA_VERSION}"
            )
        add_columns(db)
        add_indexes(db)
    except BaseException:
        db.close()
        raise
    return db


def get_param(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM params WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_param(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO params VALUES (?, ?)", (key, value))


def path_of(db: sqlite3.Connection, inode: int) -> str | None:
    """A path of the inode from the root (its first link), None once it has no name."""
    parts: list[bytes] = []
    seen = set()
    while inode != ROOT_INODE:
        row = db.execute(
            "SELECT parent, name FROM dentries WHERE inode = ? ORDER BY id LIMIT 1", (inode,)
        ).fetchone()
        if row is None or inode in seen:
            return None
        seen.add(inode)
        parts.append(bytes(row[1]))
        inode = int(row[0])
    return b"/".join(reversed(parts)).decode("utf-8", "surrogateescape")


def files_of_blob(db: sqlite3.Connection, blob_row: int, limit: int = -1) -> list[str]:
    """Paths of the files whose chunks a blob holds (for messages about that blob); at most
    `limit` of them (-1: all), `inode N` for a file without a name."""
    return [
        path_of(db, int(inode)) or f"inode {inode}"
        for (inode,) in db.execute(
            "SELECT DISTINCT inode FROM chunks WHERE blob = ? LIMIT ?", (blob_row, limit)
        )
    ]
