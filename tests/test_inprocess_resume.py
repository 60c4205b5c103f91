"""Uploads a dead mount registered (paid for) and did not commit, taken up by the next mount
of the volume, in process over the fake worker (tests/fakes.py): the plan kept on disk from
the registration is sent again, so the worker continues the same Blob (no second
registration, nothing abandoned); a plan whose files changed or went has its Blob given back;
a Blob with no plan is deleted as before. Each opening that ends cleanly is fsck-checked."""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from tests.fake_walrus import FakeStore, FakeWorker, Fault
from tests.fakes import Volume, open_volume
from walrusfs.fs import worker_protocol as wp
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.plans import PLANS_DIR

pytestmark = pytest.mark.trio

KiB = 1 << 10
CONFIG = UploadConfig(delay=1.0, quilt_threshold=4 * KiB, retry_after=15.0, compact_below=0.0)


class Killed(Exception):
    """Ends a volume's block the way kill -9 ends a mount: nothing after it runs."""


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def plans(tmp_path: Path) -> dict[str, dict[str, object]]:
    root = tmp_path / "vol" / PLANS_DIR
    return {p.stem: json.loads(p.read_text()) for p in root.glob("*.json")}


async def _killed_after_registering(
    tmp_path: Path,
    worker: FakeWorker,
    files: dict[bytes, bytes],
    then: Callable[[Volume], Awaitable[None]] | None = None,
    config: UploadConfig = CONFIG,
) -> str:
    """Write `files`, let their upload register a Blob and fail (the worker dies after its
    "registered" line), do `then`, and kill the mount before the retry. The Blob's object
    ID."""
    worker.faults.append(Fault(wp.WorkerError("the upload worker exited"), after_register=True))
    with pytest.raises(ExceptionGroup) as killed:  # out of the volume's nursery
        async with open_volume(tmp_path, config=config, worker=worker) as v:
            for name, body in files.items():
                await v.create(name, body)
            with trio.fail_after(600):
                while v.uploader.stats.failures == 0:
                    await trio.sleep(0.5)
            if then is not None:
                await then(v)
            raise Killed
    assert killed.group_contains(Killed)
    (object_id,) = worker.registered()
    assert not worker.objects[object_id].certified
    return object_id


async def _settled(v: Volume) -> None:
    with trio.fail_after(3600):
        while v.uploader.pending()[0] or v.uploader.inflight:
            await trio.sleep(0.5)


@pytest.mark.parametrize("kind", ["blob", "quilt"])
async def test_the_next_mount_continues_the_blob_a_killed_one_paid_for(
    tmp_path: Path, autojump_clock, kind: str
) -> None:
    files = (
        {b"big": data(100 * KiB, 1)}
        if kind == "blob"
        else {f"s{i}".encode(): data(500 + 100 * i, i) for i in range(5)}
    )
    worker = FakeWorker(FakeStore())
    object_id = await _killed_after_registering(tmp_path, worker, files)
    assert list(plans(tmp_path)) == [object_id]
    assert plans(tmp_path)[object_id]["kind"] == kind

    async with open_volume(tmp_path, config=CONFIG, worker=worker, orphans=[object_id]) as v:
        await _settled(v)
        assert v.uploader.stats.resumed == 1 and v.uploader.stats.orphans_deleted == 0
        last = worker.uploads()[-1]
        assert last.upload.resume == object_id
        assert worker.registered() == [object_id]  # paid once
        assert worker.objects[object_id].certified and worker.abandoned == []
        for name, body in files.items():
            inode = await v.lookup(name)
            assert await v.read(inode) == body
    assert plans(tmp_path) == {}


async def test_a_plan_whose_file_went_gives_its_blob_back(tmp_path: Path, autojump_clock) -> None:
    """The killed upload's file is deleted on the next mount before the upload is retried:
    its registration is abandoned (Storage back to the wallet), its plan removed."""
    worker = FakeWorker(FakeStore())
    object_id = await _killed_after_registering(tmp_path, worker, {b"big": data(100 * KiB, 1)})
    config = UploadConfig(delay=1.0, retry_after=15.0, compact_below=0.0, jobs=1)
    async with open_volume(
        tmp_path, config=config, worker=worker, orphans=[object_id], run_uploader=False
    ) as v:
        await v.unlink(b"big")
        async with trio.open_nursery() as nursery:
            await nursery.start(v.uploader.run)
            with trio.fail_after(600):
                while object_id not in worker.abandoned:
                    await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
        assert worker.registered() == [object_id] and v.uploader.stats.orphans_deleted == 0
    assert plans(tmp_path) == {}


async def test_a_blob_without_a_plan_is_deleted_and_the_file_uploaded_anew(
    tmp_path: Path, autojump_clock
) -> None:
    """A Blob registered by a mount killed before it wrote the plan (or by an earlier
    version): nothing says what it holds, so it is deleted, and the file uploads anew."""
    worker = FakeWorker(FakeStore())
    body = data(100 * KiB, 1)
    object_id = await _killed_after_registering(tmp_path, worker, {b"big": body})
    (tmp_path / "vol" / PLANS_DIR / f"{object_id}.json").unlink()
    async with open_volume(tmp_path, config=CONFIG, worker=worker, orphans=[object_id]) as v:
        await _settled(v)
        assert v.uploader.stats.orphans_deleted == 1 and worker.abandoned == [object_id]
        assert len(worker.registered()) == 2
        assert await v.read(await v.lookup(b"big")) == body


@pytest.mark.parametrize("kind", ["blob", "quilt"])
async def test_a_plan_whose_file_grew_is_not_resumed(
    tmp_path: Path, autojump_clock, kind: str
) -> None:
    """The killed upload's file was appended to before the kill: resumed, a quilt's request
    would read the file up to its planned size and commit it cut there (the new bytes
    lost), a blob's would carry a record of the old length. The registration is given back
    and the whole file uploads anew."""
    worker = FakeWorker(FakeStore())
    # a quilted file of more than 64 KiB is a chunk file, read up to its planned size
    config = CONFIG if kind == "blob" else replace(CONFIG, quilt_threshold=256 * KiB)
    files = (
        {b"big": data(100 * KiB, 1)}
        if kind == "blob"
        else {
            b"big": data(100 * KiB, 1),
            b"other": data(80 * KiB, 3),
        }
    )
    more = data(10 * KiB, 2)

    async def append(v: Volume) -> None:
        await v.write(await v.lookup(b"big"), more, offset=len(files[b"big"]))

    object_id = await _killed_after_registering(tmp_path, worker, files, append, config)
    assert plans(tmp_path)[object_id]["kind"] == kind
    async with open_volume(tmp_path, config=config, worker=worker, orphans=[object_id]) as v:
        await _settled(v)
        assert await v.read(await v.lookup(b"big")) == files[b"big"] + more
        for name, body in files.items():
            if name != b"big":
                assert await v.read(await v.lookup(name)) == body
        assert v.uploader.stats.resumed == 0 and worker.abandoned == [object_id]
    assert plans(tmp_path) == {}
