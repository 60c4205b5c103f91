"""The block cache (cache/blocks.py): bytes back as put, misses where a block is missing or
does not match its sum, eviction by blob, two users of one directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache.blocks import BLOCK, BlockCache

SIZE = 5 * BLOCK + 1234  # the last block is short
DATA = os.urandom(SIZE)


def test_a_read_within_what_was_put_returns_those_bytes(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    c.put("b1", 0, DATA, SIZE)
    assert c.get("b1", 0, SIZE, SIZE) == DATA
    assert c.get("b1", BLOCK - 10, 4096, SIZE) == DATA[BLOCK - 10 : BLOCK - 10 + 4096]
    assert c.get("b1", SIZE - 100, 100, SIZE) == DATA[-100:]
    assert c.total_bytes == SIZE


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, SIZE - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(a + 1, SIZE))),
    st.integers(0, SIZE - 1).flatmap(lambda a: st.tuples(st.just(a), st.integers(a + 1, SIZE))),
)
def test_only_whole_blocks_of_a_put_are_kept(put: tuple[int, int], read: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as d:
        c = BlockCache(Path(d), 1 << 30)
        c.put("b", put[0], DATA[put[0] : put[1]], SIZE)
        got = c.get("b", read[0], read[1] - read[0], SIZE)
        # a block is kept when the put covered all of it (the last block ends at SIZE)
        first, last = read[0] // BLOCK, (read[1] - 1) // BLOCK
        covered = all(
            put[0] <= i * BLOCK and min((i + 1) * BLOCK, SIZE) <= put[1]
            for i in range(first, last + 1)
        )
        assert got == (DATA[read[0] : read[1]] if covered else None)


def test_a_block_that_does_not_match_its_sum_is_a_miss_and_is_cleared(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    c.put("b1", 0, DATA, SIZE)
    path = tmp_path / "b1.data"
    raw = bytearray(path.read_bytes())
    raw[BLOCK + 5] ^= 0xFF
    path.write_bytes(bytes(raw))
    # unchecked, the caller gets the bytes on disk (it authenticates them itself)
    assert c.get("b1", BLOCK, 10, SIZE, verify=False) == bytes(raw[BLOCK : BLOCK + 10])
    assert c.get("b1", BLOCK, 10, SIZE) is None
    path.write_bytes(DATA)  # the sum was cleared: even the right bytes are a miss now
    assert c.get("b1", BLOCK, 10, SIZE) is None
    assert c.get("b1", 0, 10, SIZE) == DATA[:10]  # other blocks are unaffected


def test_a_truncated_data_file_is_a_miss(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    c.put("b1", 0, DATA, SIZE)
    os.truncate(tmp_path / "b1.data", 2 * BLOCK)
    assert c.get("b1", 3 * BLOCK, 10, SIZE, verify=False) is None
    (tmp_path / "b1.data").unlink()
    assert c.get("b1", 0, 10, SIZE) is None


def test_the_least_recently_read_blob_goes_first(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 2 * SIZE)
    c.put("old", 0, DATA, SIZE)
    c.put("new", 0, DATA, SIZE)
    assert c.get("old", 0, 10, SIZE) is not None  # read: now the most recent
    c.put("third", 0, DATA, SIZE)
    assert c.get("new", 0, 10, SIZE) is None
    assert c.get("old", 0, 10, SIZE) == DATA[:10]
    assert c.get("third", 0, 10, SIZE) == DATA[:10]
    assert not (tmp_path / "new.data").exists()
    assert c.total_bytes == 2 * SIZE


def test_a_blob_larger_than_the_limit_is_not_kept(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, SIZE - 1)
    c.put("b1", 0, DATA, SIZE)
    assert c.get("b1", 0, 10, SIZE) is None
    assert c.total_bytes == 0


def test_the_mount_reads_what_its_upload_worker_put(tmp_path: Path) -> None:
    reader = BlockCache(tmp_path, 1 << 30)
    assert reader.get("b1", 0, 10, SIZE) is None
    writer = BlockCache(tmp_path, 1 << 30)  # the other process
    writer.put("b1", 0, DATA, SIZE)
    assert reader.get("b1", 100, 5000, SIZE) == DATA[100:5100]
    reader.forget("b1")
    assert writer.get("b1", 100, 10, SIZE) is None


def test_files_no_row_names_are_removed_at_open(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    c.put("kept", 0, DATA, SIZE)
    c.close()
    (tmp_path / "orphan.data").write_bytes(b"x" * 100)
    (tmp_path / "orphan.sums").write_bytes(b"y" * 16)
    again = BlockCache(tmp_path, 1 << 30)
    assert not (tmp_path / "orphan.data").exists()
    assert not (tmp_path / "orphan.sums").exists()
    assert again.get("kept", 0, SIZE, SIZE) == DATA


def test_a_fill_leaves_a_tenth_of_the_disk_free_evicting_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    c.put("old", 0, DATA, SIZE)
    total = 100 * SIZE
    free = [total // 10 + SIZE // 2]  # room for half a blob above the tenth kept free

    def statvfs(path: object) -> os.statvfs_result:
        return os.statvfs_result((4096, 1, total, free[0], free[0], 0, 0, 0, 0, 255))

    monkeypatch.setattr(os, "statvfs", statvfs)
    c.put("new", 0, DATA, SIZE)  # "old" goes, and there is still no room: nothing kept
    assert c.get("old", 0, 10, SIZE) is None
    assert c.get("new", 0, 10, SIZE) is None
    free[0] = total // 10 + 2 * SIZE
    c.put("new", 0, DATA, SIZE)
    assert c.get("new", 0, 10, SIZE) == DATA[:10]


def test_a_cache_that_cannot_write_loses_the_blob_not_the_caller(tmp_path: Path) -> None:
    c = BlockCache(tmp_path, 1 << 30)
    (tmp_path / "b1.data").mkdir()  # the data file cannot be opened: as an I/O error would
    c.put("b1", 0, DATA, SIZE)  # no exception
    assert c.get("b1", 0, 10, SIZE) is None
