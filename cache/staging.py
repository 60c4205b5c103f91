"""The staging area: file data written into the mount that is not on Walrus yet.

A staged chunk lives in one of two places, never both:

- **small**: a chunk whose bytes end within `SMALL_MAX` is a row of `<root>/small.db`
  (`cache.smalldb`), written by read-modify-write: a row costs far less than a new file.
- **file**: otherwise one sparse local file per chunk, `<root>/<inode>.<chunkno>`
  (`cache.chunkfiles`), written in place with pwrite. A small chunk that grows past
  `SMALL_MAX` moves to a file.

The staging limit counts the bytes the staging area takes on disk (`used_bytes`, kept by
`cache.usage`), not the chunks' apparent sizes (`size`): holes cost nothing.

A full disk is ENOSPC for the writer, whichever store ran out: pwrite raises it itself, and
small.db's SQLITE_FULL becomes the same OSError (`cache.diskfull`).

The mount's database says which chunks are staged (chunks.staged = 1); staged bytes with no
such row are garbage from a crash and are removed by `sweep`. fsync on a chunk makes its bytes
durable: the file and, when names were created since, the directory; or small.db's WAL.

Uploads read staged bytes in the upload worker, by path: a file chunk's own file, or for small
chunks a batch file written for the upload (`write_batch`) holding their bytes end to end.

This module does local disk I/O only (no network, none of the mount's database): callers hold
the rules. Everything but `put`, `write_batch` and `fsync_fds` runs on the caller's thread
(the mount's loop); those three touch no shared state. The layout is in docs/formats.md.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from cache import Key
from cache.chunkfiles import ChunkFiles
from cache.smalldb import SMALL_DB, SmallDb
from cache.usage import Usage

log = logging.getLogger(__name__)

#: chunks whose bytes end within this many are rows of small.db instead of files
SMALL_MAX = 64 << 10


class Staging:
    """The staged chunks under `root`: which store holds each, their sizes, their bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._usage = Usage()
        self._small: set[Key] = set()  # keys whose bytes are in small.db (possibly no row yet)
        self._db = SmallDb(root)
        for key, length in self._db.lengths():
            self._small.add(key)
            self._usage.set_size(key, length)
            self._usage.set_allocated(key, length)
        self._files = ChunkFiles(root)
        for key in self._files.scan(keep_prefix=SMALL_DB):
            if key in self._small:  # a crash while a small chunk moved to a file: the file won
                self._drop_small(key)
            st = self._files.path(key).stat()
            self._usage.set_size(key, st.st_size)
            self._usage.set_allocated(key, st.st_blocks * 512)

    @property
    def _direct(self) -> bool:
        """Whether the filesystem takes O_DIRECT (tmpfs does not), for the tests to see."""
        return self._files.direct

    def is_small(self, key: Key) -> bool:
        """The chunk's bytes are in small.db (`small_bytes`), not in a file (`path`)."""
        return key in self._small

    def path(self, key: Key) -> Path:
        """Where a file chunk's bytes are (for a reader in another process)."""
        return self._files.path(key)

    def keys(self) -> list[Key]:
        """Every staged chunk, small or file."""
        return [*self._small, *(k for k in self._usage if k not in self._small)]

    def sweep(self, live: Iterable[Key]) -> int:
        """Remove staged chunks the database does not reference; returns how many."""
        keep = set(live)
        removed = 0
        for key in self.keys():
            if key not in keep:
                self.remove(key)
                removed += 1
        return removed

    def exists(self, key: Key) -> bool:
        return key in self._usage

    def size(self, key: Key) -> int:
        return self._usage.size(key)

    @property
    def used_bytes(self) -> int:
        """Bytes the staged chunks take on disk (what the staging limit counts), not their
        apparent sizes: holes cost nothing."""
        return self._usage.total

    def allocated(self, key: Key) -> int:
        """Bytes the chunk takes on disk (0 for a chunk that is all hole)."""
        return self._usage.allocated(key)

    def _open_file(self, key: Key) -> None:
        """Open the chunk's file for writing, creating it (and registering the chunk, size 0)
        if it is new."""
        self._files.fd(key, create=True)
        if key not in self._usage:
            self._usage.set_size(key, 0)
            self._files.name_created()

    # -- small chunks -----------------------------------------------------------------------

    def _store_small(self, key: Key, data: bytes) -> None:
        self._db.store(key, data)
        self._usage.set_size(key, len(data))
        self._usage.set_allocated(key, len(data))

    def _drop_small(self, key: Key) -> None:
        self._db.delete(key)
        self._small.discard(key)

    def _to_file(self, key: Key) -> None:
        """Move a small chunk into a file of its own (it outgrew SMALL_MAX), on this thread.
        The mount does it the same way but with `put` in a worker thread (Content.write); a
        file such a `put` left, not adopted yet, is an older copy: set aside for ours."""
        while not self.put(key, self._db.data(key)):
            self._files.unlink_later(key)
        self.adopt(key, self._usage.size(key))

    def outgrows(self, key: Key, end: int) -> bool:
        """A write up to `end` would move this small chunk's bytes into a file."""
        return key in self._small and end > SMALL_MAX and self._usage.size(key) > 0

    def small_bytes(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The bytes of small chunks (for an upload batch)."""
        return {key: self._db.data(key) for key in keys if key in self._small}

    def batch_path(self) -> Path:
        """A new name for an upload batch (removed at the next open if a crash leaves it)."""
        return self._files.fresh_name("batch")

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
        if key in self._usage:
            self.truncate(key, 0)
            return
        self._small.add(key)
        self._usage.set_size(key, 0)

    def put(self, key: Key, data: bytes) -> bool:
        """Write a whole chunk into its file, durably (bytes and name): a chunk copied from
        Walrus before the database says it is staged, or a small chunk moving to a file before
        its row goes (so a crash leaves the row, or a complete file that `__init__` prefers).
        Safe in a worker thread: it touches no shared state; `adopt` then registers the file on
        the loop, or `discard_put` drops it if the chunk changed meanwhile.

        Returns:
            False, and nothing written, if the chunk has a file already: a write on the loop
            made one while this ran, and a late copy must never replace it.
        """
        return self._files.put(key, data)

    def discard_put(self, key: Key) -> None:
        """Forget a file `put` wrote for a chunk that stayed small (changed or removed while it
        was written): it must not outlive the row it copied."""
        if key in self._small or key not in self._usage:
            self._files.unlink_later(key)

    def adopt(self, key: Key, size: int) -> None:
        """Register a file `put` wrote (a descriptor cached for the old file is stale)."""
        self._files.close_fds(key)
        if key in self._small:
            self._drop_small(key)
        self._usage.set_size(key, size)
        self._usage.set_allocated(key, self._files.path(key).stat().st_blocks * 512)

    def write(self, key: Key, offset: int, data: bytes | memoryview) -> None:
        """Write `data` at `offset` of the chunk, creating it if need be.

        Raises:
            OSError: ENOSPC if the disk is full.
        """
        end = offset + len(data)
        if key not in self._usage and end <= SMALL_MAX:  # a chunk nobody created, small
            self.create(key)
        elif key in self._small and end > SMALL_MAX and not self._usage.size(key):
            self._drop_small(key)  # empty so far: nothing to move, a file from the start
            self._usage.set_size(key, None)  # registered again (and its name to sync) below
        if key in self._small:
            if end <= SMALL_MAX:
                if offset == 0 and end >= self._usage.size(key):  # all of it (a new file's)
                    self._store_small(key, bytes(data))
                    return
                old = self._db.data(key)
                if offset > len(old):
                    old += bytes(offset - len(old))
                self._store_small(key, b"".join((old[:offset], data, old[end:])))
                return
            self._to_file(key)
        self._open_file(key)
        self._files.write(key, offset, data)
        if end > self._usage.size(key):
            self._usage.set_size(key, end)
        self._usage.set_allocated(key, self._files.allocated(key))

    def read(self, key: Key, offset: int, length: int) -> bytes:
        """Up to `length` bytes; short (or empty) where the staged bytes end."""
        if key not in self._usage:
            return b""
        if key in self._small:
            return self._db.data(key)[offset : offset + length]
        return self._files.read(key, offset, length)

    def truncate(self, key: Key, length: int) -> None:
        """Cut or extend the chunk to `length` bytes (zeros, or a hole, past its end).

        Raises:
            OSError: ENOSPC if the disk is full.
        """
        if key in self._small and length <= SMALL_MAX:
            data = self._db.data(key)
            self._store_small(key, data[:length] + bytes(max(0, length - len(data))))
            return
        if key in self._small:
            self._to_file(key)
        self._open_file(key)
        self._files.truncate(key, length)
        self._usage.set_size(key, length)
        self._usage.set_allocated(key, self._files.allocated(key))

    def dup_for_fsync(self, keys: Iterable[Key]) -> list[int]:
        """Descriptors to fsync (the chunks' files, the directory's if names were created since
        its last fsync: not fsynced per create, which would cost milliseconds each, and
        small.db's WAL for small chunks), duplicated so a worker thread can fsync and close
        them while the loop goes on. `fsync_fds` them."""
        files = []
        small = False
        for key in keys:
            if key in self._small:
                small = True
            elif key in self._usage:
                files.append(key)
        fds = self._files.dup_fds(files)
        if small:
            fds.append(self._db.dup_wal_fd())
        return fds + self._files.dup_dir_fd()

    @staticmethod
    def fsync_fds(fds: list[int]) -> None:
        """fsync each descriptor, then close them all (a worker thread may call it)."""
        try:
            for fd in fds:
                os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)

    def remove(self, key: Key) -> None:
        """Remove a staged chunk.

        Raises:
            OSError: ENOSPC if small.db cannot record a small chunk's removal (the chunk is
                gone from memory already; its row is removed by `sweep` at the next open).
        """
        if key in self._small:  # memory first: a row left by a full disk is swept later
            self._small.discard(key)
            self._usage.set_size(key, None)
            self._db.delete(key)
            return
        self._forget_file(key)

    def _forget_file(self, key: Key) -> None:
        self._files.close_fds(key)
        self._usage.set_size(key, None)
        self._files.unlink_later(key)

    def remove_all(self, keys: Iterable[Key]) -> None:
        """`remove` each, the small ones in one small.db transaction. The memory state goes
        first and a full disk is not raised: the callers remove bytes the database no longer
        names (an upload committed, a file purged), and rows whose deletion cannot be
        written are removed by `sweep` at the next open."""
        rows = []
        for key in keys:
            if key in self._small:
                self._small.discard(key)
                self._usage.set_size(key, None)
                rows.append(key)
            else:
                self._forget_file(key)
        if not rows:
            return
        try:
            self._db.delete_many(rows)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            log.warning(
                "small.db: %d removal(s) not written (%s); swept at the next open", len(rows), exc
            )

    def close(self) -> None:
        """Closes the descriptors and small.db, and waits for the removals still queued."""
        self._files.close()
        self._db.close()
