"""Listing a directory through the handlers, in process (tests/fakes.py): readdir reads a
directory a page of rows at a time and hands the kernel as many entries as fit in its buffer.
Whatever the buffer holds, the kernel must get every entry exactly once, with the attributes
getattr gives, and the lookup count of each entry it accepted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyfuse3
import pytest

from tests.fakes import Volume, open_volume
from walrusfs.fs import ops as fsops
from walrusfs.fs.options import UploadConfig
from walrusfs.fs.schema import ROOT_INODE

pytestmark = pytest.mark.trio

KiB = 1 << 10
CONFIG = UploadConfig(delay=3600.0, quilt_threshold=4 * KiB, compact_below=0.0)


class Buffer:
    """Stands for the kernel's readdir buffer: takes `room` entries per request."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken: list[tuple[bytes, Any, int]] = []

    def reply(self, token: Any, name: bytes, attrs: Any, next_id: int) -> bool:
        if self.room == 0:
            return False
        self.room -= 1
        self.taken.append((name, attrs, next_id))
        return True


async def listing(
    v: Volume, monkeypatch: pytest.MonkeyPatch, room: int, between: Any = None
) -> list[tuple[bytes, Any]]:
    """Every entry of the root as the kernel reads them: requests of `room` entries, each
    starting where the last one ended; `between(requests)` runs between two requests."""
    fh = await v.ops.opendir(ROOT_INODE, v.ctx)
    out: list[tuple[bytes, Any]] = []
    start = 0
    requests = 0
    while True:
        buffer = Buffer(room)
        monkeypatch.setattr(pyfuse3, "readdir_reply", buffer.reply)
        await v.ops.readdir(fh, start, None)  # type: ignore[arg-type]
        requests += 1
        if not buffer.taken:
            return out
        out += [(name, attrs) for name, attrs, _ in buffer.taken]
        start = buffer.taken[-1][2]
        if between is not None:
            await between(requests)


@pytest.mark.parametrize("room", [1, 7, fsops.READDIR_PAGE, fsops.READDIR_PAGE + 1, 10_000])
async def test_every_entry_once_with_getattrs_attributes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, room: int, autojump_clock: Any
) -> None:
    """More entries than a page of rows, listed through buffers that end inside a page, at
    its end and past it: staged files (st_blocks from the staging area), uploaded ones
    (from their chunks), empty ones, a directory."""
    n = fsops.READDIR_PAGE * 2 + 5
    async with open_volume(tmp_path, config=CONFIG) as v:
        inodes = {}
        for i in range(n):
            name = f"f{i:04d}".encode()
            inodes[name] = await v.create(name, os.urandom(i * 97 % 9000))
        await v.sync()  # the ones so far are uploaded; the next ones stay staged
        for i in range(n, n + 20):
            name = f"f{i:04d}".encode()
            inodes[name] = await v.create(name, os.urandom(70 * KiB if i % 2 else 3 * KiB))
        sub = await v.ops.mkdir(ROOT_INODE, b"sub", 0o755, v.ctx)
        inodes[b"sub"] = int(sub.st_ino)
        before = dict(v.ops.lookups)

        got = await listing(v, monkeypatch, room)

        names = [name for name, _ in got]
        assert names[:2] == [b".", b".."]
        assert sorted(names[2:]) == sorted(inodes) and len(names) == len(set(names))
        for name, attrs in got[2:]:
            want = await v.ops.getattr(inodes[name], v.ctx)
            assert attrs.st_ino == want.st_ino
            assert (attrs.st_size, attrs.st_blocks, attrs.st_mode, attrs.st_nlink) == (
                want.st_size,
                want.st_blocks,
                want.st_mode,
                want.st_nlink,
            ), name
            assert v.ops.lookups[attrs.st_ino] == before.get(attrs.st_ino, 0) + 1
        assert any(a.st_blocks for _, a in got[2:])  # the check above saw allocations


async def test_entries_added_and_removed_between_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cursor is the entry's id: entries removed after a request are not reported later,
    the others are reported once, whatever page they were on."""
    n = fsops.READDIR_PAGE * 3
    async with open_volume(tmp_path, config=CONFIG) as v:
        for i in range(n):
            await v.create(f"f{i:04d}".encode())

        async def churn(requests: int) -> None:
            if requests == 1:
                for i in range(n - 40, n):  # not listed yet: never reported
                    await v.unlink(f"f{i:04d}".encode())
                await v.create(b"late")  # after every other entry: reported once

        got = [name for name, _ in await listing(v, monkeypatch, 50, churn)]
        assert got[2:] == [f"f{i:04d}".encode() for i in range(n - 40)] + [b"late"]
