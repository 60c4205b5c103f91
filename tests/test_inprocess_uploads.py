"""Uploads in process: the handlers, Content and the uploader over a fake store and a fake
upload worker (tests/fakes.py), no FUSE mount, no network. What the user relies on: the bytes
read back are the bytes written last; an upload that lost the race with a write is never
committed for the new bytes, and its blob is released; a failed upload is retried without
paying twice; nothing escapes the uploader. Each test ends with fsck's database check."""

from __future__ import annotations

import errno
import random
import time
from pathlib import Path

import pyfuse3
import pytest
import trio

from chain import errors as chain_errors
from tests.fakes import Fault, Volume, open_volume
from walrusfs.fs import uploader as uploader_module
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.options import UploadConfig

pytestmark = pytest.mark.trio

KiB = 1 << 10

#: blobs for files above 4 KiB; quilts for those up to it (chunks are 256 KiB)
CONFIG = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, compact_below=0.0)


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def settle(v: Volume, timeout: float = 3600.0) -> None:
    """Wait (on trio's clock) until nothing is staged or in flight."""
    with trio.fail_after(timeout):
        while v.uploader.pending()[0] or v.uploader.inflight:
            await trio.sleep(0.5)


def kind_of(size: int) -> str:
    return "quilt" if size <= CONFIG.quilt_threshold else "data"


async def test_files_round_trip_through_blobs_and_quilts(tmp_path: Path, autojump_clock) -> None:
    """The harness itself: small files go into one quilt, a large file into a blob per chunk;
    after sync nothing is staged and every byte reads back from the store."""
    files = {b"small-1": data(100, 1), b"small-2": data(3000, 2), b"large": data(600 * KiB, 3)}
    async with open_volume(tmp_path, config=CONFIG) as v:
        inodes = {name: await v.create(name, body) for name, body in files.items()}
        await v.sync()
        assert v.uploader.pending() == (0, 0)
        assert v.staging.used_bytes == 0
        assert len(v.worker.live("quilt")) == 1  # both small files, one registration
        assert len(v.worker.live("data")) == 3  # 600 KiB: three 256 KiB chunks
        assert len(v.worker.registered()) == 4  # nothing paid twice
        v.content.stored.forget_memory()  # nothing from memory: read what the store holds
        for name, body in files.items():
            assert await v.read(inodes[name]) == body
        assert v.store.reads


@pytest.mark.parametrize("size", [3000, 100 * KiB], ids=["quilt", "blob"])
@pytest.mark.parametrize("change", ["rewrite", "overwrite", "truncate"])
async def test_a_file_changed_while_it_uploads_keeps_its_new_bytes(
    tmp_path: Path, autojump_clock, monkeypatch: pytest.MonkeyPatch, size: int, change: str
) -> None:
    """The upload has read the old bytes when the file changes (rewritten with O_TRUNC,
    overwritten in place, truncated): its certified blob is not committed for the file, the
    new bytes upload next, and the stale blob is unused and then deleted on chain."""
    monkeypatch.setattr(uploader_module, "DELETE_DELAY", 0.0)
    old = data(size, 1)
    async with open_volume(tmp_path, config=CONFIG) as v:
        hold = v.worker.hold = trio.Event()
        inode = await v.create(b"f", old)
        await v.worker.arrived.wait()  # the worker read the old bytes and is uploading them
        if change == "rewrite":
            new = data(size, 2)
            await v.write(inode, new, trunc=True)
        elif change == "overwrite":
            new = old[:10] + b"new" + old[13:]
            await v.write(inode, b"new", offset=10)
        else:
            new = old[: size // 2]
            await v.truncate(inode, size // 2)
        v.worker.hold = None
        hold.set()
        await settle(v)
        assert await v.read(inode) == new

        kind = kind_of(size)
        stale, fresh = v.worker.registered()  # one registration each, in order
        assert set(v.worker.live(kind)) == {stale, fresh}
        rows = v.blob_rows()
        assert rows[stale][1] == 0  # certified, recorded, used by nothing
        assert rows[fresh][1] == 1
        ((_, staged, blob, patch, length),) = v.chunks(inode)
        assert not staged and length == len(new)
        stored = v.db.execute("SELECT object_id FROM blobs WHERE id = ?", (blob,)).fetchone()
        assert stored == (fresh,)
        if patch is not None:
            assert v.store.patches[patch].data == new
        v.content.stored.forget_memory()
        assert await v.read(inode) == new  # from the store now

        # the stale blob goes once a checkpoint taken after it became unused is certified
        time.sleep(0.002)  # a later wall-clock millisecond than its deleted_at
        assert await v.checkpointer.checkpoint(force=True)
        with trio.fail_after(60):
            while stale not in v.worker.deleted:
                await trio.sleep(1)
        assert stale not in v.blob_rows()
        assert set(v.worker.live(kind)) == {fresh}


@pytest.mark.parametrize("size", [3000, 100 * KiB], ids=["quilt", "blob"])
@pytest.mark.parametrize("registered", [False, True], ids=["before-register", "after-register"])
async def test_a_worker_that_dies_mid_upload_is_retried_and_paid_once(
    tmp_path: Path, autojump_clock, size: int, registered: bool
) -> None:
    """The worker process exits during the upload (UploadWorker answers the pending request
    with "the upload worker exited", naming the Blob if the worker had reported registering
    it): no exception leaves the uploader, the retry continues the same Blob (the very same
    request, `resume`), one registration is paid in all, and the file reads back."""
    body = data(size, 7)
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.faults.append(Fault(wp.WorkerError("the upload worker exited"), registered))
        inode = await v.create(b"f", body)
        await settle(v)
        assert v.uploader.stats.failures == 1
        assert not v.uploader.stats.failing  # the retry went through
        first, retry = v.worker.requests
        assert retry.op == first.op == ("quilt" if size <= CONFIG.quilt_threshold else "blob")
        assert retry.upload.attributes == first.upload.attributes
        if registered:
            (object_id,) = v.worker.registered()
            assert retry.upload.resume == object_id
        else:
            assert retry.upload.resume is None
        assert len(v.worker.registered()) == 1 and v.worker.uncertified == 0
        assert v.uploader.stats.uncertified == 0
        v.content.stored.forget_memory()
        assert await v.read(inode) == body


async def test_a_registered_upload_is_abandoned_when_its_file_changes(
    tmp_path: Path, autojump_clock
) -> None:
    """An upload that failed after paying for its Blob is kept for a retry of the very same
    request; once the file changes that retry can never happen: the registration is
    abandoned (its Storage returns to the wallet) and the new bytes upload anew."""
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.faults.append(Fault(wp.WorkerError("nodes unreachable"), after_register=True))
        inode = await v.create(b"f", data(100 * KiB, 1))
        with trio.fail_after(60):
            while not v.worker.requests:
                await trio.sleep(0.5)
        await trio.sleep(0.1)  # the failure is handled
        ((paid, reg),) = v.worker.objects.items()
        assert not reg.certified and v.uploader.stats.uncertified == 1
        new = data(100 * KiB, 2)
        await v.write(inode, new, trunc=True)
        await settle(v)
        assert v.worker.abandoned == [paid]
        assert [r.upload.resume for r in v.worker.requests] == [None, None]
        assert len(v.worker.live("data")) == 1
        assert v.worker.uncertified == 0 and v.uploader.stats.uncertified == 0
        assert await v.read(inode) == new


def short(v: Volume) -> tuple[str, int, int] | None:
    """What status shows of a lack of funds: (currency, needed, held)."""
    return v.uploader.stats.short


async def test_sync_fails_with_eio_while_uploads_fail_and_succeeds_after(
    tmp_path: Path, autojump_clock
) -> None:
    """`walrusfs sync` while the wallet lacks WAL: EIO (the reason in status), the files stay
    staged and readable; once the wallet can pay, the next sync certifies them."""
    body = data(100 * KiB, 3)
    async with open_volume(tmp_path, config=CONFIG) as v:
        v.worker.faults.append(Fault(chain_errors.InsufficientWal("not enough WAL", 5000, 10)))
        inode = await v.create(b"f", body)
        with pytest.raises(pyfuse3.FUSEError) as failed:
            await v.sync()
        assert failed.value.errno == errno.EIO
        assert short(v) == ("WAL", 5000, 10)
        assert v.uploader.pending()[0] == 1
        assert await v.read(inode) == body
        await v.sync()
        assert v.uploader.pending() == (0, 0)
        assert short(v) is None
        assert len(v.worker.registered()) == 1
        v.content.stored.forget_memory()
        assert await v.read(inode) == body
