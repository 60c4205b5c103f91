"""QuiltV1: many small files in one Walrus blob, each readable on its own.

Every blob pays a fixed ~64 MB encoded-size charge at 1000 shards, so small files are packed
into quilts (walrus-core `encoding/quilt_encoding.rs`, research/walrus-protocol.md section 12).
A quilt is an ordinary RS2 blob of exactly k_p*k_s*s bytes whose content is written column by
column, so each patch is a run of whole secondary slivers and can be read without the rest.

Column stream of one patch (written down the k_p rows of column c0, then c0+1, ...):

      width            field
      1                0x01           BlobHeaderV1 version
      4                length         u32 LE, bytes after this 6-byte header
      1                mask           bit 0: tags present
      2                id_len         u16 LE, length of the BCS identifier
      id_len           identifier     BCS string (ULEB128 length || UTF-8)
     [2                tags_len       u16 LE                      ] only if mask & 1
     [tags_len         tags           BCS map<string,string>      ]
      rest             data

Index (columns 0.., no header): 0x01 || u32 LE len(index) || QuiltIndexV1 BCS, where the index is
ULEB128(count) || count x (u16 LE end_column || BCS identifier || BCS tags map), patches sorted
by identifier. A patch starts where the previous one ended; the first after the index columns.

Patch ID: quilt blob ID (32 B) || 0x01 || u16 LE start_column || u16 LE end_column, printed as
50 characters of URL-safe base64 without padding.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from codec.bcs import Reader, encode_str, encode_str_map, uleb128
from codec.blob_id import BlobId, b64url_decode, b64url_encode
from codec.errors import MalformedBcs, QuiltError
from codec.metadata import VerifiedMetadata
from codec.params import DIGEST_LEN, MAX_SYMBOL_SIZE, EncodingParams
from codec.redstuff import join_slivers
from codec.sliver import Axis, Sliver

QUILT_VERSION_V1 = 1
BLOB_HEADER_LEN = 6
INDEX_PREFIX_LEN = 5
MAX_INDEX_COLUMNS = 10
MAX_IDENTIFIER_BYTES = 0xFFFF
MAX_PATCH_BYTES = 0xFFFFFFFF
TAGS_MASK = 0x01
PATCH_ID_LEN = DIGEST_LEN + 5


def validate_identifier(identifier: str) -> None:
    """walrus-core `validate_quilt_identifier`: non-empty, <= 65535 bytes, no trailing
    whitespace, no control characters.

    Raises:
        QuiltError: `identifier` breaks one of these rules.
    """
    if not isinstance(identifier, str) or not identifier:
        raise QuiltError("a quilt patch identifier must be a non-empty string")
    if len(identifier.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise QuiltError(f"quilt patch identifier longer than {MAX_IDENTIFIER_BYTES} bytes")
    if identifier.rstrip() != identifier:
        raise QuiltError(f"quilt patch identifier {identifier!r} has trailing whitespace")
    if any(unicodedata.category(ch) == "Cc" for ch in identifier):
        raise QuiltError(f"quilt patch identifier {identifier!r} contains control characters")


@dataclass(frozen=True)
class QuiltItem:
    """One file to put into a quilt."""

    identifier: str
    data: bytes
    tags: Mapping[str, str] = field(default_factory=dict)

    def entry_prefix(self) -> bytes:
        """BlobHeaderV1 + identifier section + tags section: everything before the data.

        Raises:
            QuiltError: the tags exceed 65535 serialized bytes, or the entry 4 GiB.
        """
        ident = encode_str(self.identifier)
        parts = [len(ident).to_bytes(2, "little"), ident]
        mask = 0
        if self.tags:
            tags = encode_str_map(self.tags)
            if len(tags) > 0xFFFF:
                raise QuiltError(f"tags of {self.identifier!r} exceed 65535 serialized bytes")
            parts += [len(tags).to_bytes(2, "little"), tags]
            mask |= TAGS_MASK
        body_len = sum(len(p) for p in parts) + len(self.data)
        if body_len > MAX_PATCH_BYTES:
            raise QuiltError(f"{self.identifier!r} is too large for a quilt patch (4 GiB max)")
        header = bytes([QUILT_VERSION_V1]) + body_len.to_bytes(4, "little") + bytes([mask])
        return header + b"".join(parts)


@dataclass(frozen=True)
class QuiltPatch:
    """A patch as the index describes it: columns [start, end) of the quilt."""

    identifier: str
    start: int
    end: int
    tags: Mapping[str, str] = field(default_factory=dict)

    def patch_id(self, quilt_id: BlobId) -> QuiltPatchId:
        return QuiltPatchId(quilt_id, self.start, self.end)

    @property
    def sliver_indices(self) -> range:
        """Secondary sliver indices (columns) that hold this patch."""
        return range(self.start, self.end)


@dataclass(frozen=True)
class QuiltPatchId:
    """Names one patch of one quilt: what `walrus` prints as a quilt patch ID."""

    quilt_id: BlobId
    start: int
    end: int

    def to_bytes(self) -> bytes:
        return (
            self.quilt_id.raw
            + bytes([QUILT_VERSION_V1])
            + self.start.to_bytes(2, "little")
            + self.end.to_bytes(2, "little")
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> QuiltPatchId:
        """Parse the 37 raw bytes: quilt blob ID, version, start and end column (u16 LE).

        Raises:
            QuiltError: another length or version, or an empty column range.
        """
        if len(raw) != PATCH_ID_LEN:
            raise QuiltError(f"a quilt patch ID is {PATCH_ID_LEN} bytes, got {len(raw)}")
        if raw[DIGEST_LEN] != QUILT_VERSION_V1:
            raise QuiltError(f"unsupported quilt patch ID version {raw[DIGEST_LEN]}")
        start = int.from_bytes(raw[DIGEST_LEN + 1 : DIGEST_LEN + 3], "little")
        end = int.from_bytes(raw[DIGEST_LEN + 3 :], "little")
        if start >= end:
            raise QuiltError(f"quilt patch ID has an empty column range [{start}, {end})")
        return cls(BlobId(raw[:DIGEST_LEN]), start, end)

    @classmethod
    def parse(cls, text: str) -> QuiltPatchId:
        """Parse the display form (URL-safe base64, as `walrus` prints it).

        Raises:
            MalformedBlobId: not canonical base64 of 37 bytes.
            QuiltError: the bytes are not a patch ID.
        """
        return cls.from_bytes(
            b64url_decode(text.strip(), expect_len=PATCH_ID_LEN, what="quilt patch ID")
        )

    def __str__(self) -> str:
        return b64url_encode(self.to_bytes())


@dataclass(frozen=True)
class Quilt:
    """A built quilt: the blob bytes to encode and store, and where each patch lives."""

    data: bytes
    symbol_size: int
    patches: tuple[QuiltPatch, ...]
    index_columns: int
    params: EncodingParams

    def patch(self, identifier: str) -> QuiltPatch:
        """The patch of `identifier`.

        Raises:
            KeyError: no patch has it.
        """
        for p in self.patches:
            if p.identifier == identifier:
                return p
        raise KeyError(identifier)


def _index_bcs(patches: Sequence[QuiltPatch]) -> bytes:
    out = bytearray(uleb128(len(patches)))
    for p in patches:
        out += p.end.to_bytes(2, "little")
        out += encode_str(p.identifier)
        out += encode_str_map(p.tags)
    return bytes(out)


def quilt_symbol_size(sizes: Sequence[int], params: EncodingParams) -> int:
    """walrus-core quilt `compute_symbol_size`: the smallest even symbol size that fits.

    `sizes[0]` is the index (with its 5-byte prefix), the rest are patch entries.

    Raises:
        QuiltError: more entries than columns, or a symbol size above MAX_SYMBOL_SIZE.
    """
    n_cols, n_rows = params.k_s, params.k_p
    if len(sizes) > n_cols:
        raise QuiltError(
            f"too many files for one quilt: {len(sizes) - 1}, at most {n_cols - 1} "
            f"with {params.n_shards} shards"
        )

    def fits(sym: int) -> bool:
        column = sym * n_rows
        return sum(-(-s // column) for s in sizes) <= n_cols

    lo = max(
        -(-sum(sizes) // (n_cols * n_rows)),
        -(-sizes[0] // (n_rows * MAX_INDEX_COLUMNS)),
        -(-INDEX_PREFIX_LEN // n_rows),
    )
    hi = -(-max(sizes) // (n_cols // len(sizes) * n_rows))
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    sym = lo + (lo & 1)
    if sym > MAX_SYMBOL_SIZE:
        raise QuiltError(
            f"the quilt needs symbol size {sym} > {MAX_SYMBOL_SIZE}; store fewer or smaller files"
        )
    return sym


def build_quilt(items: Iterable[QuiltItem], n_shards: int) -> Quilt:
    """Lay out `items` as a QuiltV1 blob; encode `Quilt.data` with `codec.encode` to store it.

    Raises:
        QuiltError: no items, an invalid or duplicate identifier, too many or too large
            items for `n_shards`, or an index over 10 columns.
        InvalidParameters: an impossible `n_shards`.
    """
    params = EncodingParams(n_shards)
    ordered = sorted(items, key=lambda it: it.identifier)  # str order == UTF-8 byte order
    if not ordered:
        raise QuiltError("a quilt needs at least one file")
    for it in ordered:
        validate_identifier(it.identifier)
    for a, b in itertools.pairwise(ordered):
        if a.identifier == b.identifier:
            raise QuiltError(f"duplicate quilt patch identifier {a.identifier!r}")

    prefixes = [it.entry_prefix() for it in ordered]
    entry_sizes = [len(p) + len(it.data) for p, it in zip(prefixes, ordered, strict=True)]
    # end columns are u16, so the index size does not depend on their values
    placeholder = [QuiltPatch(it.identifier, 0, 0, dict(it.tags)) for it in ordered]
    index_total = INDEX_PREFIX_LEN + len(_index_bcs(placeholder))
    sym = quilt_symbol_size([index_total, *entry_sizes], params)

    n_rows, n_cols = params.k_p, params.k_s
    column = sym * n_rows
    index_cols = -(-index_total // column)
    if index_cols > MAX_INDEX_COLUMNS:
        raise QuiltError(f"the quilt index needs {index_cols} columns, at most 10 allowed")

    # Build the column-major stream (column c = bytes [c*column, (c+1)*column)), then transpose
    # to the row-major blob once, instead of scattering symbol by symbol.
    stream = bytearray(n_cols * column)
    patches: list[QuiltPatch] = []
    col = index_cols
    for it, prefix, size in zip(ordered, prefixes, entry_sizes, strict=True):
        start = col * column
        stream[start : start + len(prefix)] = prefix
        stream[start + len(prefix) : start + size] = it.data
        used = -(-size // column)
        patches.append(QuiltPatch(it.identifier, col, col + used, dict(it.tags)))
        col += used
    index = _index_bcs(patches)
    meta = bytes([QUILT_VERSION_V1]) + len(index).to_bytes(4, "little") + index
    stream[: len(meta)] = meta

    blob = (
        np.frombuffer(stream, dtype=np.uint8)
        .reshape(n_cols, n_rows, sym)
        .transpose(1, 0, 2)
        .tobytes()
    )
    return Quilt(blob, sym, tuple(patches), index_cols, params)


# -- reading ---------------------------------------------------------------------------------


def _columns(slivers: Iterable[Sliver], meta: VerifiedMetadata, wanted: range) -> bytes:
    """Verified secondary slivers for columns `wanted`, concatenated in column order."""
    if wanted.stop > meta.params.k_s or wanted.start < 0:
        raise QuiltError(f"columns [{wanted.start}, {wanted.stop}) are outside the quilt")
    return join_slivers(slivers, meta, Axis.SECONDARY, wanted)


def parse_index(column_bytes: bytes, column_len: int) -> tuple[list[QuiltPatch], int]:
    """Parse the index from the start of the column stream.

    Returns the patches and how many columns the index occupies. `column_bytes` may hold just
    the first column.

    Raises:
        QuiltError: not a QuiltV1 index, a corrupt one, or one longer than `column_bytes`
            (the message says how many columns it spans).
    """
    reader = Reader(column_bytes)
    try:
        version = reader.u8()
        if version != QUILT_VERSION_V1:
            raise QuiltError(f"not a QuiltV1 blob (version byte {version})")
        size = reader.u32()
        if INDEX_PREFIX_LEN + size > column_len * MAX_INDEX_COLUMNS:
            raise QuiltError(f"quilt index of {size} bytes exceeds {MAX_INDEX_COLUMNS} columns")
        index_cols = -(-(INDEX_PREFIX_LEN + size) // column_len)
        if INDEX_PREFIX_LEN + size > len(column_bytes):
            raise QuiltError(f"the quilt index spans {index_cols} columns; read them all")
        body = Reader(reader.take(size))
        patches: list[QuiltPatch] = []
        start = index_cols
        for _ in range(body.uleb128()):
            end = body.u16()
            identifier = body.string()
            tags = body.str_map()
            if end <= start:
                raise QuiltError(f"quilt index entry {identifier!r} has columns [{start}, {end})")
            patches.append(QuiltPatch(identifier, start, end, tags))
            start = end
        body.end()
    except MalformedBcs as exc:
        raise QuiltError(f"corrupt quilt index: {exc}") from exc
    return patches, index_cols


def read_index(slivers: Iterable[Sliver], meta: VerifiedMetadata) -> list[QuiltPatch]:
    """The patches of a quilt, from its first secondary slivers (columns 0..).

    Raises:
        NotEnoughSlivers: a column of the index is missing from `slivers`.
        SliverVerificationError: a sliver does not match the metadata.
        QuiltError: the blob holds no valid quilt index.
    """
    pool = list(slivers)
    column_len = meta.params.k_p * meta.symbol_size
    first = _columns(pool, meta, range(1))
    total = INDEX_PREFIX_LEN + int.from_bytes(first[1:5], "little")
    cols = min(-(-total // column_len), MAX_INDEX_COLUMNS)
    data = first if cols == 1 else _columns(pool, meta, range(cols))
    return parse_index(data, column_len)[0]


@dataclass(frozen=True)
class PatchContent:
    identifier: str
    tags: dict[str, str]
    data: bytes


def parse_patch(stream: bytes | memoryview) -> PatchContent:
    """Parse one patch's column stream (its secondary slivers concatenated).

    Raises:
        QuiltError: the stream is not one well-formed patch.
    """
    reader = Reader(stream)
    try:
        version = reader.u8()
        if version != QUILT_VERSION_V1:
            raise QuiltError(f"bad quilt patch header version {version}")
        length = reader.u32()
        mask = reader.u8()
        if length > reader.remaining:
            raise QuiltError(f"quilt patch claims {length} bytes, only {reader.remaining} exist")
        body = Reader(reader.take(length))
        ident_len = body.u16()
        ident_reader = Reader(body.take(ident_len))
        identifier = ident_reader.string()
        ident_reader.end()
        tags: dict[str, str] = {}
        if mask & TAGS_MASK:
            tags_reader = Reader(body.take(body.u16()))
            tags = tags_reader.str_map()
            tags_reader.end()
        data = bytes(body.take(body.remaining))
    except MalformedBcs as exc:
        raise QuiltError(f"corrupt quilt patch: {exc}") from exc
    return PatchContent(identifier, tags, data)


def read_patch(
    slivers: Iterable[Sliver], meta: VerifiedMetadata, patch: QuiltPatch | QuiltPatchId
) -> PatchContent:
    """One file of a quilt from just the secondary slivers of its columns, each verified.

    Raises:
        QuiltError: a patch ID of another quilt, columns outside this one, or a corrupt
            patch.
        NotEnoughSlivers: a column of the patch is missing from `slivers`.
        SliverVerificationError: a sliver does not match the metadata.
    """
    if isinstance(patch, QuiltPatchId) and patch.quilt_id != meta.blob_id:
        raise QuiltError(f"patch ID belongs to quilt {patch.quilt_id}, not {meta.blob_id}")
    return parse_patch(_columns(slivers, meta, range(patch.start, patch.end)))


def patch_from_blob(
    blob: bytes, meta: VerifiedMetadata, patch: QuiltPatch | QuiltPatchId
) -> PatchContent:
    """One file of a quilt cut out of the whole quilt blob: the fallback when the secondary
    slivers of its columns cannot be fetched (the blob then comes from any k_p primary
    slivers). The blob is the k_p x k_s symbol matrix in row order; a patch is columns.

    Raises:
        QuiltError: a patch ID of another quilt, a blob of another length than `meta`'s,
            columns outside the quilt, or a corrupt patch.
    """
    if isinstance(patch, QuiltPatchId) and patch.quilt_id != meta.blob_id:
        raise QuiltError(f"patch ID belongs to quilt {patch.quilt_id}, not {meta.blob_id}")
    return parse_patch(_blob_columns(blob, meta, range(patch.start, patch.end)))


def index_from_blob(blob: bytes, meta: VerifiedMetadata) -> list[QuiltPatch]:
    """The patches of a quilt read whole (listing every file of a quilt, as `fsck --rebuild`
    does, costs one blob read instead of a sliver request per column).

    Raises:
        QuiltError: a blob of another length than `meta`'s, or no valid quilt index.
    """
    column_len = meta.params.k_p * meta.symbol_size
    first = _blob_columns(blob, meta, range(1))
    total = INDEX_PREFIX_LEN + int.from_bytes(first[1:5], "little")
    cols = min(-(-total // column_len), MAX_INDEX_COLUMNS, meta.params.k_s)
    data = first if cols == 1 else _blob_columns(blob, meta, range(cols))
    return parse_index(data, column_len)[0]


def _blob_columns(blob: bytes, meta: VerifiedMetadata, wanted: range) -> bytes:
    """Columns `wanted` of a whole quilt blob (the k_p x k_s symbol matrix in row order)."""
    params, sym = meta.params, meta.symbol_size
    if wanted.stop > params.k_s or len(blob) != meta.unencoded_length:
        raise QuiltError(f"columns [{wanted.start}, {wanted.stop}) are outside the quilt")
    matrix = np.zeros(params.k_p * params.k_s * sym, dtype=np.uint8)
    matrix[: len(blob)] = np.frombuffer(blob, dtype=np.uint8)
    cols = matrix.reshape(params.k_p, params.k_s, sym)[:, wanted.start : wanted.stop, :]
    return cols.transpose(1, 0, 2).tobytes()
