"""The one place that calls the compiled Walrus encoder (`pysui_fastcrypto.redstuff_*`).

The engine is walrus-core compiled to a Python extension; it releases the GIL, so callers may
run it in worker threads on every core. Its failures arrive as `ValueError(code, message)`;
here they become the codec's typed errors so no other module matches on engine codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NoReturn

import pysui_fastcrypto as _fc

from codec.errors import (
    CodecError,
    DataTooLarge,
    InvalidParameters,
    InvalidSliver,
    MalformedBcs,
    MetadataMismatch,
    NotEnoughSlivers,
    SliverVerificationError,
)
from codec.params import EncodingParams

AxisName = Literal["primary", "secondary"]
EncodeResult = _fc.RedstuffEncodeResult
MetadataHandle = _fc.RedstuffVerifiedMetadata


def _code(exc: ValueError) -> tuple[str, str]:
    if len(exc.args) == 2 and isinstance(exc.args[0], str):
        return exc.args[0], str(exc.args[1])
    return "", str(exc)


def _raise(exc: ValueError, context: str) -> NoReturn:
    code, message = _code(exc)
    text = f"{context}: {message}"
    if code in ("invalid_n_shards", "incompatible_parameters"):
        raise InvalidParameters(text) from exc
    if code in ("invalid_metadata_bcs", "invalid_sliver_bcs"):
        raise MalformedBcs(text) from exc
    if code in ("invalid_hash_count", "blob_id_mismatch", "unencoded_length_too_large"):
        raise MetadataMismatch(text) from exc
    if code == "data_too_large":
        raise CodecError(text) from exc
    raise CodecError(f"{text} (engine code {code or 'unknown'})") from exc


def encode(data: bytes, n_shards: int) -> EncodeResult:
    """The engine's encoding of `data`: blob ID, root hash, metadata and every sliver pair.

    Raises:
        DataTooLarge: `data` exceeds the largest blob for `n_shards`.
        InvalidParameters: an impossible shard count.
    """
    try:
        return _fc.redstuff_encode(data, n_shards)
    except ValueError as exc:
        code, _ = _code(exc)
        if code == "data_too_large":
            raise DataTooLarge(len(data), EncodingParams(n_shards).max_blob_size, n_shards) from exc
        _raise(exc, "encode failed")


def verify_metadata(metadata_with_id: bytes, n_shards: int) -> MetadataHandle:
    """The engine's handle on `BlobMetadataWithId` BCS, checked to hash to its blob ID.

    Raises:
        MetadataMismatch: the hashes do not give the ID, their count is not `n_shards`, or
            the length is too large for that many shards.
        MalformedBcs: not `BlobMetadataWithId` BCS.
        InvalidParameters: an impossible shard count.
    """
    try:
        return _fc.redstuff_verify_metadata(metadata_with_id, n_shards)
    except ValueError as exc:
        _raise(exc, "metadata rejected")


def verify_sliver(sliver_bcs: bytes, handle: MetadataHandle, axis: AxisName, index: int) -> None:
    """Check a `SliverData` against the metadata `handle` verified.

    Args:
        index: the sliver index, for the error's message and fields only.

    Raises:
        SliverVerificationError: the sliver's Merkle root is not the metadata's.
        InvalidSliver: an index, length or symbol size that cannot belong to the blob.
        MalformedBcs: not `SliverData` BCS.
    """
    try:
        _fc.redstuff_verify_sliver(sliver_bcs, handle, axis)
    except ValueError as exc:
        code, message = _code(exc)
        if code == "merkle_root_mismatch":
            raise SliverVerificationError(
                f"{axis} sliver {index} does not match the blob metadata ({message})",
                axis=axis,
                index=index,
            ) from exc
        if code in ("index_too_large", "sliver_size_mismatch", "symbol_size_mismatch"):
            raise InvalidSliver(
                f"{axis} sliver {index} cannot belong to this blob: {message}",
                axis=axis,
                index=index,
            ) from exc
        _raise(exc, f"{axis} sliver {index} rejected")


def decode(slivers: Sequence[bytes], size: int, n_shards: int, axis: AxisName) -> bytes:
    """The blob of `size` bytes decoded from `SliverData` of one axis (verified beforehand:
    the engine does not check them against the metadata).

    Raises:
        NotEnoughSlivers: too few slivers to decode.
        MalformedBcs, InvalidParameters: malformed slivers or an impossible shard count.
    """
    try:
        return _fc.redstuff_decode(list(slivers), size, n_shards, axis)
    except ValueError as exc:
        code, _ = _code(exc)
        if code == "decoding_unsuccessful":
            params = EncodingParams(n_shards)
            need = params.k_p if axis == "primary" else params.k_s
            raise NotEnoughSlivers(len(slivers), need, axis) from exc
        _raise(exc, "decode failed")
