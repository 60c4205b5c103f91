"""Properties of the codec that reads rely on, checked with random data and random choices."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import codec
from codec import Axis, EncodedBlob, Sliver

SMALL_N = st.sampled_from([4, 5, 7, 10, 13])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=64)
def _encode(data: bytes, n: int) -> EncodedBlob:
    return codec.encode(data, n)


@st.composite
def blobs(draw: st.DrawFn, max_size: int = 6000) -> tuple[bytes, int]:
    n = draw(SMALL_N)
    size = draw(st.one_of(st.integers(0, 64), st.integers(0, max_size)))
    data = draw(st.binary(min_size=size, max_size=size))
    return data, n


@SETTINGS
@given(blob=blobs(), data=st.data())
def test_decode_from_any_kp_primary_slivers(blob: tuple[bytes, int], data: st.DataObject) -> None:
    raw, n = blob
    enc = _encode(raw, n)
    meta = enc.verified_metadata()
    chosen = data.draw(st.permutations(range(n)))[: enc.params.k_p]
    slivers = [enc.pairs[i].primary for i in chosen]
    assert codec.decode(slivers, meta) == raw


@SETTINGS
@given(blob=blobs(), data=st.data())
def test_decode_from_any_ks_secondary_slivers(blob: tuple[bytes, int], data: st.DataObject) -> None:
    raw, n = blob
    enc = _encode(raw, n)
    chosen = data.draw(st.permutations(range(n)))[: enc.params.k_s]
    slivers = [enc.pairs[i].secondary for i in chosen]
    assert codec.decode(slivers, enc.verified_metadata(), axis=Axis.SECONDARY) == raw


def _flip(sliver: Sliver, byte: int, bit: int) -> Sliver:
    """The same sliver with one bit of its data flipped (header untouched)."""
    body = bytearray(sliver.bcs)
    start = len(body) - 4 - len(sliver.data)
    body[start + byte % len(sliver.data)] ^= 1 << bit
    return Sliver(bytes(body), sliver.axis)


@SETTINGS
@given(
    blob=blobs(max_size=3000),
    axis=st.sampled_from(list(Axis)),
    pair=st.integers(0, 12),
    byte=st.integers(0, 1 << 20),
    bit=st.integers(0, 7),
)
def test_flipped_bit_is_detected_and_attributed(
    blob: tuple[bytes, int], axis: Axis, pair: int, byte: int, bit: int
) -> None:
    raw, n = blob
    enc = _encode(raw, n)
    meta = enc.verified_metadata()
    good = enc.pairs[pair % n].sliver(axis)
    bad = _flip(good, byte, bit)

    with pytest.raises(codec.SliverVerificationError) as info:
        codec.verify_sliver(bad, meta)
    assert (info.value.axis, info.value.index) == (axis, good.index)

    # a decode that needs the bad sliver names it; with on_bad it is skipped and the blob still
    # decodes from the others (slivers beyond the threshold are never looked at)
    others = [p.sliver(axis) for p in enc.pairs if p.sliver(axis).index != good.index]
    need = enc.params.k_p if axis is Axis.PRIMARY else enc.params.k_s
    with pytest.raises(codec.SliverVerificationError) as info:
        codec.decode([bad, *others[: need - 1]], meta, axis=axis)
    assert info.value.index == good.index
    # fewer than `need` good slivers rank below the bad one, so the decoder must examine it
    before = [o for o in others if o.index < good.index][: need - 1]
    after = [o for o in others if o.index > good.index]
    if len(before) + len(after) >= need:
        reported: list[int] = []
        result = codec.decode(
            [*after, bad, *before], meta, axis=axis, on_bad=lambda e: reported.append(e.index)
        )
        assert result == raw
        assert reported == [good.index]


@SETTINGS
@given(blob=blobs(max_size=20000), data=st.data())
def test_range_read_uses_only_the_rows_it_needs(
    blob: tuple[bytes, int], data: st.DataObject
) -> None:
    raw, n = blob
    enc = _encode(raw, n)
    meta = enc.verified_metadata()
    a = data.draw(st.integers(0, len(raw) + 10))
    length = data.draw(st.integers(0, len(raw) + 10))
    rows = codec.rows_for_range(len(raw), a, length, enc.params)
    row_len = enc.params.primary_sliver_len(len(raw))
    assert all(r < enc.params.k_p for r in rows)  # only systematic slivers
    assert len(rows) <= -(-length // row_len) + 1
    given_slivers = [enc.pairs[r].primary for r in rows]  # exactly those, nothing else
    assert codec.read_range(given_slivers, meta, a, length) == raw[a : a + length]


def test_4k_range_of_a_large_blob_needs_at_most_two_slivers() -> None:
    """At n=1000 a 64 MiB blob has ~201 KB rows: any 4 KiB read touches one or two of them."""
    params = codec.EncodingParams(1000)
    size = 64 << 20
    row_len = params.primary_sliver_len(size)
    for offset in (0, row_len - 100, row_len - 4096, size // 2, size - 4096):
        assert 1 <= len(codec.rows_for_range(size, offset, 4096, params)) <= 2


identifiers = st.text(
    alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyz0123456789._-/ é漢")),
    min_size=1,
    max_size=20,
).filter(lambda s: s.rstrip() == s)
tag_maps = st.dictionaries(st.text(min_size=0, max_size=8), st.text(max_size=8), max_size=3)


@SETTINGS
@given(
    n=SMALL_N,
    items=st.lists(
        st.tuples(identifiers, st.binary(max_size=3000), tag_maps),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    ),
)
def test_quilt_patch_read_equals_file(
    n: int, items: list[tuple[str, bytes, dict[str, str]]]
) -> None:
    params = codec.EncodingParams(n)
    quilt_items = [codec.QuiltItem(i, d, t) for i, d, t in items]
    if len(quilt_items) > params.k_s - 1:
        with pytest.raises(codec.QuiltError, match="too many files"):
            codec.build_quilt(quilt_items, n)
        return
    quilt = codec.build_quilt(quilt_items, n)
    enc = _encode(quilt.data, n)
    meta = enc.verified_metadata()
    columns = {p.secondary.index: p.secondary for p in enc.pairs}
    for item in quilt_items:
        patch = quilt.patch(item.identifier)
        only_its_columns = [columns[c] for c in patch.sliver_indices]
        content = codec.read_patch(only_its_columns, meta, patch.patch_id(enc.blob_id))
        assert (content.identifier, content.data, content.tags) == (
            item.identifier,
            item.data,
            dict(item.tags),
        )
        # the fallback when those columns are unreachable: cut it out of the whole blob
        assert codec.patch_from_blob(quilt.data, meta, patch.patch_id(enc.blob_id)) == content
    # the index read from the whole blob lists every patch with its tags (fsck --rebuild)
    assert codec.index_from_blob(quilt.data, meta) == list(quilt.patches)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=32, max_size=32))
def test_blob_id_forms_round_trip(raw: bytes) -> None:
    blob_id = codec.BlobId(raw)
    text = str(blob_id)
    assert len(text) == 43
    assert codec.BlobId.parse(text) == blob_id
    assert codec.BlobId.from_u256(blob_id.to_u256()) == blob_id
    assert blob_id.to_u256() == int.from_bytes(raw, "little")


@settings(max_examples=100, deadline=None)
@given(
    raw=st.binary(min_size=32, max_size=32), start=st.integers(0, 65534), width=st.integers(1, 100)
)
def test_patch_id_round_trip(raw: bytes, start: int, width: int) -> None:
    pid = codec.QuiltPatchId(codec.BlobId(raw), start, min(start + width, 65535))
    assert len(str(pid)) == 50
    assert codec.QuiltPatchId.parse(str(pid)) == pid
