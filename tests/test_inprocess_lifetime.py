"""The checkpoint and renewal schedules, in process on trio's autojump clock
(tests/fakes.py): when a checkpoint is uploaded and retried, how many are kept, and how a
renewal that fails is retried before the blob's end epoch. Each test ends with fsck's
database check."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from chain.client import WalrusChain
from tests.fakes import END_EPOCH, FakeChain, Fault, open_volume
from walrusfs.fs import blobs
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.checkpoint import RETAIN
from walrusfs.fs.lifetime import Renewer, RenewPolicy
from walrusfs.fs.options import UploadConfig

pytestmark = pytest.mark.trio

KiB = 1 << 10
CONFIG = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, compact_below=0.0)


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait in real time (the mock clock stands still) until `condition` holds: a checkpoint
    runs its snapshot in a worker thread."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await trio.to_thread.run_sync(time.sleep, 0.005)


async def test_checkpoints_follow_changes_and_a_failed_one_is_retried_next_interval(
    tmp_path: Path, mock_clock: MockClock
) -> None:
    """Every 60 s a checkpoint is uploaded if the database changed: the first attempt fails
    (retried at the next interval, the error in status meanwhile), none while nothing
    changes, one after a change; the newest RETAIN stay in use, older ones become unused."""
    async with open_volume(tmp_path, config=CONFIG, run_uploader=False) as v:
        cp = v.checkpointer
        cp.interval = 60.0
        v.worker.faults.append(Fault(wp.WorkerError("nodes unreachable")))
        start = trio.current_time()

        async def at(t: float) -> None:
            mock_clock.jump(start + t - trio.current_time())
            await trio.testing.wait_all_tasks_blocked()

        async with trio.open_nursery() as nursery:
            await nursery.start(cp.run)
            await at(60)
            await until(lambda: cp.last_error == "nodes unreachable")
            assert cp.seq == 0
            await at(120)
            await until(lambda: cp.seq == 1)
            assert cp.last_error is None
            await at(180)
            await at(240)  # nothing changed: nothing uploaded
            assert len(v.worker.requests) == 2
            await v.create(b"a", b"x")
            await at(300)
            await until(lambda: cp.seq == 2)
            for i in range(RETAIN + 1):
                await v.create(f"b{i}".encode(), b"y")
                await at(360 + 60 * i)
                await until(lambda i=i: cp.seq == 3 + i)  # type: ignore[misc]
            nursery.cancel_scope.cancel()
        times = [r.at - start for r in v.worker.requests]
        assert times == [60, 120, 300, 360, 420, 480, 540]
        assert cp.seq == 6 and not cp.dirty()
        rows = [r for k, r in v.blob_rows().values() if k == blobs.CHECKPOINT]
        assert rows == [0, 0, 0, 1, 1, 1]  # seq 1..6: the newest RETAIN kept
        assert len(v.worker.registered("checkpoint")) == 6  # the failed one paid nothing


def status(renewer: Renewer) -> tuple[int | None, str | None, tuple[int, int | None]]:
    """What `walrusfs status` shows of renewals: the epoch, the last error, the blobs at risk
    (count, earliest end epoch)."""
    return renewer.epoch, renewer.last_error, renewer.expiring


async def test_a_failing_renewal_is_retried_and_extends_before_the_end_epoch(
    tmp_path: Path, autojump_clock
) -> None:
    """A blob ending at epoch 100, renewals 2 epochs ahead, 5 epochs at a time, a check
    every 10 minutes and an epoch every 10 minutes from 97. The wallet cannot pay at epoch
    98: the renewer says so (status: the error, the blob at risk) and tries again at the next
    check, which the funded wallet pays: the blob ends at 105, the file is safe."""
    body = random.Random(1).randbytes(100 * KiB)
    async with open_volume(tmp_path, config=CONFIG) as v:
        inode = await v.create(b"f", body)
        await v.sync()
        ((_, _, row, _, _),) = v.chunks(inode)
        assert row is not None
        (object_id,) = v.worker.registered("data")
        (checkpoint,) = v.worker.registered("checkpoint")  # sync took one: it ends at 100 too
        chain = FakeChain(97, 600.0)
        start = trio.current_time()
        chain.first = 97 - int(start // 600)  # epoch 97 now
        renewer = Renewer(
            v.db,
            v.worker,
            cast(WalrusChain, cast(Any, chain)),
            RenewPolicy(enabled=True, horizon=2, epochs=5),
            interval=600.0,
        )
        v.content.expired = renewer.expired
        v.worker.extend_fails.add(object_id)
        async with trio.open_nursery() as nursery:
            await nursery.start(renewer.run)
            await trio.sleep(300)
            # 3 epochs left: not due yet
            assert status(renewer) == (97, None, (0, None))
            await trio.sleep(600)  # the check at epoch 98 failed: both at risk, said why
            assert status(renewer) == (98, "not enough WAL to extend", (2, END_EPOCH))
            assert blobs.end_epoch(v.db, row) == END_EPOCH
            v.worker.extend_fails.clear()  # the wallet is funded
            await trio.sleep(600)  # the check at epoch 99
            nursery.cancel_scope.cancel()
        assert status(renewer) == (99, None, (0, None))
        assert sorted(v.worker.extended) == sorted([(object_id, 5), (checkpoint, 5)])
        assert blobs.end_epoch(v.db, row) == END_EPOCH + 5
        assert renewer.extended == 2
        v.content.stored.forget_memory()
        assert await v.read(inode) == body
