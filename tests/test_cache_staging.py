"""The staging area's removal: the name is free at once, the bytes go in the background, and
nothing of a removed chunk survives a close or a crash."""

from __future__ import annotations

import os
from pathlib import Path

from cache.staging import Staging


def test_a_removed_chunk_is_gone_at_once_and_a_new_one_is_independent(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    key = (7, 0)
    staging.write(key, 0, b"old bytes")
    staging.remove(key)
    assert not staging.exists(key) and staging.used_bytes == 0
    assert not staging.path(key).exists()
    staging.write(key, 0, b"new")  # the same chunk again, before the reaper has run
    assert staging.read(key, 0, 100) == b"new"
    staging.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["7.0"]
    assert (tmp_path / "7.0").read_bytes() == b"new"


def test_many_removals_leave_nothing_after_close(tmp_path: Path) -> None:
    staging = Staging(tmp_path)
    keys = [(i, c) for i in range(1, 201) for c in range(2)]
    for key in keys:
        staging.write(key, 0, os.urandom(4096))
    for key in keys:
        staging.remove(key)
    staging.close()
    assert list(tmp_path.iterdir()) == []


def test_files_of_removals_cut_off_by_a_crash_are_swept_at_the_next_open(tmp_path: Path) -> None:
    (tmp_path / "del.0").write_bytes(b"x" * 100)  # renamed, then the process died
    (tmp_path / "3.1.tmp").write_bytes(b"y")  # an interrupted materialisation
    (tmp_path / "3.0").write_bytes(b"live")
    staging = Staging(tmp_path)
    assert staging.exists((3, 0)) and staging.used_bytes == 4
    staging.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["3.0"]
