"""The codec's error taxonomy.

Every error is a `ValueError`: the codec does no I/O, so whatever goes wrong is wrong input.
The subclasses tell callers what to do about it: a `SliverVerificationError` indicts the node
that served the sliver (drop it, fetch elsewhere); the others are caller bugs or bad user input
and must not be retried.
"""

from __future__ import annotations


class CodecError(ValueError):
    """Base class of every error raised by `codec`."""


class InvalidParameters(CodecError):
    """The encoding parameters are impossible (for example fewer than 4 shards)."""


class DataTooLarge(CodecError):
    """The blob exceeds the maximum size for this shard count (symbol size > 65534)."""

    def __init__(self, size: int, max_size: int, n_shards: int) -> None:
        super().__init__(
            f"blob of {size} bytes exceeds the maximum of {max_size} bytes for "
            f"{n_shards} shards; split it into several blobs"
        )
        self.size = size
        self.max_size = max_size
        self.n_shards = n_shards


class MalformedBcs(CodecError):
    """A BCS byte string is truncated, has trailing bytes or holds an invalid value."""


class MalformedBlobId(CodecError):
    """A blob ID or quilt patch ID string does not decode to the expected number of bytes."""


class MetadataMismatch(CodecError):
    """Metadata does not hash to the blob ID it claims, or names another blob ID than expected."""


class InvalidSliver(CodecError):
    """A sliver cannot belong to this blob: wrong axis, length, symbol size or index.

    This is a caller bug (the wrong sliver was passed), not evidence against a node.
    """

    def __init__(self, message: str, *, axis: str, index: int) -> None:
        super().__init__(message)
        self.axis = axis
        self.index = index


class SliverVerificationError(InvalidSliver):
    """The sliver has the right shape but its Merkle root does not match the metadata.

    This indicts whoever served the sliver: drop that source and fetch the sliver elsewhere.
    """


class NotEnoughSlivers(CodecError):
    """Fewer verified slivers were given than the decoder needs."""

    def __init__(self, have: int, need: int, axis: str, missing: list[int] | None = None) -> None:
        text = f"need {need} verified {axis} slivers, have {have}"
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            text += f"; missing {axis} slivers {shown}"
        super().__init__(text)
        self.have = have
        self.need = need
        self.missing = missing or []


class InconsistentEncoding(CodecError):
    """The blob decodes to data whose systematic slivers do not match the metadata.

    Only a writer that encoded the blob incorrectly produces this; the blob is unreadable by
    design (Walrus would mark it invalid) and retrying with other slivers does not help.
    """


class QuiltError(CodecError):
    """A quilt cannot be built or parsed (duplicate identifier, too many patches, bad index)."""
