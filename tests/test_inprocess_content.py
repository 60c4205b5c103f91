"""Races inside Content, in process (tests/fakes.py): a chunk written, read or truncated by
one request while another request is copying it back from Walrus ("materialising" it) or
moving it from a small row into a file. Every await is a point where another request runs;
whichever order they take, the file must hold what the requests did, in order. Each test
ends with fsck's database check."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest
import trio

from cache import Key
from tests.fakes import Volume, open_volume
from walrusfs.fs.options import UploadConfig

pytestmark = pytest.mark.trio

KiB = 1 << 10
#: uploads only when synced: nothing moves under the test unless it says so
CONFIG = UploadConfig(delay=3600.0, quilt_threshold=4 * KiB, compact_below=0.0)


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def uploaded(v: Volume, name: bytes, body: bytes) -> int:
    """A file whose only chunk is stored as a blob, nothing of it staged or cached."""
    inode = await v.create(name, body)
    await v.sync()
    ((_, staged, blob, patch, _),) = v.chunks(inode)
    assert not staged and blob is not None and patch is None
    v.content.stored.forget_memory()
    v.store.reads.clear()
    return inode


async def while_fetching(v: Volume) -> None:
    """Hold the store's reads; return once a request is waiting for one."""
    v.store.hold = trio.Event()
    v.store.reading = trio.Event()
    await v.store.reading.wait()


def release_store(v: Volume) -> None:
    assert v.store.hold is not None
    hold, v.store.hold = v.store.hold, None
    hold.set()


async def test_truncate_while_a_write_materialises_the_chunk(
    tmp_path: Path, autojump_clock
) -> None:
    """A write into an uploaded chunk waits for its bytes from Walrus; meanwhile the file is
    truncated below the write's offset. The copy fetched before the truncate is stale: the
    write lands on the truncated bytes, zeros in between."""
    old = data(200 * KiB, 1)
    async with open_volume(tmp_path, config=CONFIG) as v:
        inode = await uploaded(v, b"f", old)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(v.write, inode, b"X", 150_000)
            await while_fetching(v)
            await v.truncate(inode, 100_000)
            release_store(v)
        assert await v.read(inode) == old[:100_000] + bytes(50_000) + b"X"
        await v.sync()
        v.content.stored.forget_memory()
        assert await v.read(inode) == old[:100_000] + bytes(50_000) + b"X"
        # the old blob is unused, the new one holds the chunk
        assert sorted(r for k, r in v.blob_rows().values() if k == "blob") == [0, 1]


async def test_an_o_trunc_rewrite_while_a_write_materialises_the_chunk(
    tmp_path: Path, autojump_clock
) -> None:
    """As above, with the file emptied by an open(O_TRUNC) and rewritten: the pending write
    must not bring the old bytes back."""
    old, new = data(200 * KiB, 1), data(1000, 2)
    async with open_volume(tmp_path, config=CONFIG) as v:
        inode = await uploaded(v, b"f", old)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(v.write, inode, b"X", 5000)
            await while_fetching(v)
            await v.write(inode, new, trunc=True)
            release_store(v)
        assert await v.read(inode) == new + bytes(4000) + b"X"
        await v.sync()
        v.content.stored.forget_memory()
        assert await v.read(inode) == new + bytes(4000) + b"X"


async def test_concurrent_writes_and_a_read_share_one_fetch(tmp_path: Path, autojump_clock) -> None:
    """Two writes into different places of an uploaded chunk and a read of it, all at once:
    the chunk is fetched once, the read sees the stored bytes, and both writes are kept."""
    old = data(200 * KiB, 1)
    async with open_volume(tmp_path, config=CONFIG) as v:
        inode = await uploaded(v, b"f", old)
        seen: list[bytes] = []

        async def read() -> None:
            seen.append(await v.read(inode))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(v.write, inode, b"A" * 10, 1000)
            await while_fetching(v)
            nursery.start_soon(v.write, inode, b"B" * 10, 190_000)
            nursery.start_soon(read)
            await trio.sleep(1)
            release_store(v)
        assert len(v.store.reads) == 1
        assert seen == [old]
        want = bytearray(old)
        want[1000:1010] = b"A" * 10
        want[190_000:190_010] = b"B" * 10
        assert await v.read(inode) == want
        await v.sync()
        v.content.stored.forget_memory()
        assert await v.read(inode) == want


async def test_a_write_while_a_small_chunk_moves_to_a_file_is_kept(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small chunk (a row of the staging database) that a write grows past SMALL_MAX is
    copied into a file in a worker thread; a write into the row meanwhile makes that copy
    stale: it is discarded and made again, so neither write is lost."""
    first = data(1000, 1)
    moved = threading.Event()
    go_on = threading.Event()
    async with open_volume(tmp_path, config=CONFIG) as v:
        inode = await v.create(b"f", first)
        assert v.staging.is_small((inode, 0))
        real_put = v.staging.put

        def slow_put(key: Key, body: bytes) -> bool:
            moved.set()
            assert go_on.wait(30)
            return real_put(key, body)

        monkeypatch.setattr(v.staging, "put", slow_put)
        big = data(100 * KiB, 2)
        fh = await v.open(inode, os.O_WRONLY)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(v.ops.write, fh, 4000, big)
            with trio.fail_after(30):
                while not moved.is_set():
                    await trio.sleep(0.01)
            assert await v.ops.write(fh, 500, b"B" * 10) == 10  # into the row
            go_on.set()
        await v.ops.release(fh)
        assert not v.staging.is_small((inode, 0))
        want = first[:500] + b"B" * 10 + first[510:] + bytes(3000) + big
        assert await v.read(inode) == want
        await v.sync()
        v.content.stored.forget_memory()
        assert await v.read(inode) == want
