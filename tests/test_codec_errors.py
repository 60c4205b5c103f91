"""Bad input gets a typed error with a message that says what is wrong."""

from __future__ import annotations

import pytest

import codec
from codec import Axis, Sliver


@pytest.fixture(scope="module")
def blob() -> codec.EncodedBlob:
    return codec.encode(b"walrusfs error tests " * 50, 10)


@pytest.mark.parametrize("n", [-1, 0, 1, 2, 3, 65536])
def test_impossible_shard_counts(n: int) -> None:
    with pytest.raises(codec.InvalidParameters, match="n_shards"):
        codec.EncodingParams(n)
    with pytest.raises(codec.InvalidParameters):
        codec.encode(b"x", n)


def test_too_large_for_a_blob() -> None:
    params = codec.EncodingParams(4)
    assert params.max_blob_size == 6 * 65534
    codec.encode(bytes(params.max_blob_size), 4)  # the largest blob still encodes
    with pytest.raises(codec.DataTooLarge, match="exceeds the maximum of 393204 bytes") as info:
        codec.encode(bytes(params.max_blob_size + 1), 4)
    assert info.value.size == params.max_blob_size + 1
    with pytest.raises(codec.DataTooLarge):
        params.symbol_size(params.max_blob_size + 1)


def test_sliver_of_the_wrong_axis(blob: codec.EncodedBlob) -> None:
    meta = blob.verified_metadata()
    secondary_as_primary = Sliver(blob.pairs[3].secondary.bcs, Axis.PRIMARY)
    with pytest.raises(codec.InvalidSliver, match="wrong axis") as info:
        codec.verify_sliver(secondary_as_primary, meta)
    assert not isinstance(info.value, codec.SliverVerificationError)  # a caller bug, not a node
    with pytest.raises(codec.InvalidSliver, match="secondary sliver where primary"):
        codec.decode([blob.pairs[0].secondary], meta)


def test_sliver_of_the_wrong_length(blob: codec.EncodedBlob) -> None:
    meta = blob.verified_metadata()
    good = blob.pairs[2].primary
    short = Sliver.build(
        Axis.PRIMARY, good.index, good.symbol_size, bytes(good.data)[: -good.symbol_size]
    )
    with pytest.raises(codec.InvalidSliver, match="expected"):
        codec.verify_sliver(short, meta)
    wrong_symbol = Sliver.build(Axis.PRIMARY, good.index, good.symbol_size // 2, bytes(good.data))
    with pytest.raises(codec.InvalidSliver, match="symbol size"):
        codec.verify_sliver(wrong_symbol, meta)
    out_of_range = Sliver.build(Axis.PRIMARY, 10, good.symbol_size, bytes(good.data))
    with pytest.raises(codec.InvalidSliver, match="out of range"):
        codec.verify_sliver(out_of_range, meta)


def test_sliver_from_another_blob(blob: codec.EncodedBlob) -> None:
    other = codec.encode(b"another blob of the same size".ljust(1050, b"."), 10)
    assert other.symbol_size == blob.symbol_size
    with pytest.raises(codec.SliverVerificationError):
        codec.verify_sliver(other.pairs[0].primary, blob.verified_metadata())


def test_truncated_bcs(blob: codec.EncodedBlob) -> None:
    body = blob.pairs[0].primary.bcs
    for cut in (0, 1, 5, len(body) - 1):
        with pytest.raises(codec.MalformedBcs):
            Sliver(body[:cut], Axis.PRIMARY)
    with pytest.raises(codec.MalformedBcs, match="trailing"):
        Sliver(body + b"\x00", Axis.PRIMARY)
    meta = blob.metadata_bcs
    for cut in (0, 1, 9, 11, len(meta) - 1):
        with pytest.raises(codec.MalformedBcs):
            codec.BlobMetadata.from_bcs(meta[:cut])
    with pytest.raises(codec.MalformedBcs):
        codec.verify_metadata(blob.blob_id, meta[:-1], 10)
    with pytest.raises(codec.MalformedBcs, match="encoding type"):
        codec.BlobMetadata.from_bcs(meta[:1] + b"\x00" + meta[2:])


def test_metadata_for_another_blob(blob: codec.EncodedBlob) -> None:
    other = codec.encode(b"other", 10)
    with pytest.raises(codec.MetadataMismatch, match="expected"):
        codec.verify_metadata(other.blob_id, blob.metadata_bcs, 10)
    with pytest.raises(codec.MetadataMismatch, match=str(blob.blob_id)):
        codec.verify_metadata(other.blob_id, blob.metadata.with_id_bcs(), 10)
    with pytest.raises(codec.MetadataMismatch, match="committee has 13"):
        codec.verify_metadata(blob.blob_id, blob.metadata, 13)
    tampered = codec.BlobMetadata(blob.metadata.unencoded_length + 1, blob.metadata.hashes)
    with pytest.raises(codec.MetadataMismatch):
        codec.verify_metadata(blob.blob_id, tampered, 10)


def test_metadata_outer_form_accepted(blob: codec.EncodedBlob) -> None:
    meta = codec.verify_metadata(blob.blob_id, blob.metadata.with_id_bcs(), 10)
    assert meta.unencoded_length == blob.unencoded_length


@pytest.mark.parametrize(
    "text",
    [
        "",
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BU",  # 42 characters
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUkk",  # 44 characters
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BU=",  # padding
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK+W7/4BUk",  # standard alphabet
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUl",  # non-canonical last char
        "0x" + "ab" * 32,
    ],
)
def test_malformed_blob_id_strings(text: str) -> None:
    with pytest.raises(codec.MalformedBlobId):
        codec.BlobId.parse(text)


def test_blob_id_wrong_raw_length() -> None:
    with pytest.raises(codec.MalformedBlobId, match="32 bytes"):
        codec.BlobId(b"\x00" * 31)
    with pytest.raises(codec.MalformedBlobId):
        codec.BlobId.from_u256(1 << 256)


def test_not_enough_slivers(blob: codec.EncodedBlob) -> None:
    meta = blob.verified_metadata()
    k_p = blob.params.k_p
    with pytest.raises(codec.NotEnoughSlivers, match=f"need {k_p} verified primary") as info:
        codec.decode([p.primary for p in blob.pairs[: k_p - 1]], meta)
    assert info.value.have == k_p - 1
    with pytest.raises(codec.NotEnoughSlivers):
        codec.read_range([], meta, 0, 10)


def test_inconsistent_encoding_is_detected() -> None:
    """Metadata whose hashes do not come from one codeword: decoding must not return garbage.

    We forge such a blob by mixing the hashes of two encodings: rows 0..k_p-1 from blob A are
    consistent with A's data, but the metadata claims blob B's hash for a systematic row.
    """
    a = codec.encode(b"A" * 1000, 10)
    b = codec.encode(b"B" * 1000, 10)
    hashes = list(a.metadata.hashes)
    hashes[0] = (b.metadata.hashes[0][0], hashes[0][1])  # row 0 now claims B's primary hash
    forged = codec.BlobMetadata(1000, tuple(hashes))
    meta = codec.verify_metadata(forged.blob_id, forged, 10)
    # pairs 4..9 hold non-systematic primary slivers of A, which still verify against `forged`
    slivers = [a.pairs[i].primary for i in range(4, 10)]
    with pytest.raises(codec.InconsistentEncoding, match="row 0"):
        codec.decode(slivers, meta)


def test_quilt_errors() -> None:
    with pytest.raises(codec.QuiltError, match="duplicate"):
        codec.build_quilt([codec.QuiltItem("a", b"1"), codec.QuiltItem("a", b"2")], 10)
    with pytest.raises(codec.QuiltError, match="trailing whitespace"):
        codec.build_quilt([codec.QuiltItem("a ", b"1")], 10)
    with pytest.raises(codec.QuiltError, match="control"):
        codec.build_quilt([codec.QuiltItem("a\x07b", b"1")], 10)
    with pytest.raises(codec.QuiltError, match="non-empty"):
        codec.build_quilt([codec.QuiltItem("", b"1")], 10)
    with pytest.raises(codec.QuiltError, match="at least one"):
        codec.build_quilt([], 10)
    # n=4: k_s=3 columns, one is the index, so at most 2 files
    with pytest.raises(codec.QuiltError, match="too many files for one quilt: 3, at most 2"):
        codec.build_quilt([codec.QuiltItem(str(i), b"x") for i in range(3)], 4)
    with pytest.raises(codec.MalformedBlobId, match="expected 50"):
        codec.QuiltPatchId.parse(str(codec.encode(b"", 4).blob_id))  # a blob ID, not a patch ID
    with pytest.raises(codec.QuiltError, match="empty column range"):
        codec.QuiltPatchId.from_bytes(bytes(32) + b"\x01" + b"\x05\x00" + b"\x05\x00")


def test_missing_slivers_are_named(blob: codec.EncodedBlob) -> None:
    meta = blob.verified_metadata()
    row_len = blob.params.primary_sliver_len(blob.unencoded_length)
    with pytest.raises(codec.NotEnoughSlivers, match="missing primary slivers 1") as info:
        codec.read_range([blob.pairs[0].primary], meta, row_len - 1, 2)  # rows 0 and 1
    assert info.value.missing == [1]
    quilt = codec.build_quilt([codec.QuiltItem("f", b"x" * 500)], 10)
    enc = codec.encode(quilt.data, 10)
    patch = quilt.patch("f")
    with pytest.raises(codec.NotEnoughSlivers, match="missing secondary slivers"):
        codec.read_patch([], enc.verified_metadata(), patch)
