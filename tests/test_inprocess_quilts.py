"""Quilt planning (walrusfs/fs/quilts.py), pure: which staged small files share a quilt. What
the uploader relies on: every file is planned exactly once, no planned quilt exceeds what
one quilt may hold, files go together in order of size, each batch as long as it can be."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

import codec
from walrusfs.fs.quilts import (
    QUILT_MAX_BLOB,
    batch_full,
    quilt_batches,
    quilt_blob_size,
    quilt_candidate,
    quiltable,
)

KiB, MiB = 1 << 10, 1 << 20
SHARDS = st.sampled_from([10, 100, 1000])
#: (file, size) with sizes from empty to 2 MiB, mostly small
FILES = st.lists(
    st.one_of(st.integers(0, 64 * KiB), st.integers(0, 2 * MiB)), min_size=0, max_size=400
).map(lambda sizes: list(enumerate(sizes)))


@settings(max_examples=60, deadline=None)
@given(SHARDS, FILES)
def test_every_file_is_planned_once_in_a_quilt_that_fits(
    n_shards: int, files: list[tuple[int, int]]
) -> None:
    params = codec.EncodingParams(n_shards)
    files = [(k, s) for k, s in files if quilt_candidate(s, 4 * MiB, params)]
    batches = quilt_batches(files, params)
    planned = [k for keys, _ in batches for k in keys]
    assert Counter(planned) == Counter(k for k, _ in files)
    size = dict(files)
    for keys, sizes in batches:
        assert keys and sizes == [size[k] for k in keys]
        assert quiltable(sizes, params)
        assert len(keys) <= params.k_s - 1
        assert quilt_blob_size(sizes, params) <= QUILT_MAX_BLOB
    # by size: a batch holds the files of a size range, the next the larger ones
    order = [size[k] for k in planned]
    assert order == sorted(order)


@settings(max_examples=60, deadline=None)
@given(SHARDS, FILES)
def test_each_batch_is_the_longest_run_that_fits(
    n_shards: int, files: list[tuple[int, int]]
) -> None:
    """Each batch is the longest run that fits: it holds k_s - 1 files or could not take the
    next (larger) one, so no quilt is split smaller than it must be."""
    params = codec.EncodingParams(n_shards)
    files = [(k, s) for k, s in files if quilt_candidate(s, 4 * MiB, params)]
    batches = quilt_batches(files, params)
    for (_, sizes), (_, after) in itertools.pairwise(batches):
        assert len(sizes) == params.k_s - 1 or not quiltable([*sizes, after[0]], params)


def test_a_quilt_is_at_most_k_s_minus_one_files() -> None:
    """A quilt's index takes a column: k_s - 1 files at most, the rest in the next quilt."""
    params = codec.EncodingParams(10)
    batches = quilt_batches([(i, 100) for i in range(15)], params)
    assert [len(keys) for keys, _ in batches] == [6, 6, 3]
    assert batch_full(batches[0][1], params) and not batch_full(batches[-1][1], params)


def test_quilt_candidates_are_small_and_fit_a_quilt_alone() -> None:
    params = codec.EncodingParams(1000)
    assert quilt_candidate(4 * MiB, 4 * MiB, params)
    assert not quilt_candidate(4 * MiB + 1, 4 * MiB, params)
    # at 10 shards a quilt's columns are few and wide: a 60 MiB file alone exceeds the cap
    assert not quilt_candidate(60 * MiB, 64 * MiB, codec.EncodingParams(10))
