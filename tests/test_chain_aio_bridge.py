"""The asyncio thread that hosts pysui, driven from trio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import trio

from chain.aio_bridge import AsyncioThread, BridgeClosed


@pytest.fixture
def bridge() -> Iterator[AsyncioThread]:
    with AsyncioThread() as b:
        yield b


async def _answer(value: int, delay: float = 0.0) -> tuple[int, str]:
    await asyncio.sleep(delay)
    return value, threading.current_thread().name


@pytest.mark.trio
async def test_result_comes_back_from_the_asyncio_thread(bridge: AsyncioThread) -> None:
    value, thread = await bridge.run(_answer(42))
    assert value == 42
    assert thread == "walrusfs-asyncio"


@pytest.mark.trio
async def test_exceptions_keep_their_type(bridge: AsyncioThread) -> None:
    async def fail() -> None:
        raise ConnectionRefusedError("node down")

    with pytest.raises(ConnectionRefusedError, match="node down"):
        await bridge.run(fail())


@pytest.mark.trio
async def test_trio_loop_keeps_running_during_a_slow_call(bridge: AsyncioThread) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await bridge.run(_answer(1, delay=0.3))
        nursery.cancel_scope.cancel()
    assert ticks >= 10  # the trio loop was not blocked for the 0.3 s


@pytest.mark.trio
async def test_cancelling_the_trio_task_cancels_the_asyncio_task(bridge: AsyncioThread) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with trio.move_on_after(0.2):
        await bridge.run(slow())
    assert started.is_set()
    assert await trio.to_thread.run_sync(cancelled.wait, 5)


def test_run_sync_and_timeout(bridge: AsyncioThread) -> None:
    assert bridge.run_sync(_answer(7))[0] == 7
    with pytest.raises(TimeoutError, match=r"within 0\.05 s"):
        bridge.run_sync(_answer(1, delay=5), timeout=0.05)


def test_closed_bridge_refuses_calls() -> None:
    b = AsyncioThread()
    pending = b.submit(_answer(1, delay=30))
    b.close()
    assert pending.cancelled()
    assert not b._thread.is_alive()
    with pytest.raises(BridgeClosed):
        b.run_sync(_answer(1))
