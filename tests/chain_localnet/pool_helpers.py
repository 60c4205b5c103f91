"""What the storage-pool tests of the stand-in share (test_chain_localnet_pools.py): one Move
call in a PTB built with `chain.ptb.Ptb` and run by the chain client, the pool transactions
the tests repeat, and raw gRPC reads (GetObject, ListDynamicFields, GetTransaction) that see
the objects as a full node's client does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpclib.client
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from pysui.sui.sui_grpc.suimsgs import google

from chain import pool_types as pt
from chain.client import SystemInfo, WalrusChain
from chain.ptb import Ptb
from chain.records import TxResult
from tests.chain_localnet.helpers import USER, Encoded, _quorum
from tests.localnet_harness import LocalTestnet

T = TypeVar("T")

SYS = "system (&System)"
SYS_MUT = "system (&mut System)"
WAL = "the wallet's WAL"

OBJECT_FIELDS = (
    "object_id",
    "version",
    "owner",
    "object_type",
    "has_public_transfer",
    "contents",
)
FIELD_FIELDS = (
    "kind",
    "parent",
    "field_id",
    "name",
    "value",
    "value_type",
    "child_id",
    "field_object",
    "child_object",
)


@dataclass(frozen=True)
class Owned:
    """An owned object argument, referenced at its current version."""

    id: str


async def call(
    chain: WalrusChain,
    tn: LocalTestnet,
    module: str,
    function: str,
    args: list[Any],
    *,
    keep: bool = False,
) -> TxResult:
    """One `module::function` call. `args`: SYS, SYS_MUT, WAL, `Owned(id)`, or
    `(ptb method, value)` for a pure value (`("u64", 5)`); `keep`: transfer its result to
    USER."""
    refs = {a.id: await chain.object_ref(a.id) for a in args if isinstance(a, Owned)}

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        out: list[Any] = []
        for a in args:
            if a in (SYS, SYS_MUT):
                sys_id = tn.profile.system_object
                out.append(ptb.shared(sys_id, info.system_initial_version, a == SYS_MUT))
            elif a == WAL:
                out.append(wal)
            elif isinstance(a, Owned):
                out.append(ptb.owned(refs[a.id]))
            else:
                out.append(getattr(ptb, a[0])(a[1]))
        result = ptb.move_call(info.package_id, module, function, out)
        if keep:
            ptb.transfer([result], USER.address)

    return await chain.execute_ptb(build, wal_needed=1 if WAL in args else None)


def events(result: TxResult, name: str) -> list[bytes]:
    return [bcs for type_, bcs in result.events if type_.endswith(f"::events::{name}")]


def created(result: TxResult, short_type: str) -> list[str]:
    return [o.id if hasattr(o, "id") else o.object_id for o in result.created.get(short_type, [])]


async def create_pool(chain: WalrusChain, tn: LocalTestnet, capacity: int, epochs: int) -> str:
    result = await call(
        chain,
        tn,
        "system",
        "create_storage_pool",
        [SYS_MUT, ("u64", capacity), ("u32", epochs), WAL],
        keep=True,
    )
    (pool_id,) = created(result, "storage_pool::StoragePool")
    return pool_id


async def register(
    chain: WalrusChain,
    tn: LocalTestnet,
    pool_id: str,
    enc: Encoded,
    deletable: bool = True,
    blob_id: int | None = None,
) -> str:
    """Register `enc` in the pool; the new PooledBlob's object ID (from its event)."""
    result = await call(
        chain,
        tn,
        "system",
        "register_pooled_blob",
        [
            SYS_MUT,
            Owned(pool_id),
            ("u256", enc.blob_id.to_u256() if blob_id is None else blob_id),
            ("u256", enc.root_hash),
            ("u64", len(enc.data)),
            ("u8", 1),
            ("boolean", deletable),
            WAL,
        ],
    )
    (event,) = events(result, "PooledBlobRegistered")
    return pt.PooledBlobRegistered.from_bcs(event).object_id


async def certify(
    chain: WalrusChain,
    tn: LocalTestnet,
    pool_id: str,
    blob_id: int,
    certified_blob_id: int | None = None,
    object_id: str | None = None,
) -> TxResult:
    """Certify the pool's blob `blob_id` with a quorum's signature over a message for
    `certified_blob_id` (default: the same), deletable with `object_id` if given."""
    raw = (blob_id if certified_blob_id is None else certified_blob_id).to_bytes(32, "little")
    sig, bitmap, msg = tn.confirm(raw, _quorum(tn), object_id=object_id)
    return await call(
        chain,
        tn,
        "system",
        "certify_pooled_blob",
        [
            SYS,
            Owned(pool_id),
            ("u256", blob_id),
            ("byte_vector", sig),
            ("byte_vector", bitmap),
            ("byte_vector", msg),
        ],
    )


# -- raw gRPC reads ----------------------------------------------------------------------------


async def _rpc(tn: LocalTestnet, exchange: Callable[[grpclib.client.Channel], Awaitable[T]]) -> T:
    async def go() -> T:
        channel = grpclib.client.Channel("127.0.0.1", tn.server.port)
        try:
            return await exchange(channel)
        finally:
            channel.close()

    return await trio.to_thread.run_sync(asyncio.run, go())


def _mask(paths: tuple[str, ...]) -> Any:
    return google.protobuf.FieldMask(paths=list(paths))


async def get_object(tn: LocalTestnet, object_id: str) -> pb.Object | None:
    """GetObject; None when the node answers NOT_FOUND."""

    async def exchange(ch: grpclib.client.Channel) -> pb.Object | None:
        request = pb.GetObjectRequest(object_id=object_id, read_mask=_mask(OBJECT_FIELDS))
        try:
            return (await pb.LedgerServiceStub(ch).get_object(request)).object
        except GRPCError as exc:
            if exc.status == Status.NOT_FOUND:
                return None
            raise

    return await _rpc(tn, exchange)


async def list_fields(tn: LocalTestnet, parent: str) -> list[pb.DynamicField]:
    async def exchange(ch: grpclib.client.Channel) -> list[pb.DynamicField]:
        request = pb.ListDynamicFieldsRequest(parent=parent, read_mask=_mask(FIELD_FIELDS))
        return (await pb.StateServiceStub(ch).list_dynamic_fields(request)).dynamic_fields

    return await _rpc(tn, exchange)


async def list_owned(tn: LocalTestnet, owner: str, object_type: str) -> list[pb.Object]:
    async def exchange(ch: grpclib.client.Channel) -> list[pb.Object]:
        request = pb.ListOwnedObjectsRequest(
            owner=owner, object_type=object_type, read_mask=_mask(OBJECT_FIELDS)
        )
        return (await pb.StateServiceStub(ch).list_owned_objects(request)).objects

    return await _rpc(tn, exchange)


async def abort_location(tn: LocalTestnet, digest: str) -> pb.MoveLocation:
    """Where the failed transaction `digest` aborted (package, module, function)."""

    async def exchange(ch: grpclib.client.Channel) -> pb.GetTransactionResponse:
        request = pb.GetTransactionRequest(digest=digest, read_mask=_mask(("effects",)))
        return await pb.LedgerServiceStub(ch).get_transaction(request)

    reply = await _rpc(tn, exchange)
    assert reply.transaction is not None and reply.transaction.effects is not None
    status = reply.transaction.effects.status
    assert status is not None and status.error is not None and status.error.abort is not None
    location = status.error.abort.location
    assert location is not None
    return location


def contents(obj: pb.Object | None) -> bytes:
    assert obj is not None and obj.contents is not None and obj.contents.value is not None
    return bytes(obj.contents.value)


async def pool_state(tn: LocalTestnet, pool_id: str) -> pt.PoolState:
    """The pool and its inner-state field, read over gRPC."""
    root = pt.StoragePool.from_bcs(contents(await get_object(tn, pool_id)))
    field = contents(await get_object(tn, pt.pool_inner_id(pool_id, root.version)))
    inner = pt.StoragePoolInnerV1.from_bcs(field[32 + 8 :])
    return pt.PoolState(root.id, root.version, inner)
