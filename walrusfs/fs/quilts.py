"""Quilt planning: which small files go into one QuiltV1 blob, and how large that blob is.

Pure functions of file sizes and the network's encoding parameters, shared by the uploader
(what it uploads) and `walrusfs cost` (what that costs), so the estimate is the upload.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

import codec
from walrusfs.fs import crypto

QUILT_MAX_BLOB = 64 << 20  # quilt blob size at most (its encoding holds ~10x this in memory)
NO_QUILT = 1 << 62  # quilt_blob_size of files no quilt can hold
# QuiltV1 keeps each patch's identifier ("<inode>.<chunk>") and tags twice: before its data
# (with a 6-byte header) and in the index. The tag is the sealed file record (records.py),
# whose length grows with the file's path: TAG_ESTIMATE covers paths of ~120 bytes. The index
# must fit in the columns the patches leave free, so with hundreds of files the index sets
# the symbol size: underestimating it (at 32 bytes a file) plans quilts 8x smaller than
# built, and compaction then re-quilts full quilts forever. Sparse-quilt checks use the
# exact tags (compaction.py).
TAG_ESTIMATE = 460
ENTRY_BASE = 64  # header, identifier and tag lengths, the tag's key
INDEX_BASE = 64  # identifier, end column, the tag's key and lengths

T = TypeVar("T")


def quilt_blob_size(
    sizes: Sequence[int], params: codec.EncodingParams, tags: Sequence[int] | None = None
) -> int:
    """The quilt blob for files of these (plaintext) sizes (QuiltV1 pads every file to whole
    columns of k_p symbols, so one large file among small ones makes a huge blob); `tags`:
    the length of each file's tag, when known (else TAG_ESTIMATE each)."""
    tag = [TAG_ESTIMATE] * len(sizes) if tags is None else tags
    entries = [crypto.sealed_size(s) + ENTRY_BASE + t for s, t in zip(sizes, tag, strict=True)]
    index = codec.quilt.INDEX_PREFIX_LEN + sum(INDEX_BASE + t for t in tag)
    try:
        symbol = codec.quilt.quilt_symbol_size([index, *entries], params)
    except codec.QuiltError:
        return NO_QUILT  # beyond the largest symbol: these files make no quilt together
    return params.k_p * params.k_s * symbol


@functools.lru_cache(maxsize=4096)
def _fits_alone(size: int, n_shards: int) -> bool:
    return quilt_blob_size([size], codec.EncodingParams(n_shards)) <= QUILT_MAX_BLOB


def quilt_candidate(size: int, threshold: int, params: codec.EncodingParams) -> bool:
    """A single-chunk file goes into a quilt if it is at most `threshold` bytes and a quilt of
    it alone stays within QUILT_MAX_BLOB (at small shard counts a few MB already do not)."""
    return size <= threshold and _fits_alone(size, params.n_shards)


def quilt_batches(
    small: list[tuple[T, int]], params: codec.EncodingParams
) -> list[tuple[list[T], list[int]]]:
    """Small files in quilts of similar sizes: sorted by size, each batch the longest run
    whose quilt blob stays within QUILT_MAX_BLOB (bounded memory for its encoding, and
    little padding paid for). Each batch comes with its files' sizes."""
    max_patches = params.k_s - 1
    ordered = sorted(small, key=lambda ks: ks[1])
    batches: list[tuple[list[T], list[int]]] = []
    while ordered:
        hi = min(len(ordered), max_patches)
        sizes = [size for _, size in ordered[:hi]]
        if quilt_blob_size(sizes, params) > QUILT_MAX_BLOB:
            lo = 1  # the largest prefix that fits (one file alone always does)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if quilt_blob_size(sizes[:mid], params) <= QUILT_MAX_BLOB:
                    lo = mid
                else:
                    hi = mid - 1
            hi = lo
        batches.append(([key for key, _ in ordered[:hi]], sizes[:hi]))
        ordered = ordered[hi:]
    return batches


def batch_full(sizes: list[int], params: codec.EncodingParams) -> bool:
    """A batch (given by its files' sizes) that cannot take more files of its size."""
    if len(sizes) >= params.k_s - 1:
        return True
    return quilt_blob_size([*sizes, max(sizes)], params) > QUILT_MAX_BLOB


def quiltable(
    sizes: list[int], params: codec.EncodingParams, tags: list[int] | None = None
) -> bool:
    """Files of these sizes (and tag lengths, when known) fit in one quilt."""
    return len(sizes) <= params.k_s - 1 and quilt_blob_size(sizes, params, tags) <= QUILT_MAX_BLOB
