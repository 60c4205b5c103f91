"""Reads of files on Walrus, in process (tests/fakes.py): what a read asks of the store.

A random 4 KiB read takes one 64 KiB unit (one WFE1 segment on an encrypted volume), not a
large segment; sequential reads are read ahead in the background; bytes kept by the store
that fail authentication are forgotten and read again, and reach the reader only if they
authenticate."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pyfuse3
import pytest
import trio

from tests.fakes import Volume, open_volume
from walrusfs.fs import crypto
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.stored import AHEAD_MAX, UNIT

pytestmark = pytest.mark.trio

MiB = 1 << 20
KEYS = crypto.VolumeKeys.from_volume_key(bytes(range(32)))
CONFIG = UploadConfig(delay=3600.0, quilt_threshold=4096, compact_below=0.0)
SIZE = 4 * MiB + 12345  # five chunks of 1 MiB (at most 1.8 MB fit a blob at 10 shards)


async def uploaded_file(v: Volume) -> tuple[int, bytes, str]:
    """A file of SIZE bytes stored as blobs, nothing of it in staging or in memory; its inode,
    bytes and the blob ID of its second chunk."""
    body = random.Random(5).randbytes(SIZE)
    inode = await v.create(b"big", body)
    await v.sync()
    chunks = v.chunks(inode)
    assert len(chunks) == 5 and all(not staged and row for _, staged, row, _, _ in chunks)
    row = chunks[1][2]
    (blob_id,) = [r[0] for r in v.db.execute("SELECT blob_id FROM blobs WHERE id = ?", (row,))]
    v.content.stored.forget_memory()
    v.store.spans.clear()
    return inode, body, str(blob_id)


async def read_at(v: Volume, inode: int, offset: int, length: int) -> bytes:
    fh = await v.open(inode, os.O_RDONLY)
    try:
        return bytes(await v.ops.read(fh, offset, length))
    finally:
        await v.ops.release(fh)


@pytest.mark.parametrize("keys", [None, KEYS], ids=["public", "encrypted"])
async def test_a_random_4k_read_takes_one_unit_from_the_store(
    tmp_path: Path, keys: crypto.VolumeKeys | None
) -> None:
    async with open_volume(tmp_path, config=CONFIG, keys=keys, chunk_size=MiB) as v:
        inode, body, _ = await uploaded_file(v)
        rng = random.Random(9)
        for _ in range(20):
            offset = rng.randrange(0, SIZE - 4096)
            v.store.spans.clear()
            assert await read_at(v, inode, offset, 4096) == body[offset : offset + 4096]
            asked = sum(length for _, off, length in v.store.spans if off >= crypto.HEADER)
            # within one unit, or two when the 4 KiB straddle a unit boundary
            units = 1 + (offset % UNIT + 4096 > UNIT)
            assert asked <= units * crypto.CSEGMENT, v.store.spans


async def test_sequential_reads_are_read_ahead(tmp_path: Path) -> None:
    async with open_volume(tmp_path, config=CONFIG, keys=KEYS, chunk_size=MiB) as v:
        inode, body, _ = await uploaded_file(v)
        fh = await v.open(inode, os.O_RDONLY)
        got = []
        requests = 0
        try:
            for offset in range(0, SIZE, 128 << 10):
                got.append(bytes(await v.ops.read(fh, offset, 128 << 10)))
                requests += 1
                await trio.testing.wait_all_tasks_blocked()  # the read-ahead runs meanwhile
        finally:
            await v.ops.release(fh)
        assert b"".join(got) == body
        # the store was asked in runs that grow (to AHEAD_MAX units, here a whole 1 MiB
        # chunk at most), far fewer than the requests
        assert len(v.store.spans) < requests / 2, (len(v.store.spans), requests)
        assert max(length for _, _, length in v.store.spans) >= min(AHEAD_MAX, 16) * UNIT


async def test_a_random_read_does_not_read_ahead(tmp_path: Path) -> None:
    async with open_volume(tmp_path, config=CONFIG, keys=KEYS, chunk_size=MiB) as v:
        inode, body, _ = await uploaded_file(v)
        for offset in (2 * MiB + 3 * UNIT + 5, 5 * UNIT, MiB + 7 * UNIT + 7):
            assert await read_at(v, inode, offset, 4096) == body[offset : offset + 4096]
            await trio.testing.wait_all_tasks_blocked()
        cipher = [length for _, off, length in v.store.spans if off >= crypto.HEADER]
        assert len(cipher) == 3 and max(cipher) <= crypto.CSEGMENT


async def test_kept_bytes_that_fail_authentication_are_forgotten_and_read_again(
    tmp_path: Path,
) -> None:
    async with open_volume(tmp_path, config=CONFIG, keys=KEYS, chunk_size=MiB) as v:
        inode, body, blob_id = await uploaded_file(v)
        v.store.damaged.add(blob_id)  # damaged until the reader makes the store forget them
        assert await read_at(v, inode, MiB, 4096) == body[MiB : MiB + 4096]
        assert v.store.forgotten == [blob_id]


async def test_bytes_that_never_authenticate_are_eio(tmp_path: Path) -> None:
    async with open_volume(tmp_path, config=CONFIG, keys=KEYS, chunk_size=MiB) as v:
        inode, body, blob_id = await uploaded_file(v)
        stored = v.store.blobs[blob_id]
        # a byte of the stored stream itself (in the second chunk's first unit) is wrong:
        # reading again cannot help
        v.store.blobs[blob_id] = stored[:1000] + bytes([stored[1000] ^ 1]) + stored[1001:]
        with pytest.raises(pyfuse3.FUSEError) as err:
            await read_at(v, inode, MiB, 4096)
        assert err.value.errno == errno.EIO
        assert v.store.forgotten == [blob_id]
        # the rest of the file reads: each unit is authenticated by itself
        assert await read_at(v, inode, MiB + 5 * UNIT, 4096) == body[MiB + 5 * UNIT :][:4096]
        assert await read_at(v, inode, 0, 4096) == body[:4096]
