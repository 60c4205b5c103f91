"""Run asyncio code (pysui's gRPC client) from trio (the mount) without blocking either.

pysui is built on asyncio (grpclib); the mount must run on trio (pyfuse3). The two loops cannot
share a thread, so pysui lives on one asyncio loop in one dedicated thread for the life of the
process, and trio tasks hand it coroutines:

    bridge = AsyncioThread()            # starts the thread and its loop
    result = await bridge.run(client.execute(command=...))   # from trio
    result = bridge.run_sync(coro, timeout=30)               # from plain threads / the CLI
    bridge.close()

`run` waits on a trio Event, so the trio loop keeps serving FUSE requests meanwhile; cancelling
the trio task cancels the asyncio task too (no orphan RPC keeps running).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")
log = logging.getLogger(__name__)


class BridgeClosed(RuntimeError):
    """The asyncio thread has been closed; no more calls can be made."""


class AsyncioThread:
    """One asyncio event loop running forever in a daemon thread."""

    def __init__(self, name: str = "walrusfs-asyncio") -> None:
        self._loop = asyncio.new_event_loop()
        self._closed = False
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name=name, daemon=True)
        self._thread.start()
        ready.wait()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule `coro` on the loop; the future of its result.

        Raises:
            BridgeClosed: the thread is closed (`coro` is closed unrun).
        """
        if self._closed:
            coro.close()
            raise BridgeClosed("the asyncio thread is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the asyncio thread from a trio task. What `coro` raises propagates;
        cancelling the trio task cancels `coro` too.

        Raises:
            BridgeClosed: the thread is closed.
        """
        future = self.submit(coro)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: concurrent.futures.Future[T]) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                # the trio run that asked has ended: nobody is left to take the result
                log.debug("an asyncio call finished after its trio run ended")

        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            if not future.done():
                future.cancel()  # also cancels the asyncio task
        return future.result()

    def run_sync(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run `coro` on the asyncio thread and block this (non-async) thread for the result.

        Args:
            timeout: seconds to wait; None waits as long as `coro` runs.

        Raises:
            TimeoutError: `coro` did not finish in time (it is cancelled).
            BridgeClosed: the thread is closed.
        """
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"asyncio call did not finish within {timeout} s") from None

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is still running, stop the loop and join the thread."""
        if self._closed:
            return
        self._closed = True

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        self._loop.close()

    def __enter__(self) -> AsyncioThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
