"""The staging area: file data written into the mount that is not on Walrus yet.

A staged chunk lives in one of two places, never both:

- **small**: a chunk whose bytes end within `SMALL_MAX` is a row of `<root>/small.db`
  (SQLite: `small(inode, chunkno, data)`), written in place by read-modify-write. Creating a
  file on ext4 costs 150-1000 us here (a fresh inode), an SQLite row ~40 us, and most files
  people copy (sources, documents, a backup tool's index files) are small: a file per small
  chunk made creating one cost more than everything else the mount does for it.
- **file**: otherwise one sparse local file per chunk, `<root>/<inode>.<chunkno>`, written in
  place with pwrite. A small chunk that grows past `SMALL_MAX` moves to a file.

The staging limit counts the bytes the staging area takes on disk (`used_bytes`): the allocated
blocks of chunk files (st_blocks, so a sparse 64 MiB chunk holding a few KiB costs a few KiB)
and the row sizes of small.db. The apparent sizes (`size`) say how long a chunk is; counting
those held a tree of sparse files (fsstress: 16.9 GB apparent, 174 MB on disk) against a 16 GiB
limit and answered ENOSPC with the disk nearly empty.

A full disk is ENOSPC for the writer, whichever store ran out: pwrite raises it itself, and
small.db's "database or disk is full" (SQLITE_FULL) is turned into the same OSError here.

The mount's database says which chunks are staged (chunks.staged = 1); staged bytes with no
such row are garbage from a crash and are removed by `sweep`. fsync on a chunk makes its bytes
durable: the file and, when names were created since, the directory; or small.db's WAL.

Removing a file chunk renames its file to `del.<n>` and a background thread unlinks it:
unlinking a file whose blocks are on disk costs ext4 80-250 us, a rename ~20 us, and removals
come in bursts on the event loop (`rm -r`, or a quilt of hundreds of files certified at once).
The rename frees the name at once, so a new file for the same chunk never meets the old one; a
`del.*` left by a crash is removed with the other strays when the staging area is next opened.

Uploads read staged bytes in the upload worker, by path: a file chunk's own file, or for small
chunks a batch file written for the upload (`write_batch`) holding their bytes end to end.

This module does local disk I/O only (no network, none of the mount's database): callers hold
the rules. Everything but `put`, `write_batch` and `fsync_fds` runs on the caller's thread
(the mount's loop); those three touch no shared state.
"""

from __future__ import annotations

import errno
import itertools
import logging
import mmap
import os
import queue
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (inode, chunkno)

MAX_OPEN_FILES = 128
MAX_DIRECT_FILES = 16  # O_DIRECT descriptors kept (chunks being written in large pieces)
#: writes into chunk files at least this large, page-aligned in offset and length, bypass the
#: page cache (O_DIRECT): see `_write_direct`
DIRECT_MIN = 64 << 10
ALIGN = 4096
#: chunks whose bytes end within this many are rows of small.db instead of files
SMALL_MAX = 64 << 10
SMALL_DB = "small.db"


class Staging:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._fds: OrderedDict[Key, int] = OrderedDict()
        self._direct_fds: OrderedDict[Key, int] = OrderedDict()
        self._direct = True  # the filesystem takes O_DIRECT (tmpfs does not)
        self._aligned: mmap.mmap | None = None  # a page-aligned buffer for O_DIRECT writes
        self._sizes: dict[Key, int] = {}  # apparent sizes (bytes up to the last written)
        self._alloc: dict[Key, int] = {}  # bytes on disk: file blocks, or the row's length
        self._small: set[Key] = set()  # keys whose bytes are in small.db (possibly no row yet)
        self._total = 0  # sum of _alloc
        self._db = _open_small(root / SMALL_DB)
        # the WAL's descriptor, duplicated for fsync (small.db is in WAL mode: a committed
        # write is in the WAL or, after a checkpoint, synced into the database file)
        self._wal_fd = os.open(root / (SMALL_DB + "-wal"), os.O_RDONLY)
        for inode, chunkno, size in self._db.execute(
            "SELECT inode, chunkno, length(data) FROM small"
        ):
            key = (int(inode), int(chunkno))
            self._small.add(key)
            self._set_size(key, int(size))
            self._set_alloc(key, int(size))
        for key in self._file_keys():
            if key in self._small:  # a crash while a small chunk moved to a file: the file won
                self._drop_small(key)
            st = self._path(key).stat()
            self._set_size(key, st.st_size)
            self._set_alloc(key, st.st_blocks * 512)
        self._dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._dir_dirty = False  # names created since the directory was last fsynced
        self._doomed: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._names = itertools.count()
        self._reaper = threading.Thread(target=self._reap, name="staging-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        """Unlinks what `remove` renamed, until `close` sends None."""
        while (path := self._doomed.get()) is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # left for the sweep at the next open
                log.warning("cannot remove %s: %s", path, exc)

    def _set_size(self, key: Key, size: int | None) -> None:
        if size is None:
            self._sizes.pop(key, None)
            self._set_alloc(key, None)
        else:
            self._sizes[key] = size

    def _set_alloc(self, key: Key, nbytes: int | None) -> None:
        self._total += (nbytes or 0) - self._alloc.get(key, 0)
        if nbytes is None:
            self._alloc.pop(key, None)
        else:
            self._alloc[key] = nbytes

    def _measure(self, key: Key, fd: int) -> None:
        """Record what the chunk's file takes on disk now (an fstat, ~1 us: cheap beside the
        write it follows). ext4 counts delayed-allocation blocks in st_blocks, tmpfs its
        pages, so a buffered write is counted before writeback."""
        self._set_alloc(key, os.fstat(fd).st_blocks * 512)

    def _path(self, key: Key) -> Path:
        return self.root / f"{key[0]}.{key[1]}"

    def is_small(self, key: Key) -> bool:
        """The chunk's bytes are in small.db (`small_bytes`), not in a file (`path`)."""
        return key in self._small

    def path(self, key: Key) -> Path:
        """Where a file chunk's bytes are (for a reader in another process)."""
        return self._path(key)

    def _file_keys(self) -> Iterator[Key]:
        for entry in os.scandir(self.root):
            name = entry.name
            inode, _, chunkno = name.partition(".")
            if inode.isdigit() and chunkno.isdigit():
                yield int(inode), int(chunkno)
            elif not name.startswith(SMALL_DB):
                # an interrupted materialisation or upload batch, or a removed chunk
                Path(entry.path).unlink(missing_ok=True)

    def keys(self) -> list[Key]:
        """Every staged chunk, small or file."""
        return [*self._small, *(k for k in self._sizes if k not in self._small)]

    def sweep(self, live: Iterable[Key]) -> int:
        """Remove staged chunks the database does not reference; returns how many."""
        keep = set(live)
        removed = 0
        for key in self.keys():
            if key not in keep:
                self.remove(key)
                removed += 1
        return removed

    def _fd(self, key: Key, create: bool = False) -> int:
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self._path(key), flags, 0o600)
        if create and key not in self._sizes:
            self._set_size(key, 0)
            self._dir_dirty = True
        self._fds[key] = fd
        while len(self._fds) > MAX_OPEN_FILES:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def exists(self, key: Key) -> bool:
        return key in self._sizes

    def size(self, key: Key) -> int:
        return self._sizes.get(key, 0)

    @property
    def used_bytes(self) -> int:
        """Bytes the staged chunks take on disk (what the staging limit counts), not their
        apparent sizes: holes cost nothing."""
        return self._total

    def allocated(self, key: Key) -> int:
        """Bytes the chunk takes on disk (0 for a chunk that is all hole)."""
        return self._alloc.get(key, 0)

    # -- small chunks -----------------------------------------------------------------------

    def _small_data(self, key: Key) -> bytes:
        row = self._db.execute(
            "SELECT data FROM small WHERE inode = ? AND chunkno = ?", key
        ).fetchone()
        return b"" if row is None else bytes(row[0])

    def _store_small(self, key: Key, data: bytes) -> None:
        with disk_full_is_enospc():
            self._db.execute("INSERT OR REPLACE INTO small VALUES (?, ?, ?)", (*key, data))
        self._set_size(key, len(data))
        self._set_alloc(key, len(data))

    def _drop_small(self, key: Key) -> None:
        with disk_full_is_enospc():
            self._db.execute("DELETE FROM small WHERE inode = ? AND chunkno = ?", key)
        self._small.discard(key)

    def _to_file(self, key: Key) -> None:
        """Move a small chunk into a file of its own (it outgrew SMALL_MAX), on this thread.
        The mount does it the same way but with `put` in a worker thread (Content.write); a
        file such a `put` left, not adopted yet, is an older copy: set aside for ours."""
        while not self.put(key, self._small_data(key)):
            self._unlink_later(key)
        self.adopt(key, self._sizes[key])

    def outgrows(self, key: Key, end: int) -> bool:
        """A write up to `end` would move this small chunk's bytes into a file."""
        return key in self._small and end > SMALL_MAX and self._sizes[key] > 0

    def small_bytes(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The bytes of small chunks (for an upload batch)."""
        return {key: self._small_data(key) for key in keys if key in self._small}

    def batch_path(self) -> Path:
        """A new name for an upload batch (swept at the next open if a crash leaves it)."""
        return self.root / f"batch.{next(self._names)}"

    @staticmethod
    def write_batch(path: Path, parts: list[bytes]) -> list[tuple[int, int]]:
        """Write `parts` end to end into `path` (a worker thread may call it); their (offset,
        length) in it. The upload worker reads them from there, the mount deletes it after."""
        spans = []
        offset = 0
        with open(path, "wb") as f:
            for part in parts:
                f.write(part)
                spans.append((offset, len(part)))
                offset += len(part)
        return spans

    # -- writing ----------------------------------------------------------------------------

    def create(self, key: Key) -> None:
        """An empty staged chunk (small until its bytes pass SMALL_MAX)."""
        if key in self._sizes:
            self.truncate(key, 0)
            return
        self._small.add(key)
        self._set_size(key, 0)

    def put(self, key: Key, data: bytes) -> bool:
        """Write a whole chunk into its file, durably (bytes and name): a chunk copied from
        Walrus before the database says it is staged, or a small chunk moving to a file before
        its row goes (so a crash leaves the row, or a complete file that `__init__` prefers).
        Safe in a worker thread: it touches no shared state; `adopt` then registers the file on
        the loop, or `discard_put` drops it if the chunk changed meanwhile.

        False, and nothing written, if the chunk has a file already: a write on the loop made
        one while this ran, and a late copy must never replace it (the name is taken with a
        hard link, which fails if it exists; a rename would replace the live file)."""
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")  # swept by keys() if we crash here
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            _pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    def discard_put(self, key: Key) -> None:
        """Forget a file `put` wrote for a chunk that stayed small (changed or removed while it
        was written): it must not outlive the row it copied."""
        if key in self._small or key not in self._sizes:
            self._unlink_later(key)

    def _unlink_later(self, key: Key) -> None:
        """Rename the chunk's file aside for the background unlinker: freeing an ext4 file's
        blocks costs 80-250 us, which the caller (a FUSE request) should not wait for."""
        doomed = self.root / f"del.{next(self._names)}"
        try:
            os.rename(self._path(key), doomed)
        except FileNotFoundError:
            return
        self._doomed.put(doomed)

    def adopt(self, key: Key, size: int) -> None:
        """Register a file `put` wrote (a descriptor cached for the old file is stale)."""
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        self._close_direct(key)
        if key in self._small:
            self._drop_small(key)
        self._set_size(key, size)
        self._set_alloc(key, self._path(key).stat().st_blocks * 512)

    def write(self, key: Key, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        if key not in self._sizes and end <= SMALL_MAX:  # a chunk nobody created, small
            self.create(key)
        elif key in self._small and end > SMALL_MAX and not self._sizes[key]:
            self._drop_small(key)  # empty so far: nothing to move, a file from the start
            self._set_size(key, None)  # registered again (and its name to sync) by _fd
        if key in self._small:
            if end <= SMALL_MAX:
                if offset == 0 and end >= self._sizes[key]:  # all of it (a new file's write)
                    self._store_small(key, bytes(data))
                    return
                old = self._small_data(key)
                if offset > len(old):
                    old += bytes(offset - len(old))
                self._store_small(key, b"".join((old[:offset], data, old[end:])))
                return
            self._to_file(key)
        fd = self._fd(key, create=True)
        if len(data) < DIRECT_MIN or offset % ALIGN or len(data) % ALIGN or not self._direct:
            _pwrite_all(fd, data, offset)
        else:
            self._write_direct(key, data, offset)
        if end > self._sizes.get(key, 0):
            self._set_size(key, end)
        self._measure(key, fd)

    def _write_direct(self, key: Key, data: bytes | memoryview, offset: int) -> None:
        """A large aligned piece (the kernel's writeback sends 128 KiB-1 MiB pages at a time)
        straight to the disk, through a page-aligned copy: the staged copy is read once, by
        the upload, and a buffered write needs a fresh page-cache page per 4 KiB, which on
        this machine cost as much as everything else a MiB written into the mount costs
        (~2.5 ms per MiB when memory has to come from the host). It also leaves fsync almost
        nothing to flush. The file's page cache stays coherent: the kernel writes back and
        drops cached pages of the range a direct write covers."""
        fd = self._direct_fds.get(key)
        if fd is None:
            try:
                fd = os.open(self._path(key), os.O_RDWR | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.info("the staging area's filesystem does not take O_DIRECT: buffered writes")
                self._direct = False
                _pwrite_all(self._fd(key), data, offset)
                return
            self._direct_fds[key] = fd
            while len(self._direct_fds) > MAX_DIRECT_FILES:
                os.close(self._direct_fds.popitem(last=False)[1])
        else:
            self._direct_fds.move_to_end(key)
        n = len(data)
        if self._aligned is None or len(self._aligned) < n:
            if self._aligned is not None:
                self._aligned.close()
            self._aligned = mmap.mmap(-1, max(n, 1 << 20))
        view = memoryview(self._aligned)
        try:
            view[:n] = data
            _pwrite_all(fd, view[:n], offset)
        finally:
            view.release()

    def _close_direct(self, key: Key) -> None:
        fd = self._direct_fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def read(self, key: Key, offset: int, length: int) -> bytes:
        """Up to `length` bytes; short (or empty) where the staged bytes end."""
        if key not in self._sizes:
            return b""
        if key in self._small:
            return self._small_data(key)[offset : offset + length]
        return os.pread(self._fd(key), length, offset)

    def truncate(self, key: Key, length: int) -> None:
        if key in self._small and length <= SMALL_MAX:
            data = self._small_data(key)
            self._store_small(key, data[:length] + bytes(max(0, length - len(data))))
            return
        if key in self._small:
            self._to_file(key)
        fd = self._fd(key, create=True)
        os.ftruncate(fd, length)
        self._set_size(key, length)
        self._measure(key, fd)

    def dup_for_fsync(self, keys: Iterable[Key]) -> list[int]:
        """Descriptors to fsync (the chunks' files, the directory's if names were created since
        its last fsync: not fsynced per create, which would cost milliseconds each, and
        small.db's WAL for small chunks), duplicated so a worker thread can fsync and close
        them while the loop goes on. `fsync_fds` them."""
        fds = []
        small = False
        for key in keys:
            if key in self._small:
                small = True
            elif key in self._sizes:
                fds.append(os.dup(self._fd(key)))
        if small:
            fds.append(os.dup(self._wal_fd))
        if self._dir_dirty:
            self._dir_dirty = False
            fds.append(os.dup(self._dir_fd))
        return fds

    @staticmethod
    def fsync_fds(fds: list[int]) -> None:
        try:
            for fd in fds:
                os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)

    def remove(self, key: Key) -> None:
        if key in self._small:  # memory first: a row left by a full disk is swept later
            self._small.discard(key)
            self._set_size(key, None)
            with disk_full_is_enospc():
                self._db.execute("DELETE FROM small WHERE inode = ? AND chunkno = ?", key)
            return
        self._forget_file(key)

    def _forget_file(self, key: Key) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        self._close_direct(key)
        self._set_size(key, None)
        self._unlink_later(key)

    def remove_all(self, keys: Iterable[Key]) -> None:
        """`remove` each, the small ones in one small.db transaction. The memory state goes
        first and a full disk is not raised: the callers remove bytes the database no longer
        names (an upload committed, a file purged), and rows whose deletion cannot be
        written are removed by `sweep` at the next open."""
        rows = []
        for key in keys:
            if key in self._small:
                self._small.discard(key)
                self._set_size(key, None)
                rows.append(key)
            else:
                self._forget_file(key)
        if not rows:
            return
        try:
            with disk_full_is_enospc():
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM small WHERE inode = ? AND chunkno = ?", rows)
                self._db.execute("COMMIT")
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning("small.db: %d removal(s) not written (%s); swept at the next open",
                        len(rows), exc)  # fmt: skip
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        """Closes the descriptors and small.db, and waits for the removals still queued."""
        self._doomed.put(None)
        self._reaper.join()
        for fd in [*self._fds.values(), *self._direct_fds.values()]:
            os.close(fd)
        self._fds.clear()
        self._direct_fds.clear()
        if self._aligned is not None:
            self._aligned.close()
        os.close(self._dir_fd)
        os.close(self._wal_fd)
        self._db.close()


def _is_full(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL), or an OSError ENOSPC: the disk under
    WALRUSFS_HOME is full, which the writer must see as ENOSPC (not EIO)."""
    return _is_full(exc) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


@contextmanager
def disk_full_is_enospc() -> Iterator[None]:
    """Re-raise SQLITE_FULL as OSError(ENOSPC): the one errno for a full disk, which the
    mount's handlers pass to the kernel unchanged (a bare sqlite3 error became EIO)."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not _is_full(exc):
            raise
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})") from exc


def _open_small(path: Path) -> sqlite3.Connection:
    """small.db: WAL, synchronous=NORMAL (a crash of the mount loses nothing committed; fsync
    of the WAL makes it durable), EXCLUSIVE like the volume database (one process)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS small (inode INTEGER NOT NULL, chunkno INTEGER NOT NULL, "
        "data BLOB NOT NULL, PRIMARY KEY (inode, chunkno))"
    )
    return db


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    written = os.pwrite(fd, data, offset)
    while written < len(data):  # pwrite on a regular file only stops short on ENOSPC
        written += os.pwrite(fd, data[written:], offset + written)
