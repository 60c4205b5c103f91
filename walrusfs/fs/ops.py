"""The pyfuse3 request handlers: POSIX semantics over the volume database and `Content`.

Every handler runs on the mount's trio loop. Rules (docs/mount.md):
- only `FUSEError` may leave a handler: `_errors` maps OSError to its errno and anything else
  to EIO with a logged traceback (an escaping exception would kill the mount);
- database statements between two awaits are atomic; handlers re-read what they checked
  before an await;
- lookup counts follow pyfuse3's rules: +1 for lookup/create/mknod/mkdir/symlink/link and for
  each readdir entry the kernel accepted; an inode's row and content are purged when both its
  link count and its lookup count are 0.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import sqlite3
import stat
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, Protocol, TypeVar

import pyfuse3
import trio
from pyfuse3 import EntryAttributes, FileInfo, FUSEError, RequestContext, SetattrFields

from cache.diskfull import is_disk_full
from chain import errors as chain_errors
from walrusfs.fs import blobs
from walrusfs.fs.content import Content, ReadFailed
from walrusfs.fs.schema import ROOT_INODE, path_of, transaction
from walrusfs.store.errors import StoreError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

NAME_MAX = 255
#: The kernel's own limit for FUSE files (MAX_LFS_FILESIZE, its s_maxbytes): with the writeback
#: cache a write is accepted into the page cache before this process sees it, so only a limit
#: the kernel also enforces can fail the write() itself (EFBIG at or past it, a write crossing
#: it shortened); a lower one of ours failed later, at writeback, and lost the bytes. Sizes stay
#: sparse (a file of 10**15 bytes made by truncate is one row) and fit SQLite's INTEGER.
MAX_FILE_SIZE = (1 << 63) - 1
#: Timestamps are stored as int64 nanoseconds (1677-09-21 to 2262-04-11); the kernel may send
#: any int64 seconds (FUSE has no s_time_min/max), so times outside are clamped to these.
TIME_MIN_NS = -(1 << 63)
TIME_MAX_NS = (1 << 63) - 1
TIMEOUT = 300.0  # attribute and entry cache: this process is the only writer of the volume
BLOCK_SIZE = 4096
IO_SIZE = 128 * 1024  # st_blksize: invites large writes
#: directory entries read per statement in readdir (a reply to the kernel holds a few dozen)
READDIR_PAGE = 128
PURGE_DELAY = 0.02  # seconds an unlinked, forgotten inode waits to be deleted with others
#: Linux's clock id (include/uapi/linux/time.h); Python's time module names it from 3.13 on
CLOCK_REALTIME_COARSE = 5


@dataclass(frozen=True, slots=True)
class InodeRow:
    """The `inodes` columns `_attrs` turns into attributes (schema.py documents them)."""

    id: int
    mode: int
    uid: int
    gid: int
    size: int
    nlink: int
    rdev: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    btime_ns: int


#: InodeRow's columns, in its order, `i.`-qualified for joins.
ATTR_COLUMNS = ", ".join(f"i.{f.name}" for f in dataclasses.fields(InodeRow))

#: readdir's page of entries after an id (dentries_parent), each with the inode's columns
#: and, for a regular file, the bytes of its uploaded chunks (`_allocated`, for st_blocks), or
#: NULL when it has a staged chunk (its bytes are counted on disk: `_allocated` reads them).
READDIR_SQL = f"""
    SELECT d.id, d.name, {ATTR_COLUMNS},
        CASE WHEN i.mode & {0o170000} = {stat.S_IFREG} THEN (
            SELECT CASE WHEN max(c.staged) = 1 THEN NULL ELSE coalesce(sum(c.length), 0) END
            FROM chunks c WHERE c.inode = i.id
        ) END
    FROM dentries d JOIN inodes i ON i.id = d.inode
    WHERE d.parent = ? AND d.id > ? ORDER BY d.id LIMIT ?
"""

#: Read-only attributes computed from the database (see `_walrus_xattr`).
WALRUS_XATTR_PREFIX = b"user.walrus."
WALRUS_XATTRS = ("state", "blob_id", "object_id", "end_epoch")
#: Control channel of the CLI (`walrusfs sync`, `status`, `umount`): xattrs on the root.
CTL_PREFIX = b"user.walrusfs.ctl."
#: Attributes of features the volume does not have, refused with EOPNOTSUPP by get, set and
#: remove alike: POSIX ACLs (permissions are the mode bits; no `default_permissions` ACL
#: evaluation) and SELinux labels (a FUSE mount is labelled as a whole, `context=`). The
#: answer is also what lets `ls -l` stop asking: coreutils remembers a device whose ACL or
#: label query failed as unsupported (ENOTSUP) and skips both calls for its other files, while
#: ENODATA is asked again for every file (two FUSE requests each; `bench/scale.py`).
UNSUPPORTED_XATTRS = (b"system.posix_acl_access", b"system.posix_acl_default", b"security.selinux")


class StampClock:
    """The time the mount stamps inodes with, kept in step with the times the kernel stamps.

    With the writeback cache the kernel sets a regular file's mtime and ctime, and a hard
    link's ctime, from its own clock, and sends them with SETATTR; the daemon stamps every
    other change. The kernel's clock is the coarse realtime clock raised to the newest
    fine-grained time it handed out (multigrain timestamps, Linux 6.13+), so it can run ahead
    of the coarse clock a process reads and behind the precise one. Stamped from the coarse
    clock alone, a symlink made after a file looked older than it (xfstests generic/423, a
    clean-clone CI failure); from the precise clock, a link's ctime looked older than the
    socket made before it. So: the coarse clock, raised to the newest kernel stamp seen that
    is not in the future (a time a user set with utimensat can be anything)."""

    def __init__(self) -> None:
        self._kernel_ns = 0

    def now(self) -> int:
        coarse = time.clock_gettime_ns(CLOCK_REALTIME_COARSE)
        return coarse if coarse >= self._kernel_ns else self._kernel_ns

    def saw(self, ns: int) -> None:
        """Note a time the kernel sent (SETATTR's mtime or ctime)."""
        if self._kernel_ns < ns <= time.time_ns():
            self._kernel_ns = ns


#: One per process: the kernel's clock is one for the whole machine.
STAMP_CLOCK = StampClock()


def now_ns() -> int:
    """The time to stamp an inode with now (see StampClock)."""
    return STAMP_CLOCK.now()


def clamp_ns(ns: int) -> int:
    """A timestamp the kernel sent, within what the database stores (TIME_MIN_NS..MAX)."""
    return min(max(ns, TIME_MIN_NS), TIME_MAX_NS)


def _errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except FUSEError:
            raise
        except OSError as exc:
            if exc.errno is None:
                log.exception("%s failed", fn.__name__)
                raise FUSEError(errno.EIO) from None
            if exc.errno == errno.EIO:
                log.error("%s failed: %s", fn.__name__, exc)
            raise FUSEError(exc.errno) from None
        except (StoreError, chain_errors.ChainError) as exc:
            log.error("%s failed: %s", fn.__name__, exc)
            raise FUSEError(errno.EIO) from None
        except sqlite3.OperationalError as exc:
            if is_disk_full(exc):  # meta.db's disk is full: the writer sees ENOSPC, not EIO
                log.error("%s failed: the volume's disk is full (%s)", fn.__name__, exc)
                raise FUSEError(errno.ENOSPC) from None
            log.exception("%s failed (internal error)", fn.__name__)
            raise FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s failed (internal error)", fn.__name__)
            raise FUSEError(errno.EIO) from None

    return wrapper


@dataclass
class Handle:
    inode: int
    writable: bool
    #: opened with O_DIRECT: its writes bypass the page cache, so other descriptors' cached
    #: pages of the file may be stale after them (`_stale`)
    direct: bool = False


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    enable_writeback_cache = True
    enable_acl = False

    def __init__(self, db: sqlite3.Connection, content: Content, control: Control) -> None:
        super().__init__()
        self.db = db
        self.content = content
        self.control = control
        #: every change is refused with EROFS (the kernel refuses them first on a mount with
        #: the "ro" option; this holds whatever the mount options say)
        self.read_only = control.options.read_only
        #: who may use the control attributes besides root: the user who mounted the volume
        self.owner = os.getuid()
        self.lookups: defaultdict[int, int] = defaultdict(int)
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        self._doomed: set[int] = set()  # inodes queued for purge_doomed
        self._purge_due = trio.Event()
        #: inodes written through an O_DIRECT handle whose cached pages the kernel may still
        #: hold from before the write -> a sequence number of the last such write
        self._stale: dict[int, int] = {}
        self._stale_seq = 0
        self._invalidate_due = trio.Event()

    # -- helpers ----------------------------------------------------------------------------

    def _row(self, inode: int) -> InodeRow:
        row = self.db.execute(
            f"SELECT {ATTR_COLUMNS} FROM inodes i WHERE i.id = ?", (inode,)
        ).fetchone()
        if row is None:
            raise FUSEError(errno.ENOENT)
        return InodeRow(*row)

    def _attrs(self, row: InodeRow) -> EntryAttributes:
        """The kernel's attributes of an inode."""
        return self._attrs_of(
            (
                row.id,
                row.mode,
                row.uid,
                row.gid,
                row.size,
                row.nlink,
                row.rdev,
                row.atime_ns,
                row.mtime_ns,
                row.ctime_ns,
                row.btime_ns,
            )
        )

    def _attrs_of(self, columns: Sequence[int], allocated: int | None = None) -> EntryAttributes:
        """`_attrs` of an inode's columns in InodeRow's order (ATTR_COLUMNS), as readdir reads
        them (making a frozen InodeRow per entry cost more than its attributes). `allocated`:
        its `_allocated` bytes when the caller read them with the row, else they are read
        here."""
        a = EntryAttributes()
        (
            a.st_ino,
            a.st_mode,
            a.st_uid,
            a.st_gid,
            a.st_size,
            a.st_nlink,
            a.st_rdev,
            a.st_atime_ns,
            a.st_mtime_ns,
            a.st_ctime_ns,
            a.st_birthtime_ns,
        ) = columns
        a.generation = 0
        a.entry_timeout = TIMEOUT
        a.attr_timeout = TIMEOUT
        a.st_blksize = IO_SIZE
        regular = stat.S_ISREG(a.st_mode) and a.st_size > 0  # an empty file has no chunks
        if not regular:
            a.st_blocks = 0
        else:
            if allocated is None:
                allocated = self._allocated(a.st_ino)
            a.st_blocks = -(-allocated // 512)
        return a

    def _allocated(self, inode: int) -> int:
        """Bytes that hold the file's data, for st_blocks (what `du` adds up): each uploaded
        chunk's length (what its blob or quilt patch stores) and each staged chunk's bytes on
        the local disk (holes take none). The apparent size made `du` of a sparse file
        report every hole as used."""
        staging = self.content.staging
        total = 0
        for chunkno, staged, length in self.db.execute(
            "SELECT chunkno, staged, length FROM chunks WHERE inode = ?", (inode,)
        ):
            total += staging.allocated((inode, chunkno)) if staged else length
        return total

    def attrs(self, inode: int) -> EntryAttributes:
        return self._attrs(self._row(inode))

    def _child(self, parent: int, name: bytes) -> int | None:
        row = self.db.execute(
            "SELECT inode FROM dentries WHERE parent = ? AND name = ?", (parent, name)
        ).fetchone()
        return None if row is None else int(row[0])

    def _mode(self, inode: int) -> int:
        row = self.db.execute("SELECT mode FROM inodes WHERE id = ?", (inode,)).fetchone()
        if row is None:
            raise FUSEError(errno.ENOENT)
        return int(row[0])

    def _dir(self, inode: int) -> None:
        if not stat.S_ISDIR(self._mode(inode)):
            raise FUSEError(errno.ENOTDIR)

    @staticmethod
    def _check_name(name: bytes) -> None:
        if len(name) > NAME_MAX:
            raise FUSEError(errno.ENAMETOOLONG)

    def _refuse_if_read_only(self) -> None:
        if self.read_only:
            raise FUSEError(errno.EROFS)

    def _touch_dir(self, inode: int, now: int) -> None:
        self.db.execute(
            "UPDATE inodes SET mtime_ns = ?, ctime_ns = ? WHERE id = ?", (now, now, inode)
        )

    def _maybe_purge(self, inode: int) -> None:
        """Queue an inode the kernel no longer knows for deletion if nothing names it either
        (`purge_doomed`, within PURGE_DELAY). One at a time, the deletion of an unlinked file
        (its rows, chunks, staged bytes, blob references: two commits) was the costliest part
        of `rm` in the mount; batched, they share the commits."""
        if self.lookups.get(inode, 0) > 0:
            return
        self._doomed.add(inode)
        self._purge_due.set()

    def purge_doomed(self) -> None:
        """Delete the queued inodes that still have no link and no lookup, in one transaction.
        Nothing can name them again meanwhile (no link, unknown to the kernel); the uploader
        ignores inodes without links; a crash leaves them for the next mount's repair."""
        doomed = [i for i in self._doomed if self.lookups.get(i, 0) <= 0]
        self._doomed.clear()
        if not doomed:
            return
        with transaction(self.db):
            self.content.purge(doomed)

    async def purger(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The handlers' background work, for the mount's life: `purge_doomed` PURGE_DELAY
        after an inode is queued, and the page-cache invalidations O_DIRECT writes ask for
        (`_invalidate_stale`)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._purge_loop)
            nursery.start_soon(self._invalidate_loop)
            task_status.started()

    async def _purge_loop(self) -> None:
        while True:
            await self._purge_due.wait()
            self._purge_due = trio.Event()
            await trio.sleep(PURGE_DELAY)
            try:
                self.purge_doomed()
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc):
                    raise
                # the inodes stay (nlink 0) for the next mount's repair
                log.error("deleting unlinked inodes failed: the volume's disk is full (%s)", exc)

    def _mark_stale(self, inode: int) -> None:
        """A write through an O_DIRECT handle reached the file: pages other descriptors
        cached before it are stale. The kernel drops the pages around a synchronous O_DIRECT
        write but not after an asynchronous one (AIO), and buffered readers may cache the
        old bytes while it is in flight (xfstests generic/451). The next open drops them
        (no keep_cache) and `_invalidate_loop` drops them for descriptors already open."""
        self._stale_seq += 1
        self._stale[inode] = self._stale_seq
        self._invalidate_due.set()

    async def _invalidate_loop(self) -> None:
        while True:
            await self._invalidate_due.wait()
            self._invalidate_due = trio.Event()
            for inode, seq in list(self._stale.items()):
                await self._invalidate_stale(inode, seq)

    async def _invalidate_stale(self, inode: int, seq: int) -> None:
        """Drop the kernel's cached pages (and attributes) of `inode`. Never from a handler:
        with the writeback cache the kernel first writes dirty pages back, which needs this
        loop to answer their WRITE requests, so it runs in a worker thread (pyfuse3's
        invalidate_inode blocks) while the loop keeps serving."""
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, inode)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the kernel holds nothing of it
                log.warning("cannot drop the cached pages of inode %d: %s", inode, exc)
        if self._stale.get(inode) == seq:  # no O_DIRECT write since: the cache is current
            del self._stale[inode]

    def _new_inode(
        self,
        parent: int,
        name: bytes,
        mode: int,
        ctx: RequestContext,
        *,
        rdev: int = 0,
        target: bytes | None = None,
    ) -> int:
        """Create an inode and its dentry (one transaction); the caller adds the lookup."""
        self._refuse_if_read_only()
        self._check_name(name)
        prow = self._row(parent)
        if not stat.S_ISDIR(prow.mode):
            raise FUSEError(errno.ENOTDIR)
        if prow.nlink == 0:  # the directory was removed while open
            raise FUSEError(errno.ENOENT)
        if self._child(parent, name) is not None:
            raise FUSEError(errno.EEXIST)
        gid = ctx.gid
        if prow.mode & stat.S_ISGID:  # BSD group semantics of setgid directories
            gid = prow.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        now = now_ns()
        nlink = 2 if stat.S_ISDIR(mode) else 1
        with transaction(self.db):
            cur = self.db.execute(
                "INSERT INTO inodes (mode, uid, gid, size, nlink, rdev, atime_ns, mtime_ns, "
                "ctime_ns, btime_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (mode, ctx.uid, gid, len(target or b""), nlink, rdev, now, now, now, now),
            )
            inode = int(cur.lastrowid or 0)
            if target is not None:
                self.db.execute("INSERT INTO symlinks VALUES (?, ?)", (inode, target))
            self.db.execute(
                "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)", (parent, name, inode)
            )
            if stat.S_ISDIR(mode):
                self.db.execute("UPDATE inodes SET nlink = nlink + 1 WHERE id = ?", (parent,))
            self._touch_dir(parent, now)
        return inode

    def _lookup_inc(self, inode: int) -> EntryAttributes:
        attrs = self.attrs(inode)
        self.lookups[inode] += 1
        return attrs

    # -- lookups ----------------------------------------------------------------------------

    @_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: RequestContext) -> EntryAttributes:
        self._check_name(name)
        if name == b".":
            return self._lookup_inc(parent_inode)
        if name == b"..":
            return self._lookup_inc(self._parent_of(parent_inode))
        row = self.db.execute(
            f"SELECT {ATTR_COLUMNS} FROM dentries d JOIN inodes i ON i.id = d.inode "
            "WHERE d.parent = ? AND d.name = ?",
            (parent_inode, name),
        ).fetchone()
        if row is None:
            self._dir(parent_inode)
            # A negative entry the kernel may cache: this process is the volume's only writer
            # and every name it adds passes through the kernel, which drops the negative entry
            # (rsync, tar and compilers look up many names that do not exist, some repeatedly).
            miss = EntryAttributes()
            miss.st_ino = 0
            miss.entry_timeout = TIMEOUT
            return miss
        found = InodeRow(*row)
        self.lookups[found.id] += 1
        return self._attrs(found)

    def _parent_of(self, inode: int) -> int:
        if inode == ROOT_INODE:
            return ROOT_INODE
        row = self.db.execute("SELECT parent FROM dentries WHERE inode = ?", (inode,)).fetchone()
        if row is None:
            raise FUSEError(errno.ENOENT)
        return int(row[0])

    def forget(self, inode_list: list[tuple[int, int]]) -> None:  # type: ignore[override]
        for inode, nlookup in inode_list:
            try:
                left = self.lookups[inode] - nlookup
                if left > 0:
                    self.lookups[inode] = left
                    continue
                self.lookups.pop(inode, None)
                self._maybe_purge(inode)
            except Exception:  # forget must never raise; the inode stays until fsck
                log.exception("forget(%d) failed", inode)

    def forget_all(self) -> None:
        """At unmount the kernel does not forget everything: do it, so unlinked inodes go."""
        self.forget([(inode, count) for inode, count in list(self.lookups.items())])
        self.purge_doomed()

    @_errors
    async def getattr(self, inode: int, ctx: RequestContext) -> EntryAttributes:
        return self.attrs(inode)

    @_errors
    async def setattr(
        self,
        inode: int,
        attr: EntryAttributes,
        fields: SetattrFields,
        fh: int | None,
        ctx: RequestContext,
    ) -> EntryAttributes:
        self._refuse_if_read_only()
        row = self._row(inode)
        now = now_ns()
        sets: dict[str, int] = {}
        if fields.update_size:
            if not stat.S_ISREG(row.mode):
                raise FUSEError(errno.EISDIR if stat.S_ISDIR(row.mode) else errno.EINVAL)
            if attr.st_size > MAX_FILE_SIZE:
                raise FUSEError(errno.EFBIG)
            with transaction(self.db):
                self.content.truncate(inode, row.size, attr.st_size)
                self.db.execute("UPDATE inodes SET size = ? WHERE id = ?", (attr.st_size, inode))
            if not fields.update_mtime:
                sets["mtime_ns"] = now
        if fields.update_mode:
            sets["mode"] = (row.mode & ~0o7777) | (attr.st_mode & 0o7777)
        if fields.update_uid:
            sets["uid"] = attr.st_uid
        if fields.update_gid:
            sets["gid"] = attr.st_gid
        # times past what an int64 of nanoseconds holds (touch -d 'Dec 31 2147483647') are
        # clamped, and answered as stored, so the kernel caches what a remount shows
        if fields.update_atime:
            sets["atime_ns"] = clamp_ns(attr.st_atime_ns)
        if fields.update_mtime:
            sets["mtime_ns"] = clamp_ns(attr.st_mtime_ns)
            STAMP_CLOCK.saw(attr.st_mtime_ns)
        if fields.update_ctime:
            STAMP_CLOCK.saw(attr.st_ctime_ns)
        sets["ctime_ns"] = clamp_ns(attr.st_ctime_ns) if fields.update_ctime else now
        cols = ", ".join(f"{k} = ?" for k in sets)
        self.db.execute(f"UPDATE inodes SET {cols} WHERE id = ?", (*sets.values(), inode))
        if fields.update_size:
            row = replace(row, size=attr.st_size)
        return self._attrs(replace(row, **sets))  # the row as updated, without reading it again

    @_errors
    async def readlink(self, inode: int, ctx: RequestContext) -> bytes:
        row = self.db.execute("SELECT target FROM symlinks WHERE inode = ?", (inode,)).fetchone()
        if row is None:
            raise FUSEError(errno.EINVAL)
        return bytes(row[0])

    # -- creating ---------------------------------------------------------------------------

    @_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: RequestContext
    ) -> EntryAttributes:
        if stat.S_IFMT(mode) == 0:
            mode |= stat.S_IFREG
        if not (
            stat.S_ISREG(mode)
            or stat.S_ISFIFO(mode)
            or stat.S_ISSOCK(mode)
            or stat.S_ISCHR(mode)
            or stat.S_ISBLK(mode)
        ):
            raise FUSEError(errno.EINVAL)
        keep_rdev = stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        inode = self._new_inode(parent_inode, name, mode, ctx, rdev=rdev if keep_rdev else 0)
        return self._lookup_inc(inode)

    @_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: RequestContext
    ) -> EntryAttributes:
        inode = self._new_inode(parent_inode, name, (mode & 0o7777) | stat.S_IFDIR, ctx)
        return self._lookup_inc(inode)

    @_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        mode = stat.S_IFLNK | 0o777
        inode = self._new_inode(parent_inode, name, mode, ctx, target=target)
        return self._lookup_inc(inode)

    @_errors
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: RequestContext
    ) -> tuple[FileInfo, EntryAttributes]:
        inode = self._new_inode(parent_inode, name, (mode & 0o7777) | stat.S_IFREG, ctx)
        attrs = self._lookup_inc(inode)
        return self._open_handle(inode, flags), attrs

    @_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: RequestContext
    ) -> EntryAttributes:
        self._refuse_if_read_only()
        self._check_name(new_name)
        row = self._row(inode)
        if stat.S_ISDIR(row.mode):
            raise FUSEError(errno.EPERM)
        prow = self._row(new_parent_inode)
        if not stat.S_ISDIR(prow.mode):
            raise FUSEError(errno.ENOTDIR)
        if prow.nlink == 0:
            raise FUSEError(errno.ENOENT)
        if self._child(new_parent_inode, new_name) is not None:
            raise FUSEError(errno.EEXIST)
        if row.nlink == 0:  # linkat() of an O_TMPFILE-less unlinked file
            raise FUSEError(errno.ENOENT)
        now = now_ns()
        with transaction(self.db):
            self.db.execute(
                "INSERT INTO dentries (parent, name, inode) VALUES (?, ?, ?)",
                (new_parent_inode, new_name, inode),
            )
            self.db.execute(
                "UPDATE inodes SET nlink = nlink + 1, ctime_ns = ? WHERE id = ?", (now, inode)
            )
            self._touch_dir(new_parent_inode, now)
        return self._lookup_inc(inode)

    # -- removing ---------------------------------------------------------------------------

    @_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        self._refuse_if_read_only()
        self._check_name(name)
        row = self.db.execute(
            "SELECT i.id, i.mode FROM dentries d JOIN inodes i ON i.id = d.inode "
            "WHERE d.parent = ? AND d.name = ?",
            (parent_inode, name),
        ).fetchone()
        if row is None:
            raise FUSEError(errno.ENOENT)
        inode, mode = int(row[0]), int(row[1])
        if stat.S_ISDIR(mode):
            raise FUSEError(errno.EISDIR)
        now = now_ns()
        with transaction(self.db):
            self.db.execute(
                "DELETE FROM dentries WHERE parent = ? AND name = ?", (parent_inode, name)
            )
            self.db.execute(
                "UPDATE inodes SET nlink = nlink - 1, ctime_ns = ? WHERE id = ?", (now, inode)
            )
            self._touch_dir(parent_inode, now)
        self._maybe_purge(inode)

    @_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: RequestContext) -> None:
        self._refuse_if_read_only()
        self._check_name(name)
        inode = self._child(parent_inode, name)
        if inode is None:
            raise FUSEError(errno.ENOENT)
        with transaction(self.db):
            self._remove_dir(parent_inode, name, inode, now_ns())
        self._maybe_purge(inode)

    def _remove_dir(self, parent: int, name: bytes, inode: int, now: int) -> None:
        """Inside the caller's transaction."""
        if not stat.S_ISDIR(self._mode(inode)):
            raise FUSEError(errno.ENOTDIR)
        if self.db.execute("SELECT 1 FROM dentries WHERE parent = ? LIMIT 1", (inode,)).fetchone():
            raise FUSEError(errno.ENOTEMPTY)
        self.db.execute("DELETE FROM dentries WHERE parent = ? AND name = ?", (parent, name))
        self.db.execute("UPDATE inodes SET nlink = 0, ctime_ns = ? WHERE id = ?", (now, inode))
        self.db.execute(
            "UPDATE inodes SET nlink = nlink - 1, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
            (now, now, parent),
        )

    @_errors
    async def rename(  # noqa: PLR0917 (pyfuse3's signature)
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: RequestContext,
    ) -> None:
        self._refuse_if_read_only()
        # Only these two; the kernel passes RENAME_WHITEOUT (overlayfs asks for a whiteout
        # left at the old name, which needs a whiteout inode this filesystem does not make)
        # and it must fail rather than act as a plain rename.
        supported = pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE
        if flags & ~supported or flags == supported:
            raise FUSEError(errno.EINVAL)
        self._check_name(name_new)
        inode = self._child(parent_inode_old, name_old)
        if inode is None:
            raise FUSEError(errno.ENOENT)
        self._dir(parent_inode_new)
        target = self._child(parent_inode_new, name_new)
        now = now_ns()
        if flags & pyfuse3.RENAME_EXCHANGE:
            if target is None:
                raise FUSEError(errno.ENOENT)
            self._exchange(parent_inode_old, name_old, inode, parent_inode_new, name_new, target)
            return
        if target is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise FUSEError(errno.EEXIST)
        if target == inode:  # both names are links of one file: nothing to do
            return
        is_dir = stat.S_ISDIR(self._mode(inode))
        if is_dir and parent_inode_old != parent_inode_new:
            # moving a directory into itself or below it
            p = parent_inode_new
            while p != ROOT_INODE:
                if p == inode:
                    raise FUSEError(errno.EINVAL)
                p = self._parent_of(p)
        with transaction(self.db):
            if target is not None:
                tdir = stat.S_ISDIR(self._mode(target))
                if is_dir and not tdir:
                    raise FUSEError(errno.ENOTDIR)
                if tdir and not is_dir:
                    raise FUSEError(errno.EISDIR)
                if tdir:
                    self._remove_dir(parent_inode_new, name_new, target, now)
                else:
                    self.db.execute(
                        "DELETE FROM dentries WHERE parent = ? AND name = ?",
                        (parent_inode_new, name_new),
                    )
                    self.db.execute(
                        "UPDATE inodes SET nlink = nlink - 1, ctime_ns = ? WHERE id = ?",
                        (now, target),
                    )
            self.db.execute(
                "UPDATE dentries SET parent = ?, name = ? WHERE parent = ? AND name = ?",
                (parent_inode_new, name_new, parent_inode_old, name_old),
            )
            if is_dir and parent_inode_old != parent_inode_new:
                self.db.execute(
                    "UPDATE inodes SET nlink = nlink - 1 WHERE id = ?", (parent_inode_old,)
                )
                self.db.execute(
                    "UPDATE inodes SET nlink = nlink + 1 WHERE id = ?", (parent_inode_new,)
                )
            self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE id = ?", (now, inode))
            self._touch_dir(parent_inode_old, now)
            self._touch_dir(parent_inode_new, now)
        if target is not None:
            self._maybe_purge(target)

    def _exchange(self, p1: int, n1: bytes, i1: int, p2: int, n2: bytes, i2: int) -> None:  # noqa: PLR0917
        now = now_ns()
        d1, d2 = stat.S_ISDIR(self._mode(i1)), stat.S_ISDIR(self._mode(i2))
        with transaction(self.db):
            swap = "UPDATE dentries SET inode = ? WHERE parent = ? AND name = ?"
            self.db.execute(swap, (i2, p1, n1))
            self.db.execute(swap, (i1, p2, n2))
            if p1 != p2 and d1 != d2:
                delta = 1 if d1 else -1  # a directory moves from p1 to p2, or from p2 to p1
                self.db.execute("UPDATE inodes SET nlink = nlink + ? WHERE id = ?", (delta, p2))
                self.db.execute("UPDATE inodes SET nlink = nlink - ? WHERE id = ?", (delta, p1))
            for i in (i1, i2):
                self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE id = ?", (now, i))
            self._touch_dir(p1, now)
            self._touch_dir(p2, now)

    # -- files ------------------------------------------------------------------------------

    def _open_handle(self, inode: int, flags: int) -> FileInfo:
        """A handle; the kernel keeps the file's cached pages unless the open is O_DIRECT or
        an O_DIRECT write changed the file since they were cached (`_mark_stale`): then the
        opener drops them, after this answer and before open() returns to it. That does not
        make the file current for the next opener (the first may not have run yet), so only
        `_invalidate_stale` clears the mark."""
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        direct = bool(flags & os.O_DIRECT)
        fh = self._next_fh
        self._next_fh += 1
        self.handles[fh] = Handle(inode, writable, direct)
        if writable:
            self.content.writers[inode] += 1
        return FileInfo(fh=fh, keep_cache=not direct and inode not in self._stale)

    @_errors
    async def open(self, inode: int, flags: int, ctx: RequestContext) -> FileInfo:
        mode = self._mode(inode)
        if stat.S_ISDIR(mode):
            raise FUSEError(errno.EISDIR)
        if (flags & os.O_ACCMODE) != os.O_RDONLY or flags & os.O_TRUNC:
            self._refuse_if_read_only()
        info = self._open_handle(inode, flags)
        if flags & os.O_TRUNC and stat.S_ISREG(mode):
            row = self._row(inode)
            with transaction(self.db):
                self.content.truncate(inode, row.size, 0)
                now = now_ns()
                self.db.execute(
                    "UPDATE inodes SET size = 0, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
                    (now, now, inode),
                )
        return info

    @_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        inode = self.handles[fh].inode
        file_size = self.content.rows.get(("size", inode), lambda: self._size(inode))
        if file_size is None:
            raise FUSEError(errno.ENOENT)
        length = max(0, min(size, file_size - off))
        if length == 0:
            return b""
        try:
            return await self.content.read(inode, off, length)
        except ReadFailed as exc:
            log.error("cannot read %s: %s", path_of(self.db, inode) or f"inode {inode}", exc)
            raise FUSEError(errno.EIO) from None

    def _size(self, inode: int) -> int | None:
        row = self.db.execute("SELECT size FROM inodes WHERE id = ?", (inode,)).fetchone()
        return None if row is None else int(row[0])

    @_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        self._refuse_if_read_only()
        handle = self.handles[fh]
        inode = handle.inode
        # what the kernel does before it gets here (MAX_FILE_SIZE is its limit too)
        if off >= MAX_FILE_SIZE:
            raise FUSEError(errno.EFBIG)
        if off + len(buf) > MAX_FILE_SIZE:
            buf = buf[: MAX_FILE_SIZE - off]
        await self.control.wait_for_room(len(buf))
        await self.content.write(inode, off, buf)
        # Size only: with the writeback cache the kernel owns a file's mtime and ctime (it
        # stamps them at write(2) and sends them by SETATTR when it writes the inode back,
        # `fuse_flush_times` in fs/fuse/file.c). Stamping our own clock here, at the later
        # WRITE, made the times `stat` showed change after a remount (xfstests generic/003).
        self.db.execute(
            "UPDATE inodes SET size = max(size, ?) WHERE id = ?", (off + len(buf), inode)
        )
        if handle.direct:
            self._mark_stale(inode)
        return len(buf)

    @_errors
    async def flush(self, fh: int) -> None:
        """Not implemented, on purpose: close() does not upload (the durability contract,
        docs/durability.md) and there are no POSIX locks of ours to release, so FLUSH would be
        a round trip per close for nothing. The kernel, told ENOSYS once, stops sending it;
        with the writeback cache it still writes a file's dirty pages back at close."""
        raise FUSEError(errno.ENOSYS)

    @_errors
    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle.writable:
            self.content.writers[handle.inode] -= 1
            if self.content.writers[handle.inode] <= 0:
                del self.content.writers[handle.inode]
                self.control.wake_uploader()

    @_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        inode = self.handles[fh].inode
        await self.content.fsync(inode)
        await self.control.sync_db()

    # -- directories ------------------------------------------------------------------------

    @_errors
    async def opendir(self, inode: int, ctx: RequestContext) -> int:
        self._dir(inode)
        return inode

    @_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        inode = fh
        if start_id == 0:
            if not pyfuse3.readdir_reply(token, b".", self.attrs(inode), 1):
                return
            start_id = 1
        if start_id == 1:
            if not pyfuse3.readdir_reply(token, b"..", self.attrs(self._parent_of(inode)), 2):
                return
            start_id = 2
        after = start_id - 3  # the id of the last entry the kernel took
        while True:
            # a page at a time (dentries_parent): a reply holds a few dozen entries, and
            # reading every entry after the cursor for each reply made listing a directory
            # of n entries cost n * n / 2 rows
            rows = self.db.execute(READDIR_SQL, (inode, after, READDIR_PAGE)).fetchall()
            for row in rows:
                # st_blocks of a file with no staged chunk from the same statement: a
                # statement per entry (`_allocated`) cost more than the rest of its entry
                attrs = self._attrs_of(row[2:-1], row[-1])
                if not pyfuse3.readdir_reply(token, row[1], attrs, row[0] + 3):
                    return
                self.lookups[attrs.st_ino] += 1
            if len(rows) < READDIR_PAGE:
                return
            after = rows[-1][0]

    @_errors
    async def releasedir(self, fh: int) -> None:
        return None

    @_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.control.sync_db()

    @_errors
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        return self.control.statfs()

    # -- xattrs -----------------------------------------------------------------------------

    @_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: RequestContext) -> None:
        self._row(inode)
        if name.startswith(CTL_PREFIX):
            if inode != ROOT_INODE:
                raise FUSEError(errno.EPERM)
            self._check_controller(ctx)
            await self.control.command(name[len(CTL_PREFIX) :].decode(), value)
            return
        self._refuse_if_read_only()
        if name.startswith(WALRUS_XATTR_PREFIX):
            raise FUSEError(errno.EPERM)
        if name in UNSUPPORTED_XATTRS:
            raise FUSEError(errno.EOPNOTSUPP)
        if len(name) > 255:
            raise FUSEError(errno.ERANGE)
        if len(value) > 65536:
            raise FUSEError(errno.E2BIG)
        now = now_ns()
        self.db.execute("INSERT OR REPLACE INTO xattrs VALUES (?, ?, ?)", (inode, name, value))
        self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE id = ?", (now, inode))

    @_errors
    async def getxattr(self, inode: int, name: bytes, ctx: RequestContext) -> bytes:
        self._row(inode)
        if name.startswith(CTL_PREFIX) and inode == ROOT_INODE:
            self._check_controller(ctx)
            return json.dumps(self.control.query(name[len(CTL_PREFIX) :].decode())).encode()
        if name.startswith(WALRUS_XATTR_PREFIX):
            value = self._walrus_xattr(inode, name[len(WALRUS_XATTR_PREFIX) :].decode())
            if value is None:
                raise FUSEError(pyfuse3.ENOATTR)
            return value.encode()
        if name in UNSUPPORTED_XATTRS:
            raise FUSEError(errno.EOPNOTSUPP)
        row = self.db.execute(
            "SELECT value FROM xattrs WHERE inode = ? AND name = ?", (inode, name)
        ).fetchone()
        if row is None:
            raise FUSEError(pyfuse3.ENOATTR)
        return bytes(row[0])

    def _check_controller(self, ctx: RequestContext) -> None:
        """The control attributes (sync, status with balances, paths and object IDs, the
        daemon's pid) answer the user who mounted the volume and root only: with
        allow_other everyone else reaches the root directory too."""
        if ctx.uid not in (0, self.owner):
            raise FUSEError(errno.EACCES)

    def _walrus_xattr(self, inode: int, key: str) -> str | None:
        """user.walrus.{blob_id,object_id,end_epoch,state}: where a file's bytes are.

        A file of several chunks lists one value per chunk, space separated, in file order.
        """
        if not stat.S_ISREG(self._mode(inode)):
            return None
        rows = blobs.placements(self.db, inode)
        if key == "state":
            if any(r.staged for r in rows):
                return "uploading" if self.control.uploading(inode) else "staged"
            return "certified"
        stored = [r for r in rows if not r.staged]
        if not stored or len(stored) < len(rows):
            return None
        if key == "blob_id":
            return " ".join(str(r.patch or r.blob_id) for r in stored)
        if key == "object_id":
            return " ".join(str(r.object_id) for r in stored)
        if key == "end_epoch":
            return str(min(r.end_epoch or 0 for r in stored))
        return None

    @_errors
    async def listxattr(self, inode: int, ctx: RequestContext) -> list[bytes]:
        """The stored names only. The computed `user.walrus.*` names are read by name
        (`walrusfs info FILE`, `getfattr -n`) and not listed: tools that copy attributes
        (`cp -a`, `rsync -X`, `tar --xattrs`, `setfattr --restore`) would carry them to files
        where setting them fails with EPERM, and listings would not be what was set
        (xfstests generic/020, 062, 097, 337, 377, 523, 533, 618)."""
        self._row(inode)
        return [
            bytes(r[0])
            for r in self.db.execute("SELECT name FROM xattrs WHERE inode = ?", (inode,))
        ]

    @_errors
    async def removexattr(self, inode: int, name: bytes, ctx: RequestContext) -> None:
        self._refuse_if_read_only()
        self._row(inode)
        if name.startswith(WALRUS_XATTR_PREFIX) or name.startswith(CTL_PREFIX):
            raise FUSEError(errno.EPERM)
        if name in UNSUPPORTED_XATTRS:
            raise FUSEError(errno.EOPNOTSUPP)
        cur = self.db.execute("DELETE FROM xattrs WHERE inode = ? AND name = ?", (inode, name))
        if cur.rowcount == 0:
            raise FUSEError(pyfuse3.ENOATTR)
        self.db.execute("UPDATE inodes SET ctime_ns = ? WHERE id = ?", (now_ns(), inode))


class Options(Protocol):
    """The mount options the handlers read (`walrusfs.fs.mount.MountOptions`)."""

    @property
    def read_only(self) -> bool: ...


class Control(Protocol):
    """What the handlers need from the rest of the mount (uploader, statfs figures, the CLI's
    commands); `walrusfs.fs.mount.Volume` provides it."""

    @property
    def options(self) -> Options: ...

    def wake_uploader(self) -> None: ...

    def uploading(self, inode: int) -> bool: ...

    async def wait_for_room(self, nbytes: int) -> None: ...

    async def sync_db(self) -> None: ...

    def statfs(self) -> pyfuse3.StatvfsData: ...

    async def command(self, name: str, value: bytes) -> None: ...

    def query(self, name: str) -> Any: ...
