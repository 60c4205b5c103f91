"""Following the chain by checkpoint: the tip, a checkpoint's Walrus events, and the stream
of new checkpoints that storage nodes wait on instead of polling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncGenerator

import pysui.sui.sui_grpc.pgrpc_requests as rq
import trio

from chain import errors
from chain import read_masks as masks
from chain.records import ChainEvent
from chain.transport import STREAM_ERRORS, Transport, norm

log = logging.getLogger(__name__)


async def latest_checkpoint(rpc: Transport) -> int:
    """The sequence number of the newest checkpoint (on the asyncio thread)."""
    reply = await rpc.call(rq.GetLatestCheckpoint(field_mask=list(masks.CHECKPOINT_NUMBER)))
    return int(reply.checkpoint.sequence_number or 0)


async def checkpoint_events(rpc: Transport, seq: int, package: str) -> list[ChainEvent] | None:
    """The events that `package`'s modules emitted in checkpoint `seq` (None: not yet), on
    the asyncio thread.

    Only events of the given package count: anyone can publish a module with a struct
    named `BlobRegistered`, so a follower must filter by the Walrus type package."""
    try:
        reply = await rpc.call(
            rq.GetCheckpointBySequence(
                sequence_number=seq, field_mask=list(masks.CHECKPOINT_EVENTS)
            )
        )
    except errors.ObjectNotFound:
        return None
    out: list[ChainEvent] = []
    for tx in reply.checkpoint.transactions:
        for index, event in enumerate(tx.events.events if tx.events else []):
            type_ = event.event_type or ""
            if norm(type_.split("::", 1)[0]) != norm(package):
                continue
            bcs = bytes(event.contents.value or b"") if event.contents else b""
            out.append(ChainEvent(seq, tx.digest or "", index, type_, bcs))
    return out


async def checkpoint_stream(rpc: Transport) -> AsyncGenerator[int]:
    """The sequence number of every checkpoint from the chain's tip on, as it is executed
    (`SubscriptionService.SubscribeCheckpoints`), iterated from trio. Never ends by itself;
    a broken stream raises `ChainUnavailable`.

    The subscription runs on the asyncio thread and hands each frame to the trio loop that
    iterates; leaving the iteration cancels it.

    Raises:
        ChainUnavailable: the stream broke or ended.
        ChainError: the subscription was refused.
    """
    token = trio.lowlevel.current_trio_token()
    frames, inbox = trio.open_memory_channel[tuple[int, BaseException | None]](math.inf)

    def send(item: tuple[int, BaseException | None]) -> None:
        # a frame that arrives after the consumer left (the process is stopping) is dropped:
        # raised inside trio's run_sync_soon callback, the error would be a TrioInternalError
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            frames.send_nowait(item)

    def deliver(item: tuple[int, BaseException | None]) -> None:
        try:
            token.run_sync_soon(send, item)
        except trio.RunFinishedError:
            log.debug("a checkpoint frame arrived after its trio run ended")

    async def pump() -> None:
        failure: BaseException
        try:
            client = await rpc.grpc()
            result = await client.execute_grpc_request(
                request=rq.SubscribeCheckpoints(field_mask=list(masks.CHECKPOINT_NUMBER))
            )
            if not result.is_ok():
                raise errors.ChainError(f"cannot subscribe: {result.result_string}")
            async for frame in result.result_data:
                deliver((int(frame.cursor or 0), None))
            failure = errors.ChainUnavailable("the checkpoint stream ended")
        except asyncio.CancelledError:
            raise
        except STREAM_ERRORS as exc:
            failure = errors.ChainUnavailable(
                f"checkpoint stream from {rpc.profile.grpc_url}: {exc}"
            )
        except errors.ChainError as exc:
            failure = exc
        deliver((-1, failure))

    future = rpc.bridge.submit(pump())
    try:
        async with inbox:
            async for seq, failure in inbox:
                if failure is not None:
                    raise failure
                yield seq
    finally:
        future.cancel()
