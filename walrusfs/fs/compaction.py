"""Compaction: quilts whose files were mostly deleted are quilted anew.

A quilt is paid for whole until its end epoch, however few of its files are left. When a
quilt of its live files alone would be below `compact_below` of its size, those files are
re-staged (Content.stage reads each patch back): the uploader quilts them again with other
small files, the old quilt's reference count drops to 0 and it is deleted like any unused
blob, its Storage reused. That costs a read of the live patches and an upload of them.

The look for sparse quilts runs on the mount's loop every COMPACT_INTERVAL and at each sync,
so it reads little: each quilt's reference count and number of unlinked files' chunks
(`blobs.quilt_states`), then the chunks of the quilts whose numbers changed since they were
last found dense, at most QUILTS_PER_LOOK of them. A quilt only becomes sparser by losing
files, which changes one of the two, so unchanged numbers need no new measure. Reading every
quilt chunk instead held the loop ~4.3 s a minute at 1,000,000 files
(docs/benchmarks.md, `bench/scale.py`); a new mount measures its quilts over its first looks.
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
#: quilts measured per look at most (~65 chunks each at 1,000,000 files: ~0.1 s of the loop)
QUILTS_PER_LOOK = 500

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
        #: quilts found dense -> their `blobs.quilt_states` then: measured again only when
        #: that changes (sealing every tag again each minute would cost a seal and a path per
        #: file)
        self._dense: dict[int, tuple[int, int]] = {}

    def sparse_quilts(self) -> list[tuple[int, list[LiveChunk]]]:
        """Quilts worth compacting, with their live chunks not re-staged yet: those where a
        quilt of the live files alone would be below `compact_below` of the quilt's size.
        Measured against the quilt a fresh upload would make, not against the file bytes, so
        a fully live quilt of tiny files (mostly column padding) is never compacted."""
        if self.compact_below <= 0:
            return []
        states = blobs.quilt_states(self.db)
        for gone in self._dense.keys() - states.keys():
            del self._dense[gone]
        changed = [b for b, state in states.items() if self._dense.get(b) != state]
        out = []
        for blob in changed[:QUILTS_PER_LOOK]:
            rows = blobs.quilt_chunks(self.db, blob)
            if not rows or any(c.staged for c in rows):
                continue  # no linked file left (deleted when unused), or being compacted
            chunks = [(c.inode, c.chunkno, c.length) for c in rows]
            lengths = [c.length for c in rows]
            limit = self.compact_below * rows[0].blob_size
            # the estimate first (cheap; with paths of ordinary length it is above the exact
            # size, so a full quilt stops here), then the exact tags for those that pass
            if (
                quilt_blob_size(lengths, self.params) >= limit
                or quilt_blob_size(lengths, self.params, self._tag_sizes(chunks)) >= limit
            ):
                self._dense[blob] = states[blob]
            else:
                out.append((blob, chunks))  # measured again next look until compacted
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
