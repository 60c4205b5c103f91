"""One chain client for every storage-node identity a devnet process serves.

A devnet of 120 nodes runs as a few processes, each serving many node identities (their own
keys, ports, disks). Each identity follows the chain as a Walrus node does, but asking the
stand-in 120 times for every checkpoint's events, the latest checkpoint and the committee
would cost the chain more than the nodes' work. `SharedChain` answers the calls the node
makes from one `WalrusChain` per process:

* `checkpoint_events(seq)`: a checkpoint never changes, so each is fetched once (LRU).
* `latest_checkpoint()`: concurrent callers share one request that started after they asked
  (so a caller never gets an answer older than its call: a node that catches up to find a
  registration a client just made sees it).
* `system_info()`, `committees()`: kept while no newer checkpoint is known and for at most a
  second, shared the same way; every change of them is a transaction, hence a checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

import grpclib.client
import grpclib.const
import grpclib.exceptions
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import trio
from cachetools import LRUCache

from chain.client import ChainEvent, SystemInfo, WalrusChain
from chain.errors import ChainError, ChainUnavailable
from chain.localnet.admin_service import EPOCH_SYNC_DONE_PATH
from walrusfs.store.nodes import ActiveCommittees

T = TypeVar("T")
#: how long a committee or System read is reused when no newer checkpoint is known
STATE_MEMORY = 1.0


class _Memo(Generic[T]):
    """A value read from the chain, good while no checkpoint past the one it was read at is
    known (and for at most `ttl` seconds); concurrent readers share one read."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], ttl: float) -> None:
        self.fetch = fetch
        self.ttl = ttl
        self.value: T | None = None
        self.seq = -1
        self.at = 0.0
        self.flight: trio.Event | None = None
        self.flight_seq = -1

    async def get(self, seq: int) -> T:
        while True:
            if self.value is not None and self.seq >= seq and time.monotonic() - self.at < self.ttl:
                return self.value
            if self.flight is not None:
                await self.flight.wait()
                continue  # the value it read (if it read one) is checked above
            self.flight = done = trio.Event()
            self.flight_seq = seq
            try:
                value = await self.fetch()
                self.value, self.seq, self.at = value, seq, time.monotonic()
                return value
            finally:
                self.flight = None
                done.set()


class SharedChain:
    """The subset of `WalrusChain` a storage node uses, shared by a process's identities."""

    def __init__(self, chain: WalrusChain) -> None:
        self.chain = chain
        self.seen = 0  # the newest checkpoint any call has learned of
        self._events: LRUCache[tuple[int, str], list[ChainEvent] | None] = LRUCache(256)
        self._event_flights: dict[tuple[int, str], trio.Event] = {}
        self._gen = 0  # latest_checkpoint requests started so far
        self._latest_flight: tuple[int, trio.Event] | None = None
        self._latest = 0
        self._latest_ok = 0  # the request whose answer `_latest` holds
        self._system: _Memo[SystemInfo] = _Memo(chain.system_info, STATE_MEMORY)
        self._committees: _Memo[ActiveCommittees] = _Memo(
            lambda: ActiveCommittees.load(chain), STATE_MEMORY
        )

    async def close(self) -> None:
        await self.chain.close()

    def checkpoint_stream(self) -> AsyncGenerator[int]:
        return self.chain.checkpoint_stream()

    async def latest_checkpoint(self) -> int:
        want = self._gen + 1  # an answer from a request that starts from now on
        while True:
            flight = self._latest_flight
            if flight is None:
                break
            gen, done = flight
            await done.wait()
            if gen >= want and self._latest_ok == gen:
                return self._latest
            # older than our call, or it failed: ask (or join a newer request)
        self._gen += 1
        gen = self._gen
        done = trio.Event()
        self._latest_flight = (gen, done)
        try:
            latest = await self.chain.latest_checkpoint()
            self._latest = max(self._latest, latest)
            self._latest_ok = gen
            self.seen = max(self.seen, latest)
            return latest
        finally:
            self._latest_flight = None
            done.set()

    async def checkpoint_events(self, seq: int, package: str) -> list[ChainEvent] | None:
        key = (seq, package)
        while True:
            if key in self._events:
                return self._events[key]
            flight = self._event_flights.get(key)
            if flight is None:
                break
            await flight.wait()
            if key not in self._events:
                break  # that request failed: ask ourselves
        self._event_flights[key] = done = trio.Event()
        try:
            events = await self.chain.checkpoint_events(seq, package)
            if events is not None:  # None: not yet executed; ask again later
                self._events[key] = events
                self.seen = max(self.seen, seq)
            return events
        finally:
            del self._event_flights[key]
            done.set()

    async def system_info(self) -> SystemInfo:
        return await self._system.get(self.seen)

    async def committees(self) -> ActiveCommittees:
        return await self._committees.get(self.seen)

    async def epoch_sync_done(self, node_id: str, epoch: int, signature: bytes) -> None:
        """Attest, for node `node_id`, that it holds every shard of `epoch` (the devnet's
        admin stand-in for `staking::epoch_sync_done`; `chain/localnet/node.py`).

        Args:
            signature: the node's BLS signature of `sync_done_message(node_id, epoch)`.

        Raises:
            ChainError: the chain refused (another epoch, not a member, attested already,
                a bad signature).
            ChainUnavailable: the chain could not be reached.
        """
        host, _, port = self.chain.profile.grpc_url.rpartition(":")

        async def call() -> None:
            channel = grpclib.client.Channel(host, int(port))
            try:
                async with channel.request(
                    EPOCH_SYNC_DONE_PATH,
                    grpclib.const.Cardinality.UNARY_UNARY,
                    pb.Bcs,
                    pb.GetEpochResponse,
                    timeout=10,
                ) as stream:
                    value = epoch.to_bytes(4, "little") + signature
                    await stream.send_message(pb.Bcs(name=node_id, value=value), end=True)
                    await stream.recv_message()
            finally:
                channel.close()

        try:
            await self.chain._run(call())
        except grpclib.exceptions.GRPCError as exc:
            raise ChainError(f"epoch_sync_done: {exc.message}") from None
        except OSError as exc:
            raise ChainUnavailable(f"epoch_sync_done: {exc}") from None
