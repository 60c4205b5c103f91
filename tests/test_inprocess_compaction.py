"""Compaction in process: the handlers, Content and the uploader over a fake store and worker.
What the user relies on: a quilt left mostly empty by deletes is quilted anew with its live
files (whose bytes read back), and the look for such quilts, which runs on the mount's loop
every minute, measures a quilt again only when it lost a file."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import trio

from tests.fakes import open_volume
from walrusfs.fs import blobs
from walrusfs.fs.compaction import Compactor
from walrusfs.fs.options import UploadConfig

pytestmark = pytest.mark.trio

KiB = 1 << 10

#: files up to 4 KiB are quilted; the uploader's own compaction is off (its looks come at
#: times of trio's clock): the test's Compactor, on the volume's database, looks when told
CONFIG = UploadConfig(delay=3600.0, quilt_threshold=4 * KiB, compact_below=0.0)


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def test_a_sparse_quilt_is_quilted_anew_and_a_dense_one_measured_once(
    tmp_path: Path, autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = {f"a{i}".encode(): data(3000, i) for i in range(20)}
    second = {f"b{i}".encode(): data(3000, 100 + i) for i in range(20)}
    files = first | second
    async with open_volume(tmp_path, config=CONFIG) as v:
        inodes = {}
        for batch in (first, second):
            for name, body in batch.items():
                inodes[name] = await v.create(name, body)
            await v.sync()
        quilts = set(v.worker.live("quilt"))
        held: dict[int | None, list[bytes]] = {}  # quilt row -> its files
        for name, inode in inodes.items():
            held.setdefault(v.chunks(inode)[0][2], []).append(name)
        assert None not in held and len(held) == len(quilts) > 1

        measured: list[int] = []
        real = blobs.quilt_chunks

        def counting(db: sqlite3.Connection, blob: int) -> list[blobs.QuiltChunk]:
            measured.append(blob)
            return real(db, blob)

        monkeypatch.setattr(blobs, "quilt_chunks", counting)
        own = v.uploader.compactor
        compactor = Compactor(v.db, v.content, own.params, compact_below=0.5, record=own.record)
        assert compactor.sparse_quilts() == []  # all full: each measured, found dense
        assert sorted(measured) == sorted(q for q in held if q is not None)
        measured.clear()
        assert compactor.sparse_quilts() == []
        assert measured == []  # nothing changed: no quilt's chunks read again

        quilt, names = next((q, n) for q, n in held.items() if len(n) >= 3)
        for name in names[1:]:  # one file of that quilt left
            await v.unlink(name)
            del files[name]
        sparse = compactor.sparse_quilts()  # seen unlinked before the kernel forgets them
        assert measured == [quilt]
        assert sparse == [(quilt, [(inodes[names[0]], 0, 3000)])]
        measured.clear()
        v.ops.forget([(inodes[name], 1) for name in names[1:]])  # as the kernel does
        await trio.sleep(5)  # the purger frees them: the quilt's reference count drops
        sparse = compactor.sparse_quilts()
        assert measured == [quilt]  # only the quilt that lost files
        assert sparse == [(quilt, [(inodes[names[0]], 0, 3000)])]

        assert await compactor.restage() == (1, 1)
        await v.sync()  # the live file is quilted anew; the sparse quilt, unused, deleted
        assert len(set(v.worker.live("quilt")) - quilts) == 1  # the new quilt
        old = v.db.execute("SELECT refcount FROM blobs WHERE id = ?", (quilt,)).fetchone()
        assert old is None or old[0] == 0  # unused: deleted, or due for deletion
        v.content.stored.forget_memory()
        for name, body in files.items():
            assert await v.read(inodes[name]) == body
