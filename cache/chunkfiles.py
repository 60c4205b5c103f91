"""The staging area's chunk files: one sparse file per chunk, `<root>/<inode>.<chunkno>`.

Bytes are written in place with pwrite, through a cache of open descriptors. Large aligned
pieces bypass the page cache (O_DIRECT, `_write_direct`) where the filesystem takes it.

A removed chunk's file is renamed to `del.<n>` and a background thread unlinks it: unlinking
a file whose blocks are on disk costs ext4 80-250 us, a rename ~20 us, and removals come in
bursts on the event loop (`rm -r`, or a quilt of hundreds of files certified at once). The
rename frees the name at once, so a new file for the same chunk never meets the old one; a
`del.*` left by a crash is removed with the other strays by `scan` at the next open.

A new name is not fsynced when it is created (that costs milliseconds): the directory is
marked dirty, and the next `dup_dir_fd` hands its descriptor to the fsync.

Only `put` is safe in another thread (it touches no shared state); everything else runs on
the caller's thread (the mount's loop).
"""

from __future__ import annotations

import errno
import itertools
import logging
import mmap
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

from cache import Key

log = logging.getLogger(__name__)

MAX_OPEN_FILES = 128
MAX_DIRECT_FILES = 16  # O_DIRECT descriptors kept (chunks being written in large pieces)
#: writes into chunk files at least this large, page-aligned in offset and length, bypass the
#: page cache (O_DIRECT): see `_write_direct`
DIRECT_MIN = 64 << 10
ALIGN = 4096


class ChunkFiles:
    """The chunk files in `root`, their open descriptors and the background unlinker.

    Knows nothing of sizes or of small.db: the staging area keeps those.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fds: OrderedDict[Key, int] = OrderedDict()
        self._direct_fds: OrderedDict[Key, int] = OrderedDict()
        self.direct = True  # the filesystem takes O_DIRECT (tmpfs does not)
        self._aligned: mmap.mmap | None = None  # a page-aligned buffer for O_DIRECT writes
        self._dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        self._dir_dirty = False  # names created since the directory was last fsynced
        self._doomed: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._names = itertools.count()
        self._reaper = threading.Thread(target=self._reap, name="staging-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        """Unlinks what `unlink_later` renamed, until `close` sends None."""
        while (path := self._doomed.get()) is not None:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # left for the scan at the next open
                log.warning("cannot remove %s: %s", path, exc)

    def path(self, key: Key) -> Path:
        """Where a chunk's file is (it may not exist)."""
        return self.root / f"{key[0]}.{key[1]}"

    def fresh_name(self, prefix: str) -> Path:
        """A name in the directory no other call returns: `<prefix>.<n>`. `scan` removes it
        at the next open if a crash leaves it."""
        return self.root / f"{prefix}.{next(self._names)}"

    def scan(self, keep_prefix: str) -> list[Key]:
        """The chunks that have a file. Every other name not starting with `keep_prefix` is
        removed: an interrupted copy (`.tmp`), upload batch or removal (`del.`)."""
        keys = []
        for entry in os.scandir(self.root):
            name = entry.name
            inode, _, chunkno = name.partition(".")
            if inode.isdigit() and chunkno.isdigit():
                keys.append((int(inode), int(chunkno)))
            elif not name.startswith(keep_prefix):
                Path(entry.path).unlink(missing_ok=True)
        return keys

    def fd(self, key: Key, create: bool = False) -> int:
        """The chunk file's cached read-write descriptor (`create`: the file is created if
        missing; the caller says whether that made a new name, `name_created`)."""
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self.path(key), flags, 0o600)
        self._fds[key] = fd
        while len(self._fds) > MAX_OPEN_FILES:
            _, old = self._fds.popitem(last=False)
            os.close(old)
        return fd

    def name_created(self) -> None:
        """A chunk file was created: the directory needs an fsync before it is durable."""
        self._dir_dirty = True

    def allocated(self, key: Key) -> int:
        """Bytes the chunk's file takes on disk now (an fstat, ~1 us: cheap beside the write
        it follows). ext4 counts delayed-allocation blocks in st_blocks, tmpfs its pages, so
        a buffered write is counted before writeback."""
        return os.fstat(self.fd(key)).st_blocks * 512

    def read(self, key: Key, offset: int, length: int) -> bytes:
        return os.pread(self.fd(key), length, offset)

    def write(self, key: Key, offset: int, data: bytes | memoryview) -> None:
        """Write into the chunk's file (opened with `fd(key, create=True)` first)."""
        if len(data) < DIRECT_MIN or offset % ALIGN or len(data) % ALIGN or not self.direct:
            _pwrite_all(self.fd(key), data, offset)
        else:
            self._write_direct(key, data, offset)

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
                fd = os.open(self.path(key), os.O_RDWR | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.info("the staging area's filesystem does not take O_DIRECT: buffered writes")
                self.direct = False
                _pwrite_all(self.fd(key), data, offset)
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

    def truncate(self, key: Key, length: int) -> None:
        """Cut or extend the chunk's file (opened with `fd(key, create=True)` first)."""
        os.ftruncate(self.fd(key), length)

    def put(self, key: Key, data: bytes) -> bool:
        """Write a whole chunk into its file, durably (bytes and name). Safe in a worker
        thread: it touches no shared state.

        Returns:
            False, and nothing written, if the chunk has a file already: a late copy must
            never replace a file a write on the loop made meanwhile (the name is taken with a
            hard link, which fails if it exists; a rename would replace the live file).
        """
        path = self.path(key)
        tmp = path.with_name(path.name + ".tmp")  # removed by scan() if we crash here
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

    def close_fds(self, key: Key) -> None:
        """Close the chunk's cached descriptors (its file was replaced or is going)."""
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        fd = self._direct_fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def unlink_later(self, key: Key) -> None:
        """Rename the chunk's file aside for the background unlinker: freeing an ext4 file's
        blocks costs 80-250 us, which the caller (a FUSE request) should not wait for."""
        doomed = self.fresh_name("del")
        try:
            os.rename(self.path(key), doomed)
        except FileNotFoundError:
            return
        self._doomed.put(doomed)

    def dup_fds(self, keys: Iterable[Key]) -> list[int]:
        """Duplicated descriptors of the chunks' files, for a worker thread to fsync and
        close."""
        return [os.dup(self.fd(key)) for key in keys]

    def dup_dir_fd(self) -> list[int]:
        """The directory's descriptor, duplicated, if names were created since it was last
        handed out (else nothing): fsyncing it makes those names durable."""
        if not self._dir_dirty:
            return []
        self._dir_dirty = False
        return [os.dup(self._dir_fd)]

    def close(self) -> None:
        """Waits for the removals still queued, then closes every descriptor."""
        self._doomed.put(None)
        self._reaper.join()
        for fd in [*self._fds.values(), *self._direct_fds.values()]:
            os.close(fd)
        self._fds.clear()
        self._direct_fds.clear()
        if self._aligned is not None:
            self._aligned.close()
        os.close(self._dir_fd)


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """pwrite all of `data` at `offset`.

    Raises:
        OSError: ENOSPC when the disk is full (pwrite on a regular file only stops short then).
    """
    written = os.pwrite(fd, data, offset)
    while written < len(data):
        written += os.pwrite(fd, data[written:], offset + written)
