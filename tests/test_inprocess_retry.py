"""The uploader's retry policy, in process on trio's autojump clock (tests/fakes.py): which
failures pause every upload and which only their own chunks, the back-off (15 s doubling,
at most 5 minutes), and what a quilt the codec refuses becomes. Each test ends with fsck's
database check."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import trio

from chain import errors as chain_errors
from tests.fakes import Fault, Volume, open_volume
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.uploader import SCAN_INTERVAL

pytestmark = pytest.mark.trio

KiB = 1 << 10
CONFIG = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, retry_after=15.0, compact_below=0.0)
#: how late after its due time a retry may start: the uploader looks at least once a second
#: (and at most every SCAN_INTERVAL)
SLACK = 1.0 + SCAN_INTERVAL + 0.1


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def settle(v: Volume, timeout: float = 7200.0) -> None:
    with trio.fail_after(timeout):
        while v.uploader.pending()[0] or v.uploader.inflight:
            await trio.sleep(0.5)


async def test_a_failing_network_backs_off_doubling_up_to_five_minutes(
    tmp_path: Path, autojump_clock
) -> None:
    """Every attempt fails (nodes unreachable) eight times, then the network is back: the
    attempts are 15, 30, 60, 120, 240 s apart, then 300 s (the cap), each no later than one
    scan after it is due; then the file is certified once and the failure state clears."""
    body = data(100 * KiB, 1)
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.faults += [Fault(wp.WorkerError("nodes unreachable")) for _ in range(8)]
        inode = await v.create(b"f", body)
        await settle(v)
        times = [r.at for r in v.worker.requests]
        assert len(times) == 9
        gaps = [b - a for a, b in itertools.pairwise(times)]
        for gap, due in zip(gaps, [15, 30, 60, 120, 240, 300, 300, 300], strict=True):
            assert due <= gap <= due + SLACK, (gaps, due)
        assert v.uploader.stats.failures == 8
        assert not v.uploader.stats.failing and v.uploader.stats.last_error == "nodes unreachable"
        assert len(v.worker.registered()) == 1
        assert await v.read(inode) == body


@pytest.mark.parametrize(
    ("exc", "everyone"),
    [
        (wp.WorkerError("nodes unreachable"), True),
        (chain_errors.InsufficientWal("not enough WAL", 5000, 10), True),
        (wp.DataError("ValueError: the codec refuses these bytes"), False),
    ],
    ids=["temporary", "no-wal", "data"],
)
async def test_only_failures_every_upload_meets_pause_the_others(
    tmp_path: Path, autojump_clock, exc: Exception, everyone: bool
) -> None:
    """Two large files written together, uploaded one at a time; the first upload fails. A
    failure every upload would meet now (the network, the wallet) pauses the other file too,
    for the back-off; one that is this file's own (DataError: its bytes cannot be stored as
    asked) does not: the other uploads at once. Both end up certified."""
    config = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, jobs=1, compact_below=0.0)
    bodies = [data(100 * KiB, 1), data(100 * KiB, 2)]
    async with open_volume(tmp_path, config=config) as v:
        v.worker.faults.append(Fault(exc))
        inodes = [await v.create(f"f{i}".encode(), b) for i, b in enumerate(bodies)]
        await settle(v)
        first, second, third = (r.at for r in v.worker.requests)
        if everyone:
            assert 15 <= second - first <= 15 + SLACK
        else:
            assert second - first <= SLACK  # the other file went on
            assert 15 <= third - first <= 15 + SLACK  # the refused one waited its back-off
        if isinstance(exc, chain_errors.InsufficientWal):
            assert v.uploader.stats.short is None  # cleared by the upload that went through
        assert len(v.worker.registered()) == 2
        for inode, body in zip(inodes, bodies, strict=True):
            assert await v.read(inode) == body


async def test_a_quilt_the_codec_refuses_is_split_down_to_what_it_takes(
    tmp_path: Path, autojump_clock
) -> None:
    """The worker refuses quilts of more than two files (DataError, before paying): the
    planned quilt of six is split in halves until each part is taken, within the same job (no
    failure, no back-off), and no refused quilt cost a registration."""
    bodies = [data(500 + 300 * i, i) for i in range(6)]
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.max_quilt = 2
        inodes = [await v.create(f"s{i}".encode(), b) for i, b in enumerate(bodies)]
        await v.sync()
        sizes = [len(r.idents) for r in v.worker.uploads()]
        assert sizes == [6, 3, 1, 2, 3, 1, 2]
        assert v.uploader.stats.failures == 0
        assert len(v.worker.registered("quilt")) == 4 and not v.worker.registered("data")
        for inode, body in zip(inodes, bodies, strict=True):
            ((_, staged, _, patch, _),) = v.chunks(inode)
            assert not staged and patch is not None
            assert v.store.patches[patch].data == body


async def test_a_single_file_quilt_the_codec_refuses_becomes_a_blob(
    tmp_path: Path, autojump_clock
) -> None:
    """Even a quilt of one file refused (a codec limit): the file is stored as a blob of its
    own rather than retried as the same quilt forever."""
    body = data(2000, 5)
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.max_quilt = 0
        inode = await v.create(b"s", body)
        await v.sync()
        assert [r.op for r in v.worker.uploads()] == ["quilt", "blob"]
        assert v.uploader.stats.failures == 0
        ((_, staged, _, patch, length),) = v.chunks(inode)
        assert not staged and patch is None and length == len(body)
        v.content.stored.forget_memory()
        assert await v.read(inode) == body
