"""SubscriptionService: every checkpoint, in order, as the chain records it.

Subscribers wait on futures that `announce` resolves when the ledger records a checkpoint;
the ledger commits on another thread, so the server schedules `announce` onto its asyncio
loop, and because every handler runs on that one loop the waiter list needs no lock. Waiting
subscribers also tick the wall-clock epoch at its boundary, so a follower learns of an epoch
change even when no request arrives.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpclib.const
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from grpclib.exceptions import GRPCError

from chain.localnet import masks
from chain.localnet.ledger_service import LedgerService
from chain.localnet.node import Localnet


class SubscriptionService:
    """`sui.rpc.v2.SubscriptionService` over one stand-in chain; checkpoints are rendered by
    the ledger service."""

    def __init__(self, net: Localnet, ledger: LedgerService) -> None:
        self.net = net
        self.ledger = ledger
        self._tip = net.ledger.checkpoint()  # the newest checkpoint subscribers were told of
        self._waiters: list[asyncio.Future[None]] = []

    def announce(self) -> None:
        """Wake the subscribers if the chain has checkpoints they have not been sent (on the
        loop: `LocalnetServer` schedules it for every transaction the ledger records)."""
        tip = self.net.ledger.checkpoint()
        if tip == self._tip:
            return
        self._tip = tip
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _tip_after(self, seq: int) -> int:
        """The newest checkpoint once it is past `seq`. Waiting subscribers also drive the
        wall-clock epochs: at the next epoch's start they tick, which records the epoch change
        as a checkpoint (no request needs to arrive for a follower to learn of it)."""
        while (tip := self.net.ledger.checkpoint()) <= seq:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            due = self.net.next_epoch_ms()
            timeout = None if due is None else max(0.0, due / 1000 - time.time()) + 0.01
            try:
                await asyncio.wait_for(waiter, timeout)
            except TimeoutError:
                self.net.tick()
        return tip

    async def subscribe_checkpoints(self, stream: Any) -> None:
        """Every checkpoint, in order and without gaps, from the tip at the time of the call
        (the first frame), until the client goes away. Filters are not implemented.

        Raises:
            GRPCError: UNIMPLEMENTED for a filter, INVALID_ARGUMENT for a bad read mask.
        """
        request: pb.SubscribeCheckpointsRequest = await stream.recv_message()
        if request.filter is not None:
            raise GRPCError(grpclib.const.Status.UNIMPLEMENTED, "checkpoint filters")
        try:
            mask = masks.tree_for("SubscribeCheckpoints", request.read_mask, pb.Checkpoint)
        except masks.InvalidReadMask as exc:
            raise GRPCError(grpclib.const.Status.INVALID_ARGUMENT, str(exc)) from None
        self.net.tick()
        cursor = self.net.ledger.checkpoint()
        await stream.send_message(self._frame(cursor, mask))
        while True:
            tip = await self._tip_after(cursor)
            for seq in range(cursor + 1, tip + 1):
                await stream.send_message(self._frame(seq, mask))
            cursor = tip

    def _frame(self, seq: int, mask: masks.MaskTree) -> pb.SubscribeCheckpointsResponse:
        return pb.SubscribeCheckpointsResponse(
            cursor=seq, checkpoint=masks.apply(self.ledger.checkpoint(seq), mask)
        )
