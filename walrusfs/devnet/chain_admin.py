"""The launcher's calls to the Sui stand-in: its epoch, and the admin methods only the devnet
has (start the next epoch, set a node's stake, invalidate a blob ID).

Each is one unary gRPC call on the stand-in's port, made from synchronous launcher code (the
CLI), hence an `asyncio.run` per call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpclib.client
import grpclib.const
import grpclib.exceptions
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain.localnet.admin_service import ADVANCE_EPOCH_PATH, INVALIDATE_BLOB_PATH, SET_STAKE_PATH
from walrusfs.devnet.layout import DevnetSpec
from walrusfs.errors import ServiceError


def chain_call(
    spec: DevnetSpec, path: str, request: Any, request_type: Any = pb.GetEpochRequest
) -> Any:
    """One unary call of `path` on the devnet's chain; the reply is a `GetEpochResponse`.

    Raises:
        ServiceError: the chain refused, or could not be reached within 10 s.
    """

    async def call() -> Any:
        channel = grpclib.client.Channel("127.0.0.1", spec.sui_port)
        try:
            async with channel.request(
                path,
                grpclib.const.Cardinality.UNARY_UNARY,
                request_type,
                pb.GetEpochResponse,
                timeout=10,
            ) as stream:
                await stream.send_message(request, end=True)
                return await stream.recv_message()
        finally:
            channel.close()

    try:
        return asyncio.run(call())
    except grpclib.exceptions.GRPCError as exc:
        raise ServiceError(f"the devnet chain refused: {exc.message}") from None
    except (OSError, TimeoutError) as exc:
        raise ServiceError(f"the devnet chain on port {spec.sui_port}: {exc}") from None


def chain_epoch(spec: DevnetSpec) -> int | None:
    """The chain's epoch, or None when it does not answer."""
    try:
        reply = chain_call(spec, "/sui.rpc.v2.LedgerService/GetEpoch", pb.GetEpochRequest())
    except ServiceError:
        return None
    return int(reply.epoch.epoch or 0)


def advance_epoch(spec: DevnetSpec, count: int) -> int:
    """Start the next epoch now, `count` times; the epoch reached.

    Raises:
        ServiceError: refused while the previous epoch change is still moving shards.
    """
    reply = chain_call(spec, ADVANCE_EPOCH_PATH, pb.GetEpochRequest(epoch=count))
    return int(reply.epoch.epoch or 0)


def invalidate_blob(spec: DevnetSpec, blob_id_raw: bytes) -> None:
    """Mark the blob ID (32 raw bytes) invalid on the chain.

    Raises:
        ServiceError: refused (the ID is invalid already), or the chain did not answer.
    """
    chain_call(spec, INVALIDATE_BLOB_PATH, pb.Bcs(value=blob_id_raw), pb.Bcs)


def set_stake(spec: DevnetSpec, index: int, frost: int) -> None:
    """Set the stake of node `index`, in FROST, for the next epoch's committee.

    Raises:
        OverflowError: `frost` is not a u64.
        ServiceError: refused (no such node), or the chain did not answer.
    """
    request = pb.Bcs(name=f"node-{index}", value=frost.to_bytes(8, "little"))
    chain_call(spec, SET_STAKE_PATH, request, pb.Bcs)
