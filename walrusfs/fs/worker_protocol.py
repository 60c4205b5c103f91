"""The upload worker's protocol: typed requests and answers, and their one serialisation.

The mount and the worker process (upload_worker.py) exchange one JSON object per line; this
module is the only one that builds or reads those objects, on both sides. Requests carry an
"id" echoed in the answer; requests run concurrently, except the first line:

  {"id": 0, "op": "init", "key": hex volume key | null, "network": {NetworkProfile},
        "wallet": keystring | null}   (no answer; the worker reads no configuration itself)
  {"id", "op": "blob",  "path", ["offset", "length",] "epochs", "attributes", ["resume"]}
        -> {"id", "result", "length", ["hole"]}
  {"id", "op": "quilt", "items": [[identifier, path, offset, length, tags]...], "epochs",
        "attributes", ["resume"]}
        -> {"id", "result", "patches": {identifier: patch_id}, "lengths": {identifier: n},
            "holes": [identifier...]}
  {"id", "op": "delete", "object_id"}                     -> {"id"}
  {"id", "op": "abandon", "object_id"}                    -> {"id", "abandoned": bool}
  {"id", "op": "extend", "object_id", "epochs"}           -> {"id", "paid", "end_epoch"}
  failure: {"id", "error": message, "type": "not_found" | "funds" | "data" | "other"};
           "funds" adds "need", "have" (FROST, or MIST when "gas" is true).

Every answer carries "uncertified" (the registrations the worker holds unfinished) and
"registered" (the Blob object the upload wrote to, null before registration). An upload also
says so the moment it has registered, before its answer: {"id", "progress": "registered",
"registered"}.

Errors cross the process boundary by class: ObjectNotFound, InsufficientWal and
InsufficientGas (chain.errors) come back as themselves; DataError (these bytes cannot be
stored as asked, which no retry changes); any other failure as WorkerError.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import trio

import codec
from cache.blocks import BlockCachePlace
from chain import errors as chain_errors
from chain.profiles import NetworkProfile
from chain.wallet import Keypair
from walrusfs.store.errors import StoreError
from walrusfs.store.writes import StoreResult

#: told the Blob object an upload registered, as soon as the worker says so
Registered = Callable[[str], None]

# -- errors -------------------------------------------------------------------------------------


class WorkerError(StoreError):
    """An upload failed in the worker (the message says why)."""

    def __init__(self, message: str, registered: str | None = None) -> None:
        super().__init__(message)
        #: the Blob object the failed upload registered (continued by a retry of the same
        #: request, or abandoned)
        self.registered = registered


class DataError(WorkerError):
    """The request cannot succeed as it is (a quilt too large, a codec limit): split the
    quilt, or store its files otherwise; retrying it unchanged fails again."""


def error_to_json(exc: BaseException) -> dict[str, Any]:
    """The failure fields of an answer (the worker's side)."""
    if isinstance(exc, chain_errors.ObjectNotFound):
        return {"error": str(exc), "type": "not_found"}
    if isinstance(exc, chain_errors.InsufficientFunds):
        return {
            "error": str(exc),
            "type": "funds",
            "need": exc.need,
            "have": exc.have,
            "gas": isinstance(exc, chain_errors.InsufficientGas),
        }
    if isinstance(exc, (StoreError, chain_errors.ChainError, OSError)):
        return {"error": f"{type(exc).__name__}: {exc}", "type": "other"}
    if isinstance(exc, ValueError):  # codec limits (a quilt too large), bad requests
        return {"error": f"{type(exc).__name__}: {exc}", "type": "data"}
    return {"error": f"internal error: {exc!r}", "type": "other"}


def error_from_json(answer: Mapping[str, Any]) -> Exception:
    """The exception a failed answer stands for (the mount's side)."""
    message = str(answer["error"])
    kind = answer.get("type")
    if kind == "not_found":
        return chain_errors.ObjectNotFound(message)
    if kind == "funds":
        cls = chain_errors.InsufficientGas if answer.get("gas") else chain_errors.InsufficientWal
        return cls(message, int(answer["need"]), int(answer["have"]))
    registered = answer.get("registered")
    if kind == "data":
        return DataError(message, registered)
    return WorkerError(message, registered)


# -- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Init:
    """The first line: the volume key (None: a public volume), and the network and the wallet
    key that pays, as the mount resolved them. Secrets travel on stdin, never on the command
    line."""

    volume_key: bytes | None = field(repr=False)
    network: NetworkProfile
    wallet: Keypair | None = field(repr=False)
    #: where the worker keeps the bytes of the blobs it stored (None: nowhere)
    blocks: BlockCachePlace | None = None
    #: the upload relay it sends blobs through (None: to the storage nodes)
    relay: RelaySetting | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": 0,
            "op": "init",
            "key": None if self.volume_key is None else self.volume_key.hex(),
            "network": dataclasses.asdict(self.network),
            "wallet": None if self.wallet is None else self.wallet.keystring(),
            "blocks": None
            if self.blocks is None
            else {"root": str(self.blocks.root), "limit": self.blocks.limit},
            "relay": None
            if self.relay is None
            else {"url": self.relay.url, "max_tip": self.relay.max_tip},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Init:
        """The init line, as the worker reads it.

        Raises:
            ValueError: not an init line, or a key that does not parse.
            KeyError: a field is missing.
        """
        if d.get("op") != "init":
            raise ValueError(f"the first line of the protocol is not init: {d.get('op')!r}")
        network = dict(d["network"])
        network["exchange_objects"] = tuple(network.get("exchange_objects", ()))
        blocks = d.get("blocks")
        relay = d.get("relay")
        return cls(
            None if d["key"] is None else bytes.fromhex(d["key"]),
            NetworkProfile(**network),
            None if d["wallet"] is None else Keypair.from_keystring(d["wallet"]),
            None if blocks is None else BlockCachePlace(Path(blocks["root"]), int(blocks["limit"])),
            None if relay is None else RelaySetting(str(relay["url"]), int(relay["max_tip"])),
        )


@dataclass(frozen=True)
class RelaySetting:
    """The upload relay a worker sends blobs through, and the most MIST it pays per blob."""

    url: str
    max_tip: int


@dataclass(frozen=True)
class Source:
    """Where the worker reads a chunk: a whole file, or a span of a file (of an upload batch,
    where the mount puts the bytes of small chunks, or the first `length` bytes of a chunk
    file, so a file that grew after the plan cannot make the quilt larger than planned)."""

    path: str
    offset: int | None = None
    length: int | None = None
    batch: bool = False  # an upload batch, removed when the job ends (mount side only)
    #: every byte stored as it is (a checkpoint): a chunk's trailing zeros are left out,
    #: its length in the volume says where its bytes end, but nothing says a checkpoint's
    exact: bool = False


@dataclass(frozen=True)
class QuiltItem:
    ident: str  # the patch identifier, "<inode>.<chunkno>"
    source: Source
    tags: dict[str, str]


@dataclass(frozen=True)
class Upload:
    """What every upload request carries: storage epochs, the Blob's attributes, and the Blob
    a failed attempt of this very request registered, to continue (`resume`)."""

    epochs: int
    attributes: dict[str, str]
    resume: str | None = None
    #: the volume's storage pool, where the blob is registered (None: an owned Blob)
    pool: str | None = None


def blob_request(source: Source, upload: Upload) -> dict[str, Any]:
    out: dict[str, Any] = {"op": "blob", "path": source.path, **_upload(upload)}
    if source.offset is not None:
        out.update(offset=source.offset, length=source.length)
    if source.exact:
        out["exact"] = True
    return out


def quilt_request(items: Sequence[QuiltItem], upload: Upload) -> dict[str, Any]:
    return {
        "op": "quilt",
        "items": [
            [i.ident, i.source.path, i.source.offset, i.source.length, i.tags] for i in items
        ],
        **_upload(upload),
    }


def _upload(upload: Upload) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": upload.epochs, "attributes": upload.attributes}
    if upload.resume is not None:
        out["resume"] = upload.resume
    if upload.pool is not None:
        out["pool"] = upload.pool
    return out


# -- answers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobStored:
    """A "blob" answer. `result` None: nothing stored (the file was gone, or a hole)."""

    result: StoreResult | None
    length: int = 0  # plaintext bytes stored (trailing zeros are not)
    hole: bool = False  # the chunk holds zeros only: no blob

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": result_to_json(self.result), "length": self.length}
        if self.hole:
            out["hole"] = True
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BlobStored:
        return cls(result_from_json(d["result"]), int(d.get("length", 0)), bool(d.get("hole")))


@dataclass(frozen=True)
class QuiltStored:
    """A "quilt" answer: each stored file's patch ID and plaintext length, the files that
    were holes. `result` None: no file had bytes to store."""

    result: StoreResult | None
    patches: dict[str, str] = field(default_factory=dict)
    lengths: dict[str, int] = field(default_factory=dict)
    holes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "result": result_to_json(self.result),
            "patches": self.patches,
            "lengths": self.lengths,
            "holes": self.holes,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> QuiltStored:
        return cls(
            result_from_json(d["result"]),
            dict(d.get("patches", {})),
            {k: int(v) for k, v in d.get("lengths", {}).items()},
            list(d.get("holes", [])),
        )


@dataclass(frozen=True)
class Extended:
    paid: int  # FROST
    end_epoch: int


def result_to_json(r: StoreResult | None) -> dict[str, Any] | None:
    if r is None:
        return None
    out = {f.name: getattr(r, f.name) for f in fields(r)}  # asdict would deep-copy BlobId
    out["blob_id"] = str(r.blob_id)
    out["signers"] = list(r.signers)
    return out


def result_from_json(d: Mapping[str, Any] | None) -> StoreResult | None:
    if d is None:
        return None
    return StoreResult(
        **{**d, "blob_id": codec.BlobId.parse(d["blob_id"]), "signers": tuple(d["signers"])}
    )


def encode(obj: Mapping[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(obj).encode() + b"\n"


async def read_lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[dict[str, Any]]:
    """The protocol lines arriving on `stream`, decoded, until it closes (an unfinished last
    line is dropped).

    Raises:
        json.JSONDecodeError: a line that is not JSON.
    """
    buf = b""
    async for data in stream:
        buf += data
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield json.loads(line)


# -- the client's interface -----------------------------------------------------------------------


class Worker(Protocol):
    """What the uploader, the checkpointer and the renewer need of the upload worker
    (upload_worker.UploadWorker; a fake in tests). Failures raise as `error_from_json` makes
    them: ObjectNotFound, InsufficientWal, InsufficientGas, DataError or WorkerError."""

    @property
    def uncertified(self) -> int:
        """Registrations the worker holds unfinished (paid, not certified)."""
        ...

    async def store_blob(
        self, source: Source, upload: Upload, registered: Registered | None = None
    ) -> BlobStored:
        """Store a chunk as a blob; `registered` is told the Blob object the moment it is
        registered (before the answer), so a crash after paying still names it."""
        ...

    async def store_quilt(
        self, items: Sequence[QuiltItem], upload: Upload, registered: Registered | None = None
    ) -> QuiltStored:
        """Store files as a quilt; `registered` as for `store_blob`."""
        ...

    async def delete(self, object_id: str, pool: str | None = None) -> None:
        """Delete a blob: an owned Blob, or a blob of `pool` (capacity back to the pool)."""
        ...

    async def abandon(self, object_id: str, pool: str | None = None) -> bool:
        """Delete an unfinished registration the mount will not retry (its Storage, or its
        capacity in `pool`, returns); whether there was one."""
        ...

    async def extend(self, object_id: str, epochs: int) -> Extended: ...

    async def create_pool(self, capacity: int, epochs: int) -> tuple[str, int]:
        """A new storage pool for the volume: its object ID and the FROST it cost."""
        ...

    async def extend_pool(self, pool: str, epochs: int) -> Extended:
        """Renew the pool (every blob in it) by `epochs`, unused capacity taken out first."""
        ...
