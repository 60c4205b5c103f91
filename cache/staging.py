"""The staging area: file data written into the mount that is not on Walrus yet.

One sparse local file per dirty chunk, `<root>/<inode>.<chunkno>`, written in place with
pwrite. The mount's database says which chunks are staged (chunks.staged = 1); a file with no
such row is garbage from a crash and is removed by `sweep`. fsync on a chunk makes its bytes
and its name durable (the directory is fsynced then, not at every creation).

Removing a chunk renames its file to `del.<n>` and a background thread unlinks it: unlinking a
file whose blocks are on disk costs ext4 80-250 us, a rename ~20 us, and removals come in bursts
on the event loop (`rm -r` of small files, or a quilt of hundreds of files certified at once).
The rename frees the name at once, so a new file for the same chunk never meets the old one; a
`del.*` left by a crash is removed with the other strays when the staging area is next opened.

This module does local disk I/O only (no network, no database): callers hold the rules.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (inode, chunkno)

MAX_OPEN_FILES = 128


class Staging:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._fds: OrderedDict[Key, int] = OrderedDict()
        self._sizes: dict[Key, int] = {}
        self._total = 0
        for key in self.keys():
            self._set_size(key, self._path(key).stat().st_size)
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
        self._total += (size or 0) - self._sizes.get(key, 0)
        if size is None:
            self._sizes.pop(key, None)
        else:
            self._sizes[key] = size

    def _path(self, key: Key) -> Path:
        return self.root / f"{key[0]}.{key[1]}"

    def path(self, key: Key) -> Path:
        """Where the chunk's bytes are (for a reader in another process)."""
        return self._path(key)

    def keys(self) -> Iterator[Key]:
        for entry in os.scandir(self.root):
            name = entry.name
            inode, _, chunkno = name.partition(".")
            if inode.isdigit() and chunkno.isdigit():
                yield int(inode), int(chunkno)
            else:  # a temporary file of an interrupted materialisation, or a removed chunk
                Path(entry.path).unlink(missing_ok=True)

    def sweep(self, live: Iterable[Key]) -> int:
        """Remove staging files the database does not reference; returns how many."""
        keep = set(live)
        removed = 0
        for key in list(self.keys()):
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
        return self._total

    def create(self, key: Key) -> None:
        """An empty staging file for a new chunk."""
        os.ftruncate(self._fd(key, create=True), 0)
        self._set_size(key, 0)

    def put(self, key: Key, data: bytes) -> None:
        """Write a whole chunk copied from Walrus, durably (bytes and name), before the database
        says it is staged. Safe in a worker thread: it touches no shared state; `adopt` then
        registers the file on the loop."""
        path = self._path(key)
        tmp = path.with_name(path.name + ".tmp")  # swept by keys() if we crash here
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def adopt(self, key: Key, size: int) -> None:
        """Register a file `put` wrote (a descriptor cached for the old file is stale)."""
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        self._set_size(key, size)

    def write(self, key: Key, offset: int, data: bytes | memoryview) -> None:
        fd = self._fd(key, create=True)
        written = os.pwrite(fd, data, offset)
        while written < len(data):  # pwrite on a regular file only stops short on ENOSPC
            written += os.pwrite(fd, data[written:], offset + written)
        end = offset + len(data)
        if end > self._sizes.get(key, 0):
            self._set_size(key, end)

    def read(self, key: Key, offset: int, length: int) -> bytes:
        """Up to `length` bytes; short (or empty) where the staging file ends."""
        if key not in self._sizes:
            return b""
        return os.pread(self._fd(key), length, offset)

    def truncate(self, key: Key, length: int) -> None:
        os.ftruncate(self._fd(key, create=True), length)
        self._set_size(key, length)

    def dup_for_fsync(self, keys: Iterable[Key]) -> list[int]:
        """Descriptors to fsync (the chunks', and the directory's if names were created since
        its last fsync: not fsynced per create, which would cost milliseconds each), duplicated
        so a worker thread can fsync and close them while the loop goes on. `fsync_fds` them."""
        fds = [os.dup(self._fd(key)) for key in keys if key in self._sizes]
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
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        self._set_size(key, None)
        doomed = self.root / f"del.{next(self._names)}"
        try:
            os.rename(self._path(key), doomed)
        except FileNotFoundError:
            return
        self._doomed.put(doomed)

    def close(self) -> None:
        """Closes the descriptors and waits for the removals still queued."""
        self._doomed.put(None)
        self._reaper.join()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        os.close(self._dir_fd)
