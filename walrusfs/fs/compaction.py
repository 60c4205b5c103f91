"""Compaction: quilts whose files were mostly deleted are quilted anew.

A quilt is paid for whole until its end epoch, however few of its files are left. When a
quilt of its live files alone would be below `compact_below` of its size, those files are
re-staged (Content.stage reads each patch back): the uploader quilts them again with other
small files, the old quilt's reference count drops to 0 and it is deleted like any unused
blob, its Storage reused. That costs a read of the live patches and an upload of them.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

import codec
from cache import Key
from walrusfs.fs import blobs
from walrusfs.fs.content import Content
from walrusfs.fs.quilts import quilt_blob_size
from walrusfs.fs.schema import files_of_blob

log = logging.getLogger(__name__)

COMPACT_INTERVAL = 60.0  # seconds between looks for sparse quilts (and at every sync)
COMPACT_BATCH = 64 << 20  # bytes re-staged per round of compaction at most

#: a live chunk of a quilt: (inode, chunkno, length)
LiveChunk = tuple[int, int, int]


class Compactor:
    def __init__(
        self,
        db: sqlite3.Connection,
        content: Content,
        params: codec.EncodingParams,
        *,
        compact_below: float,
        record: Callable[[Key, int], str],
    ) -> None:
        """`record(chunk, length)`: the chunk's sealed file record, whose exact length the
        quilt of it would hold (records.file_record)."""
        self.db = db
        self.content = content
        self.params = params
        self.compact_below = compact_below
        self.record = record
        #: quilts found not sparse with their exact tags -> their live files then (sealing
        #: every tag again each minute would cost the loop a seal and a path per file)
        self._dense: dict[int, int] = {}

    def sparse_quilts(self) -> list[tuple[int, list[LiveChunk]]]:
        """Quilts worth compacting, with their live chunks not re-staged yet: those where a
        quilt of the live files alone would be below `compact_below` of the quilt's size.
        Measured against the quilt a fresh upload would make, not against the file bytes, so
        a fully live quilt of tiny files (mostly column padding) is never compacted."""
        if self.compact_below <= 0:
            return []
        live: dict[int, list[LiveChunk]] = {}
        staged: set[int] = set()
        sizes: dict[int, int] = {}
        for c in blobs.quilt_chunks(self.db):
            sizes[c.blob] = c.blob_size
            if c.staged:
                staged.add(c.blob)
            else:
                live.setdefault(c.blob, []).append((c.inode, c.chunkno, c.length))
        out = []
        for blob, chunks in live.items():
            if blob in staged:
                continue  # being compacted already
            if self._dense.get(blob) == len(chunks):
                continue  # measured exactly, and no file of it deleted since
            lengths = [length for _, _, length in chunks]
            limit = self.compact_below * sizes[blob]
            # the estimate first (cheap; with paths of ordinary length it is above the exact
            # size, so a full quilt stops here), then the exact tags for those that pass
            if quilt_blob_size(lengths, self.params) >= limit:
                continue
            if quilt_blob_size(lengths, self.params, self._tag_sizes(chunks)) < limit:
                out.append((blob, chunks))
            else:
                self._dense[blob] = len(chunks)
        return out

    def _tag_sizes(self, chunks: list[LiveChunk]) -> list[int]:
        return [len(self.record((inode, chunkno), length)) for inode, chunkno, length in chunks]

    async def restage(self) -> tuple[int, int]:
        """Re-stage the live files of sparse quilts, COMPACT_BATCH bytes at most; (chunks
        re-staged, quilts they came from)."""
        budget = COMPACT_BATCH
        restaged = quilts = 0
        for blob, chunks in self.sparse_quilts():
            if budget <= 0:
                break
            log.info(
                "compacting quilt %d: %d live file(s) of %s re-staged",
                blob,
                len(chunks),
                ", ".join(files_of_blob(self.db, blob, limit=3)),
            )
            before = restaged
            for inode, chunkno, length in chunks:
                try:
                    await self.content.stage(inode, chunkno)
                except OSError as exc:
                    log.warning(
                        "compaction: inode %d chunk %d not re-staged: %s", inode, chunkno, exc
                    )
                    continue
                budget -= length
                restaged += 1
            if restaged > before:
                quilts += 1
        return restaged, quilts
