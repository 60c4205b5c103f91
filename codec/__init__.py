"""Walrus RS2 ("Red Stuff") codec: blob IDs, metadata, slivers, range reads and QuiltV1.

Pure computation, no I/O: byte-identical to walrus-core, so blobs we encode are accepted by real
storage nodes and blobs anyone stored can be read by us. Layouts are documented in
`docs/formats.md`.
"""

from codec.blob_id import BlobId
from codec.errors import (
    CodecError,
    DataTooLarge,
    InconsistentEncoding,
    InvalidParameters,
    InvalidSliver,
    MalformedBcs,
    MalformedBlobId,
    MetadataMismatch,
    NotEnoughSlivers,
    QuiltError,
    SliverVerificationError,
)
from codec.memory import release_free_memory, tune_allocator
from codec.metadata import BlobMetadata, VerifiedMetadata, parse_metadata_with_id, verify_metadata
from codec.params import BYTES_PER_UNIT_SIZE, EncodingParams, storage_units
from codec.quilt import (
    PatchContent,
    Quilt,
    QuiltItem,
    QuiltPatch,
    QuiltPatchId,
    build_quilt,
    index_from_blob,
    parse_index,
    patch_from_blob,
    read_index,
    read_patch,
)
from codec.redstuff import (
    EncodedBlob,
    blob_id_of,
    decode,
    encode,
    read_range,
    rows_for_range,
    verify_sliver,
)
from codec.sliver import Axis, Sliver, SliverPair, VerifiedSliver

__all__ = [
    "BYTES_PER_UNIT_SIZE",
    "Axis",
    "BlobId",
    "BlobMetadata",
    "CodecError",
    "DataTooLarge",
    "EncodedBlob",
    "EncodingParams",
    "InconsistentEncoding",
    "InvalidParameters",
    "InvalidSliver",
    "MalformedBcs",
    "MalformedBlobId",
    "MetadataMismatch",
    "NotEnoughSlivers",
    "PatchContent",
    "Quilt",
    "QuiltError",
    "QuiltItem",
    "QuiltPatch",
    "QuiltPatchId",
    "Sliver",
    "SliverPair",
    "SliverVerificationError",
    "VerifiedMetadata",
    "VerifiedSliver",
    "blob_id_of",
    "build_quilt",
    "decode",
    "encode",
    "index_from_blob",
    "parse_index",
    "parse_metadata_with_id",
    "patch_from_blob",
    "read_index",
    "read_patch",
    "read_range",
    "release_free_memory",
    "rows_for_range",
    "storage_units",
    "tune_allocator",
    "verify_metadata",
    "verify_sliver",
]
