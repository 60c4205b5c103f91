"""Red Stuff (RS2) encode, verify and decode, byte-identical to walrus-core.

The heavy lifting is the compiled engine (`codec.engine`); this module adds what the rest of
the project needs around it: slivers ordered by pair, typed verification with attribution of a
bad sliver, cheap systematic decoding, and byte-range reads from primary slivers.

The message matrix has k_p rows and k_s columns of `s`-byte symbols, filled row-major with the
zero-padded blob. Primary sliver r < k_p *is* blob bytes [r*k_s*s, (r+1)*k_s*s), so a range read
needs only the rows it touches and no decoding at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from codec import engine
from codec.blob_id import BlobId
from codec.errors import (
    InconsistentEncoding,
    InvalidParameters,
    InvalidSliver,
    NotEnoughSlivers,
    SliverVerificationError,
)
from codec.metadata import BlobMetadata, VerifiedMetadata
from codec.params import EncodingParams
from codec.sliver import Axis, Sliver, SliverPair, VerifiedSliver

OnBadSliver = Callable[[SliverVerificationError], None]


@dataclass(frozen=True)
class EncodedBlob:
    """A blob ready to upload: its ID, metadata and one sliver pair per shard.

    The slivers stay inside the engine's result until asked for: the engine copies a sliver into
    a Python `bytes` on every read, so materialising all 2n of them up front holds the encoded
    blob twice (bench/codec.py measures 13x the blob at peak that way, 9-10x walking pairs
    one at a time). The upload path walks
    `iter_pairs()` once and lets each pair go after sending it; `pairs` materialises and keeps
    them all, for callers that need random access.
    """

    blob_id: BlobId
    root_hash: bytes
    metadata_bcs: bytes
    """Inner `BlobMetadata` BCS: the body of PUT /v1/blobs/{id}/metadata."""
    unencoded_length: int
    params: EncodingParams
    _engine: engine.EncodeResult = field(repr=False)

    @cached_property
    def metadata(self) -> BlobMetadata:
        return BlobMetadata.from_bcs(self.metadata_bcs)

    @property
    def symbol_size(self) -> int:
        return self.params.symbol_size(self.unencoded_length)

    @property
    def encoded_size(self) -> int:
        return self.params.encoded_size(self.unencoded_length)

    @property
    def storage_units(self) -> int:
        return self.params.storage_units(self.unencoded_length)

    def shard_for_pair(self, pair_index: int) -> int:
        return self.params.shard_for_pair(self.blob_id.raw, pair_index)

    def pair(self, pair_index: int) -> SliverPair:
        """Sliver pair `pair_index` (the URL index), copied out of the engine's result."""
        entry = self._engine.slivers[self.shard_for_pair(pair_index)]
        return SliverPair(
            pair_index, Sliver(entry.primary, Axis.PRIMARY), Sliver(entry.secondary, Axis.SECONDARY)
        )

    def sliver(self, pair_index: int, axis: Axis) -> Sliver:
        """One sliver of pair `pair_index`, copied out of the engine's result (an upload
        takes each sliver when it sends it, so only the slivers in flight exist twice)."""
        entry = self._engine.slivers[self.shard_for_pair(pair_index)]
        if axis is Axis.PRIMARY:
            return Sliver(entry.primary, Axis.PRIMARY)
        return Sliver(entry.secondary, Axis.SECONDARY)

    def pair_for_shard(self, shard_index: int) -> SliverPair:
        return self.pair(self.params.pair_for_shard(self.blob_id.raw, shard_index))

    def iter_pairs(self) -> Iterator[SliverPair]:
        """Every pair in pair order, each materialised only when reached."""
        return (self.pair(p) for p in range(self.params.n_shards))

    @cached_property
    def pairs(self) -> tuple[SliverPair, ...]:
        """All pairs, indexed by pair index, materialised once and kept."""
        return tuple(self.iter_pairs())

    def verified_metadata(self) -> VerifiedMetadata:
        """Our own metadata as a verifier, for checking slivers read back from nodes."""
        handle = engine.verify_metadata(self.blob_id.raw + self.metadata_bcs, self.params.n_shards)
        return VerifiedMetadata(self.blob_id, self.metadata, self.params, handle)


def encode(data: bytes | bytearray | memoryview, n_shards: int) -> EncodedBlob:
    """Encode a blob for a committee of `n_shards`; releases the GIL while it runs.

    The engine call peaks at about 5.5x the blob (4.5x expansion plus the input); the result
    keeps the ~4.5x of slivers until the `EncodedBlob` is dropped.

    Raises:
        InvalidParameters: `n_shards` is below 4 or above 65535.
        DataTooLarge: `data` exceeds the largest blob for `n_shards`.
    """
    params = EncodingParams(n_shards)
    params.check_size(len(data))
    raw = data if isinstance(data, bytes) else bytes(data)
    result = engine.encode(raw, n_shards)
    blob_id = BlobId(result.blob_id)
    offset = params.rotation_offset(blob_id.raw)
    slivers = result.slivers
    if len(slivers) != n_shards or any(
        entry.sliver_pair_index != (shard - offset) % n_shards
        for shard, entry in enumerate(slivers)
    ):
        raise InvalidParameters("engine returned slivers out of the pair -> shard rotation")
    return EncodedBlob(
        blob_id=blob_id,
        root_hash=result.root_hash,
        metadata_bcs=result.metadata_bcs,
        unencoded_length=len(raw),
        params=params,
        _engine=result,
    )


def blob_id_of(data: bytes | bytearray | memoryview, n_shards: int) -> BlobId:
    """The blob ID Walrus assigns to `data` (what `walrus blob-id` prints)."""
    return encode(data, n_shards).blob_id


# -- verification ----------------------------------------------------------------------------


def verify_sliver(sliver: Sliver, meta: VerifiedMetadata) -> VerifiedSliver:
    """Prove `sliver` belongs to the blob `meta` describes.

    Raises:
        InvalidSliver: wrong axis, length, symbol size or index (the caller passed the wrong
            thing).
        SliverVerificationError: its subclass, when the shape is right but the content is
            not (whoever served it is faulty).
    """
    if isinstance(sliver, VerifiedSliver) and sliver.blob_id_raw == meta.blob_id.raw:
        return sliver
    params = meta.params
    size = meta.unencoded_length
    axis = sliver.axis
    if not 0 <= sliver.index < params.n_shards:
        raise InvalidSliver(
            f"{axis} sliver index {sliver.index} out of range for {params.n_shards} shards",
            axis=axis,
            index=sliver.index,
        )
    expected = params.sliver_len(size, axis)
    got = len(sliver.data)
    if got != expected:
        hint = ""
        if got == params.sliver_len(size, axis.other):
            hint = f"; its length fits a {axis.other} sliver: wrong axis?"
        raise InvalidSliver(
            f"{axis} sliver {sliver.index} has {got} data bytes, expected {expected}{hint}",
            axis=axis,
            index=sliver.index,
        )
    if sliver.symbol_size != meta.symbol_size:
        raise InvalidSliver(
            f"{axis} sliver {sliver.index} has symbol size {sliver.symbol_size}, "
            f"expected {meta.symbol_size}",
            axis=axis,
            index=sliver.index,
        )
    engine.verify_sliver(sliver.bcs, meta.handle, axis.value, sliver.index)
    return VerifiedSliver(sliver, meta.blob_id.raw)


def _collect_verified(
    slivers: Iterable[Sliver],
    meta: VerifiedMetadata,
    axis: Axis,
    need: int | None,
    on_bad: OnBadSliver | None,
) -> dict[int, VerifiedSliver]:
    """Verify slivers until `need` distinct good ones are in hand (all of them if None)."""
    good: dict[int, VerifiedSliver] = {}
    for sliver in slivers:
        if sliver.axis is not axis:
            raise InvalidSliver(
                f"got a {sliver.axis} sliver where {axis} slivers are needed",
                axis=sliver.axis,
                index=sliver.index,
            )
        if sliver.index in good:
            continue
        try:
            good[sliver.index] = verify_sliver(sliver, meta)
        except SliverVerificationError as exc:
            if on_bad is None:
                raise
            on_bad(exc)
            continue
        if need is not None and len(good) >= need:
            break
    return good


# -- decoding --------------------------------------------------------------------------------


def decode(
    slivers: Iterable[Sliver],
    meta: VerifiedMetadata,
    *,
    axis: Axis | str = Axis.PRIMARY,
    on_bad: OnBadSliver | None = None,
) -> bytes:
    """Rebuild the blob from k_p primary (or k_s secondary) slivers, every one verified.

    Slivers already verified (`VerifiedSliver`) are not checked again. When the systematic
    slivers are all present the blob is assembled without running the decoder. After a real
    decode, the systematic rows not received are re-hashed against the metadata (Walrus'
    default consistency check).

    Args:
        slivers: any number of slivers of `axis`; verification stops once enough are good.
        on_bad: told of each sliver that fails verification, which is then skipped so the
            remaining slivers can still suffice; None: such a sliver is raised.

    Raises:
        SliverVerificationError: a sliver does not match the metadata (without `on_bad`).
        InvalidSliver: a sliver of the other axis, or of the wrong shape.
        NotEnoughSlivers: fewer than k_p (k_s) distinct good slivers.
        InconsistentEncoding: the writer encoded the blob inconsistently; no other slivers
            can help.
    """
    axis = Axis(axis)
    params = meta.params
    need = params.k_p if axis is Axis.PRIMARY else params.k_s
    # Systematic slivers (index < need) first: if they are all there, no decoding is needed.
    ordered = sorted(slivers, key=lambda s: s.index)
    good = _collect_verified(ordered, meta, axis, need, on_bad)
    if len(good) < need:
        raise NotEnoughSlivers(len(good), need, axis.value)
    size = meta.unencoded_length

    if all(i in good for i in range(need)):
        return _assemble_systematic(good, meta, axis)

    blob = engine.decode([s.bcs for s in good.values()], size, params.n_shards, axis.value)
    received_rows = good.keys() if axis is Axis.PRIMARY else ()
    _check_systematic_rows(blob, meta, skip=set(received_rows))
    return blob


def _assemble_systematic(
    good: dict[int, VerifiedSliver], meta: VerifiedMetadata, axis: Axis
) -> bytes:
    params = meta.params
    size = meta.unencoded_length
    if axis is Axis.PRIMARY:
        # One copy: the rows' views, the last cut at the blob's end (padding dropped before
        # the join, not after it, which would copy the whole blob a second time).
        views: list[memoryview] = []
        left = size
        for r in range(params.k_p):
            if left <= 0:
                break
            data = good[r].data
            views.append(data[:left])
            left -= len(data)
        return b"".join(views)
    s = meta.symbol_size
    columns = np.frombuffer(
        b"".join(good[c].data for c in range(params.k_s)), dtype=np.uint8
    ).reshape(params.k_s, params.k_p, s)
    return columns.transpose(1, 0, 2).tobytes()[:size]


def _check_systematic_rows(blob: bytes, meta: VerifiedMetadata, skip: set[int]) -> None:
    params = meta.params
    s = meta.symbol_size
    row_len = params.k_s * s
    padded = memoryview(blob.ljust(params.k_p * row_len, b"\x00"))
    for r in range(params.k_p):
        if r in skip:
            continue
        row = Sliver.build(Axis.PRIMARY, r, s, padded[r * row_len : (r + 1) * row_len])
        try:
            verify_sliver(row, meta)
        except SliverVerificationError as exc:
            raise InconsistentEncoding(
                f"blob {meta.blob_id} decodes to data whose row {r} does not match its "
                "metadata: the writer encoded it inconsistently"
            ) from exc


def join_slivers(
    slivers: Iterable[Sliver], meta: VerifiedMetadata, axis: Axis, indices: range
) -> bytes:
    """The data of slivers `indices` of one axis, each verified, concatenated in index order.

    Rows `< k_p` concatenated are a byte range of the blob; columns concatenated are a quilt
    patch's stream. Slivers of other indices or the other axis are ignored.

    Raises:
        SliverVerificationError: a sliver does not match the metadata.
        InvalidSliver: a sliver of the wrong shape.
        NotEnoughSlivers: some of `indices` are missing (named in `missing`).
    """
    wanted = set(indices)
    got = _collect_verified(
        (s for s in slivers if s.axis is axis and s.index in wanted),
        meta,
        axis,
        len(indices),
        None,
    )
    missing = [i for i in indices if i not in got]
    if missing:
        raise NotEnoughSlivers(len(got), len(indices), axis.value, missing)
    return b"".join(got[i].data for i in indices)


# -- byte ranges -----------------------------------------------------------------------------


def rows_for_range(size: int, offset: int, length: int, params: EncodingParams) -> range:
    """The systematic primary slivers (rows) that hold blob bytes [offset, offset+length);
    empty when the range starts at or past the blob's end.

    Raises:
        InvalidParameters: a negative offset or length.
    """
    if offset < 0 or length < 0:
        raise InvalidParameters(f"invalid byte range: offset {offset}, length {length}")
    end = min(offset + length, size)
    if offset >= end:
        return range(0)
    row_len = params.primary_sliver_len(size)
    return range(offset // row_len, (end - 1) // row_len + 1)


def read_range(
    slivers: Iterable[Sliver], meta: VerifiedMetadata, offset: int, length: int
) -> bytes:
    """Blob bytes [offset, offset+length) from just the primary slivers that hold them.

    Each sliver is verified. Reads past the end of the blob are truncated, as a file read
    would be.

    Raises:
        NotEnoughSlivers: a row holding part of the range is missing.
        SliverVerificationError: a row does not match the metadata.
        InvalidParameters: a negative offset or length.
    """
    params = meta.params
    size = meta.unencoded_length
    rows = rows_for_range(size, offset, length, params)
    if not rows:
        return b""
    row_len = params.primary_sliver_len(size)
    joined = join_slivers(slivers, meta, Axis.PRIMARY, rows)
    start = offset - rows.start * row_len
    end = min(offset + length, size) - rows.start * row_len
    return joined[start:end]
