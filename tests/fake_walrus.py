"""Walrus as the in-process tier's volume sees it (tests/fakes.py wires these into one), held
in memory and driven from trio tests:

- `FakeStore`: the store as `Content` reads it (stored.BlobReader), bytes held in memory.
- `FakeWorker`: the upload worker as the mount sees it (worker_protocol.Worker). It reads the
  staged files as the real worker does (upload_worker._read: spans, trailing zeros, holes,
  sealing), "registers" (pays) and "certifies" into the FakeStore, and keeps the books a test
  asserts on: registrations paid, Blobs certified, deleted, abandoned. Faults are scripted
  (`Fault`), and `hold` stops uploads mid-way until the test lets them go on.
- `FakeChain`: what the renewer asks of the chain, the epoch, on trio's clock.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

import codec
from chain import errors as chain_errors
from walrusfs.fs import crypto
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.upload_worker import _read
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
    registered: wp.Registered | None = None  # told the Blob object once registered


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
    pools: list[str] = field(default_factory=list)  # created storage pools
    #: (pool, blob ID) -> the object registered for it: a pool's table, one entry per ID
    in_pools: dict[tuple[str, str], str] = field(default_factory=dict)
    #: when set, a delete waits for it (`delete_arrived` is set when one does)
    delete_hold: trio.Event | None = None
    delete_arrived: trio.Event = field(default_factory=trio.Event)
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
        in_pool = self.in_pools.get((upload.pool, blob_id)) if upload.pool else None
        if in_pool is not None and self.objects[in_pool].certified:
            # a pool's table has one entry per blob ID: the certified one is reused
            return {
                **self._answer(in_pool, blob_id, size, upload.pool),
                "cost": 0,
                "already_certified": True,
            }
        if in_pool is not None:  # registered by an earlier attempt: continued
            object_id = in_pool
        elif resumed is not None and not resumed.certified and resumed.blob_id == blob_id:
            object_id = upload.resume or ""
        else:
            object_id = f"0x{next(self._ids):064x}"
            self.objects[object_id] = Registration(blob_id, dict(upload.attributes))
            if upload.pool:
                self.in_pools[(upload.pool, blob_id)] = object_id
            if request.registered is not None:
                request.registered(object_id)
        if fault is not None:
            assert isinstance(fault.exc, wp.WorkerError), "only a WorkerError carries a Blob"
            raise type(fault.exc)(str(fault.exc), object_id)
        self.objects[object_id].certified = True
        return self._answer(object_id, blob_id, size, upload.pool)

    @staticmethod
    def _answer(object_id: str, blob_id: str, size: int, pool: str | None) -> dict[str, Any]:
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
            "pool": pool,
        }

    def _read(self, source: wp.Source) -> tuple[bytes, int] | None:
        return _read(
            source.path, self.keys, source.offset, source.length or 0, strip=not source.exact
        )

    async def store_blob(
        self, source: wp.Source, upload: wp.Upload, registered: wp.Registered | None = None
    ) -> wp.BlobStored:
        at = trio.current_time()
        got = self._read(source)
        if got is None:
            return wp.BlobStored(None)
        data, length = got
        if length == 0:
            return wp.BlobStored(None, 0, hole=True)
        blob_id = _blob_id(b"blob", data)
        result = await self._upload(Request("blob", upload, (), at, registered), blob_id, len(data))
        self.store.blobs[blob_id] = data
        return wp.BlobStored.from_json({"result": result, "length": length})

    async def store_quilt(
        self,
        items: Sequence[wp.QuiltItem],
        upload: wp.Upload,
        registered: wp.Registered | None = None,
    ) -> wp.QuiltStored:
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
        request = Request("quilt", upload, tuple(i for i, _, _ in files), at, registered)
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

    async def delete(self, object_id: str, pool: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if self.delete_hold is not None:
            self.delete_arrived.set()
            await self.delete_hold.wait()
        r = self.objects.get(object_id)
        if r is None or not r.certified or object_id in self.deleted:
            raise chain_errors.ObjectNotFound(f"no Blob object {object_id}")
        self.deleted.append(object_id)
        if pool is not None:
            self.in_pools.pop((pool, r.blob_id), None)

    async def abandon(self, object_id: str, pool: str | None = None) -> bool:
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

    async def create_pool(self, capacity: int, epochs: int) -> tuple[str, int]:
        await trio.lowlevel.checkpoint()
        self.pools.append(f"0xpool{len(self.pools)}")
        return self.pools[-1], PRICE

    async def extend_pool(self, pool: str, epochs: int) -> wp.Extended:
        await trio.lowlevel.checkpoint()
        if pool not in self.pools:
            raise chain_errors.ObjectNotFound(f"no pool {pool}")
        self.extended.append((pool, epochs))
        for r in self.objects.values():
            r.end_epoch += epochs
        return wp.Extended(PRICE, END_EPOCH + sum(e for p, e in self.extended if p == pool))


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
