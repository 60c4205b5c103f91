"""Fakes for the in-process tier: the filesystem's handlers, content and uploader driven from
trio tests (as S3QL's t3_fs_api drives its Operations), with no FUSE mount and no network.

- `open_volume`: a volume as `walrusfs mount` wires it (assemble.py) over a `FakeStore` and a
  `FakeWorker` (tests/fake_walrus.py, with `Fault` and `FakeChain`: all four importable from
  here too), with the handlers (ops.Operations) on top; on a clean exit it runs fsck's
  database check and fails the test unless the volume is clean.
- `Volume`: what a test holds of that volume: files created, written, read and synced through
  the handlers as the kernel would call them, and the database's rows.
- `Control`, `Ctx`, `Fields`: the parts of the mount the handlers ask for.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

import codec
from cache.staging import Staging
from tests.fake_walrus import END_EPOCH, N_SHARDS, FakeChain, FakeStore, FakeWorker, Fault
from walrusfs.fs import crypto, schema
from walrusfs.fs.checkpoint import Checkpointer
from walrusfs.fs.content import Content
from walrusfs.fs.fsck import Report, check_database
from walrusfs.fs.ops import Operations
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.plans import PLANS_DIR, PlanFiles
from walrusfs.fs.pool import VolumePool
from walrusfs.fs.uploader import Uploader

__all__ = [
    "END_EPOCH",
    "Control",
    "Ctx",
    "FakeChain",
    "FakeStore",
    "FakeWorker",
    "Fault",
    "Fields",
    "Volume",
    "assert_clean",
    "open_volume",
]

# -- the handlers' view of the mount --------------------------------------------------------


@dataclass(frozen=True)
class Ctx:
    """A request's context (pyfuse3.RequestContext, which Python code cannot fill in)."""

    uid: int = os.getuid()
    gid: int = os.getgid()
    pid: int = 0
    umask: int = 0o022


@dataclass
class Fields:
    """pyfuse3.SetattrFields, settable."""

    update_size: bool = False
    update_mode: bool = False
    update_uid: bool = False
    update_gid: bool = False
    update_atime: bool = False
    update_mtime: bool = False
    update_ctime: bool = False


@dataclass(frozen=True)
class _Options:
    read_only: bool = False


class Control:
    """ops.Control over the uploader and checkpointer (walrusfs.fs.volume.Volume, less what
    needs the chain: node probes, balances)."""

    def __init__(
        self, db_path: Path, uploader: Uploader, checkpointer: Checkpointer, staging_limit: int
    ) -> None:
        self.options = _Options()
        self.db_path = db_path
        self.uploader = uploader
        self.checkpointer = checkpointer
        self.staging_limit = staging_limit

    def wake_uploader(self) -> None:
        self.uploader.wake()

    def uploading(self, inode: int) -> bool:
        return any(key[0] == inode for key in self.uploader.inflight)

    async def wait_for_room(self, nbytes: int) -> None:
        staging = self.uploader.staging
        while staging.used_bytes + nbytes > self.staging_limit:
            if self.uploader.stats.failing and not self.uploader.inflight:
                raise pyfuse3.FUSEError(errno.ENOSPC)
            self.uploader.wake()
            await self.uploader.content.space_freed.wait()

    async def sync_db(self) -> None:
        await trio.to_thread.run_sync(schema.sync_wal, self.db_path)

    def statfs(self) -> pyfuse3.StatvfsData:
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 4096
        s.f_namemax = 255
        return s

    async def command(self, name: str, value: bytes) -> None:
        """`walrusfs sync`: everything staged certified, then a checkpoint."""
        if name != "sync":
            raise pyfuse3.FUSEError(errno.EINVAL)
        await self.uploader.flush()
        await self.sync_db()
        await self.checkpointer.checkpoint()

    def query(self, name: str) -> Any:
        if name == "pid":
            return os.getpid()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)


# -- a volume ---------------------------------------------------------------------------------


@dataclass
class Volume:
    db: Any  # sqlite3.Connection
    dir: Path
    staging: Staging
    store: FakeStore
    worker: FakeWorker
    content: Content
    uploader: Uploader
    checkpointer: Checkpointer
    ops: Operations
    ctx: Any = field(default_factory=Ctx)  # stands for a pyfuse3.RequestContext

    # -- files, through the handlers, as the kernel would call them

    async def create(self, name: bytes, data: bytes = b"") -> int:
        """A new file in the root directory holding `data`, closed; its inode."""
        info, attrs = await self.ops.create(
            schema.ROOT_INODE, name, 0o644, os.O_WRONLY | os.O_CREAT, self.ctx
        )
        if data:
            assert await self.ops.write(info.fh, 0, data) == len(data)
        await self.ops.release(info.fh)
        return int(attrs.st_ino)

    async def lookup(self, name: bytes) -> int:
        """The inode of `name` in the root directory."""
        return int((await self.ops.lookup(schema.ROOT_INODE, name, self.ctx)).st_ino)

    async def open(self, inode: int, flags: int = os.O_WRONLY) -> int:
        return int((await self.ops.open(inode, flags, self.ctx)).fh)

    async def write(self, inode: int, data: bytes, offset: int = 0, *, trunc: bool = False) -> None:
        """Open (O_TRUNC if `trunc`), write `data` at `offset`, close."""
        fh = await self.open(inode, os.O_WRONLY | (os.O_TRUNC if trunc else 0))
        try:
            assert await self.ops.write(fh, offset, data) == len(data)
        finally:
            await self.ops.release(fh)

    async def truncate(self, inode: int, size: int) -> None:
        attr = pyfuse3.EntryAttributes()
        attr.st_size = size
        fields: Any = Fields(update_size=True)  # stands for pyfuse3.SetattrFields
        await self.ops.setattr(inode, attr, fields, None, self.ctx)

    async def read(self, inode: int) -> bytes:
        """The whole file, read through an O_RDONLY handle."""
        fh = await self.open(inode, os.O_RDONLY)
        try:
            size = (await self.ops.getattr(inode, self.ctx)).st_size
            return bytes(await self.ops.read(fh, 0, size + 4096))
        finally:
            await self.ops.release(fh)

    async def unlink(self, name: bytes) -> None:
        await self.ops.unlink(schema.ROOT_INODE, name, self.ctx)

    async def sync(self) -> None:
        """`walrusfs sync`, through the control attribute as the CLI sends it."""
        await self.ops.setxattr(schema.ROOT_INODE, b"user.walrusfs.ctl.sync", b"", self.ctx)

    # -- what the volume holds

    def chunks(self, inode: int) -> list[tuple[int, bool, int | None, str | None, int]]:
        """(chunkno, staged, blob row, patch, length) of each chunk of the file."""
        return [
            (int(c), bool(s), b, p, int(n))
            for c, s, b, p, n in self.db.execute(
                "SELECT chunkno, staged, blob, patch, length FROM chunks WHERE inode = ? "
                "ORDER BY chunkno",
                (inode,),
            )
        ]

    def blob_rows(self) -> dict[str, tuple[str, int]]:
        """object ID -> (kind, refcount) of every row of `blobs`."""
        return {
            str(o): (str(k), int(r))
            for o, k, r in self.db.execute("SELECT object_id, kind, refcount FROM blobs")
        }

    def fsck(self) -> Report:
        """fsck's database check (checks 2-5: staging, tree, chunks, reference counts)."""
        report = Report()
        check_database(self.db, self.staging, report)
        return report


def assert_clean(report: Report) -> None:
    assert not report.damaged
    assert report.repaired == [], report.repaired
    assert report.lost == [], report.lost


@asynccontextmanager
async def open_volume(
    tmp_path: Path,
    *,
    config: UploadConfig | None = None,
    chunk_size: int = 256 << 10,
    keys: crypto.VolumeKeys | None = None,
    staging_limit: int = 1 << 40,
    run_uploader: bool = True,
    worker: FakeWorker | None = None,
    orphans: Sequence[str] = (),
    pool: bool = False,
) -> AsyncIterator[Volume]:
    """A volume in `tmp_path`, wired as assemble.py wires a mount's, over a FakeStore and a
    FakeWorker; the uploader and the handlers' purger run until the block ends. Content's
    clock is trio's, so an autojump clock drives idle times and back-offs.

    `worker`: the one an earlier opening of the same volume used (what the chain and the
    nodes hold outlives a mount), with `orphans`, the uncertified Blobs of this machine
    that the writer lease's scan would find. `pool`: a new volume keeps its blobs in a
    storage pool (the worker's, one entry per blob ID).

    A block that ends without an exception must leave a volume that fsck's database check
    finds clean (the test fails otherwise)."""
    volume_dir = tmp_path / "vol"
    db = schema.open_volume(
        volume_dir / "meta.db",
        uid=os.getuid(),
        gid=os.getgid(),
        chunk_size=chunk_size,
        encryption="none" if keys is None else "wfe1",
        storage="pool" if pool else "blobs",
    )
    staging = Staging(volume_dir / "staging")
    worker = worker or FakeWorker(FakeStore(), keys)
    store = worker.store
    config = config or UploadConfig(delay=1.0, compact_below=0.0)
    content = Content(db, staging, store, chunk_size, keys=keys, clock=trio.current_time)
    volume_pool = VolumePool(db, worker, config.epochs)
    uploader = Uploader(
        db,
        content,
        worker,
        pool=volume_pool,
        config=config,
        volume_id=schema.get_param(db, "volume_id") or "",
        params=codec.EncodingParams(N_SHARDS),
        keys=keys,
        volume_name=volume_dir.name,
        machine="test-machine",
        orphans=orphans,
        plan_files=PlanFiles(volume_dir / PLANS_DIR),
    )
    checkpointer = Checkpointer(
        db,
        volume_dir / "meta.db",
        worker,
        name=volume_dir.name,
        epochs=config.epochs,
        interval=3600.0,
        keys=keys,
        pool=volume_pool,
    )
    uploader.housekeeping = checkpointer.ignore
    control = Control(volume_dir / "meta.db", uploader, checkpointer, staging_limit)
    ops = Operations(db, content, control)
    volume = Volume(db, volume_dir, staging, store, worker, content, uploader, checkpointer, ops)
    try:
        async with trio.open_nursery() as nursery:
            content.stored.spawn = nursery.start_soon  # read-ahead, as the mount sets it
            if run_uploader:
                await nursery.start(uploader.run)
            await nursery.start(ops.purger)
            yield volume
            nursery.cancel_scope.cancel()
        assert_clean(volume.fsck())
    finally:
        staging.close()
        db.close()
