"""The gRPC transport to a Sui full node, and the mapping of its failures to `chain.errors`.

`Transport` owns pysui's gRPC client and the `AsyncioThread` it runs on. `run` is awaited
from trio; `grpc`, `call` and `object` are coroutines of the asyncio thread (what `run` is
handed). A failed RPC becomes the `chain.errors` class of its gRPC status
(`raise_rpc_error`), an executed transaction that failed becomes `TransactionFailed` or the
`MoveAbortError` of its abort (`raise_execution_error`, named from `chain.aborts`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpclib.client
import grpclib.exceptions
import pysui.sui.sui_grpc.pgrpc_requests as rq
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import trio
from grpclib.const import Status as GRPCStatus
from pysui import GrpcProtocolClient, PysuiConfiguration
from pysui.sui.sui_common.config import confgroup

from chain import aborts, errors
from chain import read_masks as masks
from chain.aio_bridge import AsyncioThread
from chain.profiles import NetworkProfile
from chain.ptb import ObjectRef

T = TypeVar("T")

#: seconds one unary RPC may take
CALL_TIMEOUT = 30
#: what a broken connection or stream raises inside grpclib
STREAM_ERRORS = (OSError, grpclib.exceptions.GRPCError, grpclib.exceptions.StreamTerminatedError)

# Aborts with an error class of their own; every other abort is a plain MoveAbortError.
ABORT_CLASSES: dict[aborts.Abort, type[errors.MoveAbortError]] = {
    aborts.E_NOT_CERTIFIED: errors.NotCertified,
    aborts.E_RESOURCE_BOUNDS: errors.Expired,
    aborts.E_ALREADY_CERTIFIED: errors.AlreadyCertified,
    aborts.E_NOT_ENOUGH_STAKE: errors.QuorumNotReached,
    aborts.E_POOL_ALREADY_CERTIFIED: errors.AlreadyCertified,
    aborts.E_POOL_RESOURCE_BOUNDS: errors.Expired,
    aborts.E_POOL_INSUFFICIENT_CAPACITY: errors.PoolFull,
    aborts.E_POOL_NOT_EMPTY: errors.PoolNotEmpty,
    aborts.E_FIELD_ALREADY_EXISTS: errors.BlobInPoolAlready,
    aborts.E_FIELD_DOES_NOT_EXIST: errors.NotInPool,
    aborts.E_POOL_BLOB_NOT_DELETABLE: errors.BlobNotDeletable,
    aborts.E_BLOB_NOT_DELETABLE: errors.BlobNotDeletable,
    aborts.E_POOL_INVALID_BLOB_ID: errors.InvalidBlobId,
    aborts.E_INVALID_BLOB_ID: errors.InvalidBlobId,
    aborts.E_POOL_INVALID_BLOB_PERSISTENCE_TYPE: errors.PersistenceMismatch,
    aborts.E_POOL_INVALID_BLOB_OBJECT: errors.PersistenceMismatch,
    aborts.E_INVALID_BLOB_PERSISTENCE_TYPE: errors.PersistenceMismatch,
    aborts.E_INVALID_BLOB_OBJECT: errors.PersistenceMismatch,
    aborts.E_POOL_INVALID_BLOB_SIZE: errors.PoolAccounting,
    aborts.E_POOL_INVALID_BLOB_COUNT: errors.PoolAccounting,
    aborts.E_POOL_WRONG_VERSION: errors.WrongVersion,
    aborts.E_WRONG_VERSION: errors.WrongVersion,
    aborts.E_POOL_INCOMPATIBLE_END_EPOCH: errors.IncompatibleEndEpoch,
    aborts.E_POOL_DUPLICATE_METADATA: errors.DuplicateMetadata,
    aborts.E_DUPLICATE_METADATA: errors.DuplicateMetadata,
    aborts.E_POOL_MISSING_METADATA: errors.MissingMetadata,
    aborts.E_MISSING_METADATA: errors.MissingMetadata,
    aborts.E_POOL_INVALID_PERCENT: errors.InvalidPercent,
    aborts.E_ZERO_EXTRACT_SIZE: errors.NothingToExtract,
}


class Transport:
    """One network's Sui endpoint: pysui's gRPC client, created on the asyncio thread."""

    def __init__(self, profile: NetworkProfile, bridge: AsyncioThread | None = None) -> None:
        self.profile = profile
        self._own_bridge = bridge is None
        self.bridge = bridge or AsyncioThread()
        self._client: GrpcProtocolClient | None = None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the asyncio thread (from trio)."""
        return await self.bridge.run(coro)

    async def close(self) -> None:
        """Close the gRPC channel, and the asyncio thread if this transport started it."""
        if self._client is not None:
            client, self._client = self._client, None
            await self.bridge.run(client.close())
        if self._own_bridge:
            # Joining the thread blocks: do it off the trio loop.
            await trio.to_thread.run_sync(self.bridge.close)

    # -- on the asyncio thread --------------------------------------------------------------

    async def grpc(self) -> GrpcProtocolClient:
        if self._client is None:
            self._client = make_client(self.profile)
        return self._client

    async def call(self, request: Any) -> Any:
        """One unary RPC; its reply, or the `chain.errors` class of its failure.

        Raises:
            ChainUnavailable: the endpoint cannot be reached or did not answer in
                CALL_TIMEOUT seconds.
            ObjectNotFound, TransactionRejected, ChainError: as `raise_rpc_error` maps the
                gRPC status.
        """
        client = await self.grpc()
        try:
            result = await client.execute_grpc_request(request=request, timeout=CALL_TIMEOUT)
        except (OSError, TimeoutError, grpclib.exceptions.StreamTerminatedError) as exc:
            raise errors.ChainUnavailable(
                f"cannot reach the Sui endpoint {self.profile.grpc_url}: {exc}"
            ) from exc
        if result.is_ok():
            return result.result_data
        raise_rpc_error(
            self.profile,
            result.result_string,
            isinstance(request, rq.ExecuteTransaction | rq.SimulateTransaction),
        )

    async def object(self, object_id: str) -> pb.Object:
        """An object with its contents.

        Raises:
            ObjectNotFound: it does not exist (or came without contents).
        """
        reply = await self.call(rq.GetObject(object_id=object_id, field_mask=list(masks.OBJECT)))
        obj: pb.Object | None = reply.object
        if obj is None or obj.contents is None:
            raise errors.ObjectNotFound(f"object {object_id} not found")
        return obj


def make_client(profile: NetworkProfile) -> GrpcProtocolClient:
    """A pysui gRPC client for `profile` (its config holds the URL only, never keys)."""
    with tempfile.TemporaryDirectory(prefix="walrusfs-pysui-") as tmp:
        cfg = PysuiConfiguration.initialize_config(
            in_folder=Path(tmp), init_groups=[{"name": "walrusfs", "make_active": True}]
        )
        group = cfg.model.get_group(group_name="walrusfs")
        group.group_protocol = confgroup.GroupProtocol.GRPC
        group.profiles.append(confgroup.Profile(profile.name, profile.grpc_url))
        group.using_profile = profile.name
        client: GrpcProtocolClient = GrpcProtocolClient(pysui_config=cfg)
    if not profile.tls:
        host, port = profile.grpc_url.rsplit(":", 1)
        client._channel.close()
        client._channel = grpclib.client.Channel(host, int(port), ssl=False)
    return client


# -- objects as the node returns them --------------------------------------------------------


def norm(addr: str) -> str:
    """An address or object ID in Sui's canonical form: 0x and 64 lowercase hex digits."""
    return "0x" + addr.removeprefix("0x").rjust(64, "0").lower()


def contents(obj: pb.Object) -> bytes:
    """The object's Move value, BCS.

    Raises:
        ChainError: the object came without its contents.
    """
    if obj.contents is None or obj.contents.value is None:
        raise errors.ChainError(f"object {obj.object_id} came without its contents")
    return bytes(obj.contents.value)


def shared_version(obj: pb.Object) -> int:
    """The version a shared object was shared at (what a transaction names it by).

    Raises:
        ChainError: the object is not shared.
    """
    if obj.owner is None or obj.owner.version is None:
        raise errors.ChainError(f"object {obj.object_id} is not a shared object")
    return int(obj.owner.version)


def object_ref(obj: pb.Object) -> ObjectRef:
    return ObjectRef(obj.object_id or "", int(obj.version or 0), obj.digest or "")


# -- failures --------------------------------------------------------------------------------


def raise_rpc_error(profile: NetworkProfile, detail: Any, executing: bool) -> NoReturn:
    """Map a failed RPC by its gRPC status (pysui hands back `GRPCError.args`).

    Args:
        executing: the RPC executes or simulates a transaction, where INVALID_ARGUMENT and
            FAILED_PRECONDITION mean the chain refused it rather than a malformed request.

    Raises:
        ChainUnavailable: UNAVAILABLE or DEADLINE_EXCEEDED.
        ObjectNotFound: NOT_FOUND.
        TransactionRejected: INVALID_ARGUMENT or FAILED_PRECONDITION while `executing`.
        ChainError: any other status.
    """
    parts = detail if isinstance(detail, tuple | list) else (detail,)
    status = parts[0] if parts and isinstance(parts[0], GRPCStatus) else None
    message = str(parts[1] if status is not None and len(parts) > 1 else parts[0])
    if status in (GRPCStatus.UNAVAILABLE, GRPCStatus.DEADLINE_EXCEEDED):
        raise errors.ChainUnavailable(
            f"cannot reach the Sui endpoint {profile.grpc_url}: {message}"
        )
    if status == GRPCStatus.NOT_FOUND:
        raise errors.ObjectNotFound(message)
    if executing and status in (GRPCStatus.INVALID_ARGUMENT, GRPCStatus.FAILED_PRECONDITION):
        raise errors.TransactionRejected(message)
    name = status.name if status is not None else "error"
    raise errors.ChainError(f"the Sui endpoint {profile.grpc_url} answered {name}: {message}")


def raise_execution_error(digest: str, error: pb.ExecutionError | None) -> NoReturn:
    """Map an executed transaction's failure: a Move abort by its location and code.

    Raises:
        MoveAbortError: an abort; the subclass of `ABORT_CLASSES` when the abort is one.
        TransactionFailed: any other failure (or `error` None: the kind is UNKNOWN).
    """
    if error is None:
        raise errors.TransactionFailed(f"transaction {digest} failed", digest, "UNKNOWN")
    kind = error.kind.name if error.kind is not None else "UNKNOWN"
    if error.abort is not None:
        location = error.abort.location
        module = location.module if location and location.module else "?"
        function = location.function_name if location and location.function_name else "?"
        code = int(error.abort.abort_code or 0)
        known = aborts.by_location(module, code)
        name = known.name if known else None
        cls = ABORT_CLASSES.get(known, errors.MoveAbortError) if known else errors.MoveAbortError
        raise cls(
            f"transaction {digest} aborted in {module}::{function} with code {code}"
            + (f" ({name})" if name else "")
            + f": {error.description}",
            digest,
            module=module,
            function=function,
            code=code,
            name=name,
        )
    raise errors.TransactionFailed(
        f"transaction {digest} failed ({kind}): {error.description}", digest, kind
    )
