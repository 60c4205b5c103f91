"""Fakes for the in-process tier: the filesystem's handlers, content and uploader driven from
trio tests (as S3QL's t3_fs_api drives its Operations), with no FUSE mount and no network.

- `FakeStore`: the store as `Content` reads it (stored.BlobReader), bytes held in memory.
- `FakeWorker`: the upload worker as the mount sees it (worker_protocol.Worker). It reads the
  staged files as the real worker does (upload_worker._read: spans, trailing zeros, holes,
  sealing), "registers" (pays) and "certifies" into the FakeStore, and keeps the books a test
  asserts on: registrations paid, Blobs certified, deleted, abandoned. Faults are scripted
  (`Fault`), and `hold` stops uploads mid-way until the test lets them go on.
- `open_volume`: a volume as `walrusfs mount` wires it (assemble.py) over those two, with the
  handlers (ops.Operations) on top; on a clean exit it runs fsck's database check and fails
  the test unless the volume is clean.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
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
from chain import errors as chain_errors
from walrusfs.fs import crypto, schema
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.checkpoint import Checkpointer
from walrusfs.fs.content import Content
from walrusfs.fs.fsck import Report, check_database
from walrusfs.fs.ops import Operations
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.upload_worker import _read
from walrusfs.fs.uploader import Uploader
from walrusfs.store.errors import StoreError

N_SHARDS = 10  # k_s = 7: quilts of up to 6 files
END_EPOCH = 100  # the end epoch of every blob the fake certifies (before extensions)
PRICE = 1000  # FROST per registration (one price for every size: tests count payments)

# -- the store --------------------------------------------------------------------------------


class FakeStore:
    """Certified blobs and quilt patches, by their IDs (stored.BlobReader)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.patches: dict[str, codec.PatchContent] = {}
        self.reads: list[str] = []  # the blob or patch IDs read, in order
        #: when set, reads wait for it (a slow network: a test acts while a read is under way)
        self.hold: trio.Event | None = None
        self.reading = trio.Event()  # set when a read is waiting for `hold`
        self.spans: list[tuple[str, int, int]] = []  # (blob ID, offset, length) of each read
        #: blobs whose kept bytes are damaged: read with one byte flipped until forgotten
        self.damaged: set[str] = set()
        self.forgotten: list[str] = []  # blobs the reader asked to forget (forget_cached)

    async def _wait(self, ident: str) -> None:
        self.reads.append(ident)
        if self.hold is not None:
            self.reading.set()
            await self.hold.wait()

    async def read(
        self,
        blob_id: codec.BlobId,
        offset: int = 0,
        length: int | None = None,
        *,
        use_cache: bool = True,
        authenticated: bool = False,
        blob_size: int | None = None,
    ) -> bytes:
        await self._wait(str(blob_id))
        data = self.blobs.get(str(blob_id))
        if data is None:
            raise StoreError(f"blob {blob_id} is not stored")
        got = data[offset : len(data) if length is None else offset + length]
        self.spans.append((str(blob_id), offset, len(got)))
        if str(blob_id) in self.damaged and len(got) > 100:
            got = got[:100] + bytes([got[100] ^ 1]) + got[101:]
        return got

    async def read_patch(
        self, patch_id: codec.QuiltPatchId, *, use_cache: bool = True
    ) -> codec.PatchContent:
        await self._wait(str(patch_id))
        patch = self.patches.get(str(patch_id))
        if patch is None:
            raise StoreError(f"quilt patch {patch_id} is not stored")
        return patch

    def forget_cached(self, blob_id: codec.BlobId) -> None:
        self.forgotten.append(str(blob_id))
        self.damaged.discard(str(blob_id))


# -- the upload worker ------------------------------------------------------------------------


@dataclass
class Fault:
    """What the worker does instead of the next upload (blob or quilt) it is asked for.

    `exc` is raised when the request arrives; with `after_register` the Blob is registered
    (paid) first and the error carries it, as when the worker's upload fails at the nodes or
    the worker process dies after its "registered" progress line. `exc` must then be a
    WorkerError (or DataError), whose class the registered copy keeps."""

    exc: Exception
    after_register: bool = False


@dataclass(frozen=True)
class Request:
    op: str  # "blob" | "quilt"
    upload: wp.Upload
    idents: tuple[str, ...]  # a quilt's patch identifiers
    at: float  # trio.current_time() when it arrived


@dataclass
class Registration:
    blob_id: str
    attributes: dict[str, str]
    end_epoch: int = END_EPOCH
    certified: bool = False


@dataclass
class FakeWorker:
    """The upload worker (worker_protocol.Worker) over a FakeStore."""

    store: FakeStore
    keys: crypto.VolumeKeys | None = None
    #: the largest quilt it stores (more files: DataError, as the codec's refusal comes back)
    max_quilt: int = N_SHARDS
    faults: list[Fault] = field(default_factory=list)
    #: when set, an upload that has read its files waits for it before it registers
    hold: trio.Event | None = None
    arrived: trio.Event = field(default_factory=trio.Event)  # an upload waits for `hold`
    requests: list[Request] = field(default_factory=list)
    #: every Blob object registered (paid for), by object ID
    objects: dict[str, Registration] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    extended: list[tuple[str, int]] = field(default_factory=list)
    #: object IDs whose extension fails (lack of WAL)
    extend_fails: set[str] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def uncertified(self) -> int:
        return sum(
            1 for o, r in self.objects.items() if not r.certified and o not in self.abandoned
        )

    @property
    def paid(self) -> int:
        """FROST paid for registrations."""
        return PRICE * len(self.objects)

    def uploads(self) -> list[Request]:
        """The requests to store file content (checkpoints left out), in order."""
        return [
            r for r in self.requests if r.upload.attributes.get("walrusfs:kind") != "checkpoint"
        ]

    def registered(self, *kinds: str) -> list[str]:
        """Object IDs of the Blobs registered (paid for) of these walrusfs:kinds, in order
        ("data", "quilt", "checkpoint"; none given: of file content)."""
        kinds = kinds or ("data", "quilt")
        return [o for o, r in self.objects.items() if r.attributes.get("walrusfs:kind") in kinds]

    def live(self, kind: str | None = None) -> dict[str, Registration]:
        """Certified Blob objects not deleted (of walrusfs:kind `kind`)."""
        return {
            o: r
            for o, r in self.objects.items()
            if r.certified
            and o not in self.deleted
            and (kind is None or r.attributes.get("walrusfs:kind") == kind)
        }

    async def _upload(self, request: Request, blob_id: str, size: int) -> dict[str, Any]:
        """Register (or continue `resume`) and certify, with faults and `hold` on the way; the
        result as the worker's answer carries it (worker_protocol.result_to_json)."""
        self.requests.append(request)
        fault = self.faults.pop(0) if self.faults else None
        if fault is not None and not fault.after_register:
            raise fault.exc
        if self.hold is not None:
            self.arrived.set()
            await self.hold.wait()
        upload = request.upload
        resumed = self.objects.get(upload.resume or "")
        if resumed is not None and not resumed.certified and resumed.blob_id == blob_id:
            object_id = upload.resume or ""
        else:
            object_id = f"0x{next(self._ids):064x}"
            self.objects[object_id] = Registration(blob_id, dict(upload.attributes))
        if fault is not None:
            assert isinstance(fault.exc, wp.WorkerError), "only a WorkerError carries a Blob"
            raise type(fault.exc)(str(fault.exc), object_id)
        self.objects[object_id].certified = True
        return {
            "blob_id": blob_id,
            "object_id": object_id,
            "size": size,
            "encoded_size": codec.EncodingParams(N_SHARDS).encoded_size(size),
            "end_epoch": END_EPOCH,
            "deletable": True,
            "cost": PRICE,
            "reused_storage": False,
            "already_certified": False,
            "signers": [],
        }

    def _read(self, source: wp.Source) -> tuple[bytes, int] | None:
        return _read(source.path, self.keys, source.offset, source.length or 0)

    async def store_blob(self, source: wp.Source, upload: wp.Upload) -> wp.BlobStored:
        at = trio.current_time()
        got = self._read(source)
        if got is None:
            return wp.BlobStored(None)
        data, length = got
        if length == 0:
            return wp.BlobStored(None, 0, hole=True)
        blob_id = _blob_id(b"blob", data)
        result = await self._upload(Request("blob", upload, (), at), blob_id, len(data))
        self.store.blobs[blob_id] = data
        return wp.BlobStored.from_json({"result": result, "length": length})

    async def store_quilt(self, items: Sequence[wp.QuiltItem], upload: wp.Upload) -> wp.QuiltStored:
        at = trio.current_time()
        files: list[tuple[str, bytes, dict[str, str]]] = []
        lengths: dict[str, int] = {}
        holes: list[str] = []
        for item in items:
            got = self._read(item.source)
            if got is None:
                continue
            if got[1] == 0:
                holes.append(item.ident)
                continue
            files.append((item.ident, got[0], item.tags))
            lengths[item.ident] = got[1]
        if not files:
            return wp.QuiltStored(None, holes=holes)
        request = Request("quilt", upload, tuple(i for i, _, _ in files), at)
        if len(files) > self.max_quilt:
            self.requests.append(request)
            raise wp.DataError(f"ValueError: a quilt of {len(files)} files is too large")
        whole = b"".join(ident.encode() + b"\0" + data for ident, data, _ in files)
        quilt_id = _blob_id(b"quilt", whole)
        result = await self._upload(request, quilt_id, len(whole))
        patches = {}
        for n, (ident, data, tags) in enumerate(files):
            patch = codec.QuiltPatchId(codec.BlobId.parse(quilt_id), n + 1, n + 2)
            self.store.patches[str(patch)] = codec.PatchContent(ident, tags, data)
            patches[ident] = str(patch)
        self.store.blobs[quilt_id] = whole
        return wp.QuiltStored.from_json(
            {"result": result, "patches": patches, "lengths": lengths, "holes": holes}
        )

    async def delete(self, object_id: str) -> None:
        await trio.lowlevel.checkpoint()
        r = self.objects.get(object_id)
        if r is None or not r.certified or object_id in self.deleted:
            raise chain_errors.ObjectNotFound(f"no Blob object {object_id}")
        self.deleted.append(object_id)

    async def abandon(self, object_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        r = self.objects.get(object_id)
        if r is None or r.certified or object_id in self.abandoned:
            return False
        self.abandoned.append(object_id)
        return True

    async def extend(self, object_id: str, epochs: int) -> wp.Extended:
        await trio.lowlevel.checkpoint()
        if object_id in self.extend_fails:
            raise chain_errors.InsufficientWal("not enough WAL to extend", PRICE, 0)
        r = self.objects[object_id]
        r.end_epoch += epochs
        self.extended.append((object_id, epochs))
        return wp.Extended(PRICE, r.end_epoch)


@dataclass(frozen=True)
class EpochInfo:
    epoch: int


class FakeChain:
    """What the renewer asks of the chain (chain.client.WalrusChain.system_info): the epoch,
    one every `epoch_seconds` of trio's clock from `first`."""

    def __init__(self, first: int, epoch_seconds: float) -> None:
        self.first = first
        self.epoch_seconds = epoch_seconds

    @property
    def epoch(self) -> int:
        return self.first + int(trio.current_time() // self.epoch_seconds)

    async def system_info(self) -> EpochInfo:
        await trio.lowlevel.checkpoint()
        return EpochInfo(self.epoch)


def _blob_id(kind: bytes, data: bytes) -> str:
    return str(codec.BlobId(hashlib.sha256(kind + data).digest()))


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
) -> AsyncIterator[Volume]:
    """A volume in `tmp_path`, wired as assemble.py wires a mount's, over a FakeStore and a
    FakeWorker; the uploader and the handlers' purger run until the block ends. Content's
    clock is trio's, so an autojump clock drives idle times and back-offs.

    A block that ends without an exception must leave a volume that fsck's database check
    finds clean (the test fails otherwise)."""
    volume_dir = tmp_path / "vol"
    db = schema.open_volume(
        volume_dir / "meta.db",
        uid=os.getuid(),
        gid=os.getgid(),
        chunk_size=chunk_size,
        encryption="none" if keys is None else "wfe1",
    )
    staging = Staging(volume_dir / "staging")
    store = FakeStore()
    worker = FakeWorker(store, keys)
    config = config or UploadConfig(delay=1.0, compact_below=0.0)
    content = Content(db, staging, store, chunk_size, keys=keys, clock=trio.current_time)
    uploader = Uploader(
        db,
        content,
        worker,
        config=config,
        volume_id=schema.get_param(db, "volume_id") or "",
        params=codec.EncodingParams(N_SHARDS),
        keys=keys,
        volume_name=volume_dir.name,
        machine="test-machine",
    )
    checkpointer = Checkpointer(
        db,
        volume_dir / "meta.db",
        worker,
        name=volume_dir.name,
        epochs=config.epochs,
        interval=3600.0,
        keys=keys,
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
