"""The staging area: small chunks in small.db, larger ones in files; removal frees the name at
once and the bytes go in the background; nothing of a removed chunk survives a close or a
crash; a small chunk that grows moves to a file without a window where a crash loses it."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cache.chunkfiles import DIRECT_MIN
from cache.smalldb import SMALL_DB
from cache.staging import SMALL_MAX, Staging

BIG = SMALL_MAX + 1


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(SMALL_DB))


def test_small_chunks_are_rows_and_read_back_after_reopening(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    staging.write((1, 0), 0, b"hello")
    staging.write((1, 0), 3, b"p me")  # read-modify-write inside
    staging.write((2, 0), 10, b"tail")  # a hole before it reads as zeros
    staging.create((3, 0))  # empty
    assert staging.read((1, 0), 0, 100) == b"help me"
    assert staging.read((2, 0), 0, 100) == bytes(10) + b"tail"
    assert staging.is_small((1, 0)) and staging.used_bytes == 7 + 14
    assert _files(tmp_path) == []  # no file per small chunk
    staging.truncate((1, 0), 4)
    staging.close()
    again = Staging(tmp_path)  # kill -9 keeps the WAL in the page cache: the same as a reopen
    assert again.read((1, 0), 0, 100) == b"help" and again.size((2, 0)) == 14
    assert sorted(again.keys()) == [(1, 0), (2, 0)]  # (3, 0) was never written: no row
    again.close()


def test_a_chunk_that_outgrows_small_moves_to_a_file(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    key = (5, 0)
    staging.write(key, 0, b"a" * 1000)
    assert staging.outgrows(key, BIG) and not staging.outgrows(key, SMALL_MAX)
    staging.write(key, SMALL_MAX, b"b")  # the first byte past SMALL_MAX
    assert not staging.is_small(key) and staging.path(key).exists()
    assert staging.read(key, 0, 1000) == b"a" * 1000
    assert staging.read(key, SMALL_MAX - 1, 10) == b"\0b"
    staging.write((6, 0), 0, os.urandom(BIG))  # a first write past SMALL_MAX: a file at once
    assert not staging.is_small((6, 0))
    staging.close()
    again = Staging(tmp_path)
    assert again.size(key) == BIG and not again.is_small(key)
    again.close()


def test_a_crash_while_moving_to_a_file_keeps_the_complete_copy(tmp_path: Path) -> None:
    """`put` makes the file durable before the row goes: a crash in between leaves both, and
    the file (a complete copy) wins; a stale file that was never adopted is discarded."""
    staging = Staging(tmp_path)
    staging.write((7, 0), 0, b"row bytes")
    staging.put((7, 0), b"row bytes")  # the thread's half of Content._to_file, then "crash"
    staging.close()
    again = Staging(tmp_path)
    assert not again.is_small((7, 0)) and again.read((7, 0), 0, 100) == b"row bytes"
    again.write((8, 0), 0, b"small")
    again.put((8, 0), b"old")  # written, but the chunk changed meanwhile:
    again.discard_put((8, 0))  # not adopted
    again.close()
    third = Staging(tmp_path)
    assert third.is_small((8, 0)) and third.read((8, 0), 0, 100) == b"small"
    third.close()


def test_a_late_copy_never_replaces_a_chunk_written_meanwhile(tmp_path: Path) -> None:
    """A copy of a chunk from Walrus (`put`, in a thread) that finishes after the user
    rewrote the chunk must not land: not over a file the loop wrote (that is live data), and
    not beside a small row, where the next open would prefer the file."""
    staging = Staging(tmp_path)
    live = os.urandom(BIG)
    staging.write((1, 0), 0, live)  # rewritten as a file chunk while the copy was fetched
    assert not staging.put((1, 0), b"stale copy")
    assert staging.read((1, 0), 0, BIG) == live
    staging.write((2, 0), 0, b"new")  # rewritten small while the copy was fetched
    assert staging.put((2, 0), b"stale copy")
    staging.discard_put((2, 0))  # what Content.stage does when the chunk changed
    staging.close()
    again = Staging(tmp_path)
    assert again.read((1, 0), 0, BIG) == live
    assert again.read((2, 0), 0, 100) == b"new"
    again.close()


def test_upload_batches_hold_small_chunks_end_to_end(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    staging.write((1, 0), 0, b"one")
    staging.write((2, 0), 0, b"second")
    staging.write((3, 0), 0, os.urandom(BIG))
    got = staging.small_bytes([(1, 0), (2, 0), (3, 0)])
    assert got == {(1, 0): b"one", (2, 0): b"second"}  # file chunks are read by path
    batch = staging.batch_path()
    spans = staging.write_batch(batch, list(got.values()))
    assert spans == [(0, 3), (3, 6)] and batch.read_bytes() == b"onesecond"
    staging.close()
    Staging(tmp_path).close()  # a batch left by a crash is swept at the next open
    assert not batch.exists()


def test_fsync_covers_files_and_the_small_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = Staging(tmp_path)
    staging.write((1, 0), 0, b"small")
    staging.create((2, 0))  # as the mount creates a chunk: small, until this first write
    staging.write((2, 0), 0, os.urandom(BIG))
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    staging.fsync_fds(staging.dup_for_fsync([(1, 0), (2, 0)]))
    assert sorted(Path(p).name for p in synced) == sorted(
        [SMALL_DB + "-wal", "2.0", tmp_path.name]
    )  # the WAL, the file, and the directory (a name was created)
    staging.close()


def test_a_removed_chunk_is_gone_at_once_and_a_new_one_is_independent(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    key = (7, 0)
    staging.write(key, 0, os.urandom(BIG))
    staging.remove(key)
    assert not staging.exists(key) and staging.used_bytes == 0
    assert not staging.path(key).exists()
    staging.write(key, 0, b"new" * (BIG // 3 + 1))  # the same chunk again, before the reaper ran
    assert staging.read(key, 0, 3) == b"new"
    staging.remove((9, 0))  # never staged: nothing to do
    staging.write((9, 0), 0, b"small")
    staging.remove((9, 0))
    staging.close()
    assert _files(tmp_path) == ["7.0"]
    again = Staging(tmp_path)
    assert again.keys() == [key]
    again.close()


def test_many_removals_leave_nothing_after_close(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    keys = [(i, c) for i in range(1, 201) for c in range(2)]
    for key in keys:
        staging.write(key, 0, os.urandom(BIG if key[0] % 2 else 4096))
    for key in keys:
        staging.remove(key)
    staging.close()
    assert _files(tmp_path) == []
    again = Staging(tmp_path)
    assert again.keys() == [] and again.used_bytes == 0
    again.close()


def test_files_of_removals_cut_off_by_a_crash_are_swept_at_the_next_open(tmp_path: Path) -> None:
    (tmp_path / "del.0").write_bytes(b"x" * 100)  # renamed, then the process died
    (tmp_path / "3.1.tmp").write_bytes(b"y")  # an interrupted materialisation
    (tmp_path / "3.0").write_bytes(b"live")
    staging = Staging(tmp_path)
    assert staging.exists((3, 0)) and staging.size((3, 0)) == 4
    assert staging.used_bytes == (tmp_path / "3.0").stat().st_blocks * 512  # what it takes
    staging.close()
    assert _files(tmp_path) == ["3.0"]


def test_large_aligned_writes_bypass_the_page_cache_and_read_back(tmp_path: Path) -> None:
    """Pieces of 64 KiB or more at page-aligned offsets go to the disk with O_DIRECT (through
    an aligned copy); others are buffered; both read back as written, before and after a
    reopen, and mixed in one file."""
    staging = Staging(tmp_path)
    key = (1, 0)
    big = os.urandom(1 << 20)
    staging.write(key, 0, big)  # direct
    staging.write(key, 4096 + 10, b"unaligned")  # buffered, inside the direct range
    staging.write(key, 1 << 20, os.urandom(DIRECT_MIN))  # direct again, extending
    expected = bytearray(big)
    expected[4106:4115] = b"unaligned"
    assert staging.read(key, 0, 1 << 20) == bytes(expected)
    assert staging._direct, "ext4 takes O_DIRECT"
    staging.fsync_fds(staging.dup_for_fsync([key]))
    staging.close()
    again = Staging(tmp_path)
    assert again.read(key, 0, 1 << 20) == bytes(expected)
    assert again.size(key) == (1 << 20) + DIRECT_MIN
    again.close()


def test_a_filesystem_without_o_direct_gets_buffered_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.open

    def no_direct(path: str | Path, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:  # what open(2) answers where O_DIRECT is not supported
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    staging = Staging(tmp_path)
    data = os.urandom(256 << 10)
    staging.write((2, 0), 0, data)
    staging.write((2, 0), 256 << 10, data)
    assert not staging._direct and staging.read((2, 0), 0, 512 << 10) == data + data
    staging.close()


def test_the_limit_counts_allocated_bytes_not_apparent_sizes(tmp_path: Path) -> None:
    """A sparse chunk costs the blocks it holds: fsstress's sparse files counted 16.9 GB
    against the staging limit with 174 MB on disk, and writes got ENOSPC."""
    staging = Staging(tmp_path)
    key = (7, 0)
    staging.write(key, 60 << 20, b"x" * 8192)  # 60 MiB of hole, then 8 KiB
    assert staging.size(key) == (60 << 20) + 8192
    on_disk = staging.path(key).stat().st_blocks * 512
    assert staging.used_bytes == staging.allocated(key) == on_disk < 1 << 20
    staging.write((8, 0), 0, b"s" * 100)  # small.db rows count their length
    assert staging.used_bytes == on_disk + 100
    staging.truncate(key, 10 << 20)  # the data past 10 MiB goes, and its blocks
    assert staging.allocated(key) == 0 and staging.used_bytes == 100
    staging.write(key, 0, os.urandom(BIG))
    assert staging.allocated(key) >= BIG
    staging.close()
    again = Staging(tmp_path)  # measured again at the next open
    assert again.allocated(key) == staging.path(key).stat().st_blocks * 512
    assert again.used_bytes == again.allocated(key) + 100
    again.remove_all([key, (8, 0)])
    assert again.used_bytes == 0
    again.close()


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (a full disk, for real: the tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    root = tmp_path / "tiny"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=True)


def test_a_full_disk_is_enospc_for_rows_and_files(tiny_fs: Path) -> None:
    staging = Staging(tiny_fs / "staging")
    with pytest.raises(OSError) as err:  # a file chunk: pwrite's own ENOSPC
        staging.write((1, 0), 0, os.urandom(4 << 20))
    assert err.value.errno == errno.ENOSPC
    staging.remove((1, 0))
    filler = tiny_fs / "filler"
    with open(filler, "wb") as f, pytest.raises(OSError) as err:
        f.write(os.urandom(4 << 20))
    with pytest.raises(OSError) as err:  # small.db: SQLITE_FULL, as ENOSPC
        for i in range(200):
            staging.write((2, i), 0, os.urandom(SMALL_MAX))
    assert err.value.errno == errno.ENOSPC and "full" in str(err.value)
    written = list(staging.keys())  # what the rows that fitted hold
    staging.remove_all(written)  # a full disk never makes removals raise
    assert staging.used_bytes == 0 and staging.keys() == []
    filler.unlink()
    staging.write((3, 0), 0, b"room again")
    assert staging.read((3, 0), 0, 100) == b"room again"
    staging.close()
    again = Staging(tiny_fs / "staging")
    again.sweep([(3, 0)])  # rows whose deletion could not be written go now
    assert again.keys() == [(3, 0)]
    again.close()
