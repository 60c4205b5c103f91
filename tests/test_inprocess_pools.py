"""A volume in a storage pool, in process (the fake worker keeps a pool's table: one entry per
blob ID, a certified one reused). What the user relies on: a file whose bytes equal those of a
blob being deleted is never left pointing at the deleted blob."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
import trio

from tests.fakes import Volume, open_volume
from walrusfs.fs import schema
from walrusfs.fs import uploader as uploader_module
from walrusfs.fs.options import UploadConfig

pytestmark = pytest.mark.trio

KiB = 1 << 10
CONFIG = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, compact_below=0.0)


async def settle(v: Volume, timeout: float = 3600.0) -> None:
    with trio.fail_after(timeout):
        while v.uploader.pending()[0] or v.uploader.inflight:
            await trio.sleep(0.5)


async def test_bytes_of_a_blob_being_deleted_are_uploaded_anew_not_pointed_at_it(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A public volume: a new file holds the bytes a file held before it was rewritten,
    whose blob is being deleted. The pool answers the upload with that blob (its table has
    one entry per blob ID), which the delete then removes: the answer is not committed, the
    retry registers the bytes anew, and the file reads back from a blob that exists."""
    monkeypatch.setattr(uploader_module, "DELETE_DELAY", 0.0)
    body = random.Random(5).randbytes(100 * KiB)
    async with open_volume(tmp_path, config=CONFIG, pool=True) as v:
        first = await v.create(b"first", body)
        await settle(v)
        ((_, _, row, _, _),) = v.chunks(first)
        (old,) = v.db.execute("SELECT object_id FROM blobs WHERE id = ?", (row,)).fetchone()
        assert v.worker.objects[old].certified

        await v.write(first, random.Random(6).randbytes(100 * KiB), trunc=True)
        await settle(v)  # the old bytes' blob is used by nothing now

        release_upload = v.worker.hold = trio.Event()
        failures = v.uploader.stats.failures
        second = await v.create(b"second", body)
        with trio.fail_after(600):
            await v.worker.arrived.wait()  # its upload is under way, before the pool's answer
        release_delete = v.worker.delete_hold = trio.Event()
        # a checkpoint certified now (what makes the unused blob due for deletion; taken for
        # real, its upload would wait behind the held one)
        time.sleep(0.002)  # a later wall-clock millisecond than the row's deleted_at
        with schema.transaction(v.db):
            schema.set_param(v.db, "checkpoint_time", f"{time.time():.3f}")
        v.uploader.wake()
        with trio.fail_after(600):
            await v.worker.delete_arrived.wait()  # the old blob's delete is under way
        v.worker.hold = None
        release_upload.set()  # the pool answers with the old blob, about to be deleted
        with trio.fail_after(600):
            while v.uploader.stats.failures == failures:  # that answer was refused
                await trio.sleep(0.5)
        v.worker.delete_hold = None
        release_delete.set()
        await settle(v)

        assert old in v.worker.deleted
        ((_, staged, row, _, _),) = v.chunks(second)
        (now,) = v.db.execute("SELECT object_id FROM blobs WHERE id = ?", (row,)).fetchone()
        assert not staged and now != old, "the file points at the deleted blob"
        assert now in v.worker.live()
        v.content.stored.forget_memory()
        assert await v.read(second) == body
