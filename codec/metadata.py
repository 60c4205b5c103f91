"""Blob metadata: the per-pair sliver hashes that commit to every byte of a blob.

Two BCS shapes travel on the wire (research/walrus-protocol.md section 5):

    BlobMetadata (body of PUT /v1/blobs/{id}/metadata), 10 + uleb_len(n) + 66n bytes:
      off  width  field
      0    1      0x00  BlobMetadata::V1 (ULEB128 enum index)
      1    1      0x01  EncodingType::RS2
      2    8      unencoded_length, u64 little-endian
      10   1..3   ULEB128(n)  number of sliver pairs (= n_shards)
      ..   66n    n x SliverPairMetadata{ primary: Node, secondary: Node }
                  Node = 0x00 (Empty) | 0x01 || 32-byte BLAKE2b-256 digest

    BlobMetadataWithId (body of GET /v1/blobs/{id}/metadata):
      32 raw blob-ID bytes || BlobMetadata

`VerifiedMetadata` is metadata whose hashes recompute to a blob ID the caller trusts (from the
chain); only it can verify slivers, so unverified metadata cannot leak into a read.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from codec import engine
from codec.bcs import Reader, uleb128
from codec.blob_id import BlobId
from codec.errors import MalformedBcs, MetadataMismatch
from codec.merkle import EMPTY_NODE, root_of_leaf_hashes
from codec.merkle import leaf_hash as _leaf
from codec.params import DIGEST_LEN, ENCODING_TYPE_RS2, EncodingParams

_METADATA_V1 = 0
_NODE_EMPTY = 0
_NODE_DIGEST = 1


@dataclass(frozen=True)
class BlobMetadata:
    """`BlobMetadata::V1`: unencoded length and, per sliver pair, the two sliver hashes.

    `hashes[p]` is `(primary_hash(p), secondary_hash(n-1-p))`: pair p holds secondary sliver
    n-1-p, and an empty node is represented by 32 zero bytes.
    """

    unencoded_length: int
    hashes: tuple[tuple[bytes, bytes], ...]
    encoding_type: int = ENCODING_TYPE_RS2

    @property
    def n_shards(self) -> int:
        return len(self.hashes)

    @cached_property
    def root_hash(self) -> bytes:
        return root_of_leaf_hashes(_leaf(p + s) for p, s in self.hashes)

    @cached_property
    def blob_id(self) -> BlobId:
        return BlobId.derive(self.root_hash, self.unencoded_length)

    def to_bcs(self) -> bytes:
        parts = [
            bytes([_METADATA_V1, self.encoding_type]),
            self.unencoded_length.to_bytes(8, "little"),
            uleb128(len(self.hashes)),
        ]
        for primary, secondary in self.hashes:
            parts.append(_node_bcs(primary))
            parts.append(_node_bcs(secondary))
        return b"".join(parts)

    def with_id_bcs(self, blob_id: BlobId | None = None) -> bytes:
        """`BlobMetadataWithId`, the GET body: the blob ID (ours unless given) then the rest."""
        return (blob_id or self.blob_id).raw + self.to_bcs()

    @classmethod
    def from_bcs(cls, buf: bytes | memoryview) -> BlobMetadata:
        """Parse inner `BlobMetadata` BCS (the PUT body); nothing is verified.

        Raises:
            MalformedBcs: not exactly one V1 RS2 `BlobMetadata`.
        """
        reader = Reader(buf)
        meta = cls._read(reader)
        reader.end()
        return meta

    @classmethod
    def _read(cls, reader: Reader) -> BlobMetadata:
        version = reader.uleb128()
        if version != _METADATA_V1:
            raise MalformedBcs(f"unknown BlobMetadata version {version}")
        encoding_type = reader.u8()
        if encoding_type != ENCODING_TYPE_RS2:
            raise MalformedBcs(
                f"unsupported encoding type {encoding_type} (only RS2 = {ENCODING_TYPE_RS2})"
            )
        length = reader.u64()
        count = reader.uleb128()
        if count * 2 > reader.remaining:
            raise MalformedBcs(f"metadata claims {count} sliver pairs but is truncated")
        hashes = tuple((_read_node(reader), _read_node(reader)) for _ in range(count))
        return cls(unencoded_length=length, hashes=hashes, encoding_type=encoding_type)


def parse_metadata_with_id(buf: bytes | memoryview) -> tuple[BlobId, BlobMetadata]:
    """Split a GET /metadata body into the blob ID it claims and the metadata (unverified).

    Raises:
        MalformedBcs: not exactly one `BlobMetadataWithId`.
    """
    reader = Reader(buf)
    blob_id = BlobId(bytes(reader.take(DIGEST_LEN)))
    meta = BlobMetadata._read(reader)
    reader.end()
    return blob_id, meta


def _node_bcs(digest: bytes) -> bytes:
    # Encoders always emit Digest nodes; an Empty node read from the wire has the same Merkle
    # value (32 zero bytes), so the blob ID is unaffected by writing it back as a Digest.
    return bytes([_NODE_DIGEST]) + digest


def _read_node(reader: Reader) -> bytes:
    tag = reader.uleb128()
    if tag == _NODE_EMPTY:
        return EMPTY_NODE
    if tag == _NODE_DIGEST:
        return bytes(reader.take(DIGEST_LEN))
    raise MalformedBcs(f"invalid Merkle node tag {tag}")


class VerifiedMetadata:
    """Metadata proven to hash to `blob_id` for a committee of `params.n_shards` shards.

    The blob ID itself must come from a trusted source (the chain or the user); this class
    proves only that the metadata belongs to it.
    """

    __slots__ = ("blob_id", "handle", "metadata", "params", "symbol_size")

    def __init__(
        self,
        blob_id: BlobId,
        metadata: BlobMetadata,
        params: EncodingParams,
        handle: engine.MetadataHandle,
    ) -> None:
        self.blob_id = blob_id
        self.metadata = metadata
        self.params = params
        self.handle = handle
        self.symbol_size = params.symbol_size(metadata.unencoded_length)

    @property
    def unencoded_length(self) -> int:
        return self.metadata.unencoded_length

    def __repr__(self) -> str:
        return (
            f"VerifiedMetadata({self.blob_id}, size={self.unencoded_length}, "
            f"n_shards={self.params.n_shards})"
        )


def verify_metadata(
    expected: BlobId, metadata: BlobMetadata | bytes | memoryview, n_shards: int
) -> VerifiedMetadata:
    """Check that `metadata` (object, inner BCS or outer BCS) belongs to blob `expected`.

    Outer BCS (`BlobMetadataWithId`, as a node returns it) is recognised by its length and must
    carry `expected` itself. `n_shards` must come from the on-chain committee.

    Raises:
        MetadataMismatch: it names or hashes to another blob, or has another shard count.
        MalformedBcs: the bytes are not metadata.
        DataTooLarge: its length exceeds the largest blob for `n_shards`.
        InvalidParameters: an impossible `n_shards`.
    """
    params = EncodingParams(n_shards)
    if not isinstance(metadata, BlobMetadata):
        raw = bytes(metadata)
        inner_len = 10 + len(uleb128(n_shards)) + 66 * n_shards
        if len(raw) == inner_len + DIGEST_LEN:
            claimed, metadata = parse_metadata_with_id(raw)
            if claimed != expected:
                raise MetadataMismatch(f"metadata is for blob {claimed}, expected {expected}")
        else:
            metadata = BlobMetadata.from_bcs(raw)
    if metadata.n_shards != n_shards:
        raise MetadataMismatch(
            f"metadata has {metadata.n_shards} sliver pairs, the committee has {n_shards} shards"
        )
    params.check_size(metadata.unencoded_length)
    if metadata.blob_id != expected:
        raise MetadataMismatch(
            f"metadata hashes to blob {metadata.blob_id}, not to the expected {expected}"
        )
    handle = engine.verify_metadata(metadata.with_id_bcs(), n_shards)
    return VerifiedMetadata(expected, metadata, params, handle)
