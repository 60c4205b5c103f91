"""WFE1 streams (walrusfs/fs/crypto.py): round trips, range decryption, and every way a
tampered or misplaced stream must fail to authenticate."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codec
from chain.wallet import Keypair
from walrusfs.fs import crypto, quilts, records

KEYS = crypto.VolumeKeys.from_volume_key(bytes(range(32)))
OTHER = crypto.VolumeKeys.from_volume_key(bytes(32))
S = crypto.SEGMENT


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3 * S + 7).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_round_trip_and_size(data: bytes) -> None:
    sealed = crypto.seal(KEYS, data)
    assert len(sealed) == crypto.sealed_size(len(data))
    assert crypto.plain_size(len(sealed)) == len(data)
    assert crypto.open_stream(KEYS, sealed) == data


@pytest.mark.parametrize("size", [S, 2 * S, 5 * S + 1])
def test_range_of_segments(size: int) -> None:
    data = os.urandom(size)
    sealed = crypto.seal(KEYS, data)
    total = crypto.segments_of(size)
    for first in range(total):
        for n in (1, 2):
            off, length = crypto.cipher_span(first, n, len(sealed))
            plain = crypto.open_segments(
                KEYS, sealed[: crypto.HEADER], sealed[off : off + length], first, total
            )
            assert plain == data[first * S : (first + n) * S]


def test_deterministic_per_key_and_distinct_across_keys() -> None:
    data = b"the same file twice" * 1000
    assert b"same file" not in crypto.seal(KEYS, data)
    assert crypto.seal(KEYS, data) == crypto.seal(KEYS, data)  # dedup by blob ID
    assert crypto.seal(KEYS, data) != crypto.seal(OTHER, data)
    assert crypto.seal(KEYS, data)[4:20] != crypto.seal(KEYS, data + b"x")[4:20]


def test_tampering_fails() -> None:
    data = os.urandom(3 * S)
    sealed = bytearray(crypto.seal(KEYS, data))
    with pytest.raises(crypto.DecryptError):
        crypto.open_stream(OTHER, bytes(sealed))
    flipped = bytearray(sealed)
    flipped[crypto.HEADER + S + 100] ^= 1
    with pytest.raises(crypto.DecryptError):
        crypto.open_stream(KEYS, bytes(flipped))
    # dropping the last segment: the new last one was not sealed as last
    truncated = bytes(sealed[: crypto.HEADER + 2 * crypto.CSEGMENT])
    with pytest.raises(crypto.DecryptError):
        crypto.open_stream(KEYS, truncated)
    # swapping two segments
    a = crypto.HEADER
    swapped = (
        bytes(sealed[:a])
        + bytes(sealed[a + crypto.CSEGMENT : a + 2 * crypto.CSEGMENT])
        + bytes(sealed[a : a + crypto.CSEGMENT])
        + bytes(sealed[a + 2 * crypto.CSEGMENT :])
    )
    with pytest.raises(crypto.DecryptError):
        crypto.open_stream(KEYS, swapped)
    with pytest.raises(crypto.DecryptError, match="magic"):
        crypto.open_stream(KEYS, b"plaintext that is long enough" * 10)


def test_sealed_attributes() -> None:
    value = crypto.seal_json(KEYS, {"path": "secret/name.txt", "mode": 0o100644})
    assert "secret" not in value and value.startswith(crypto.ATTR_PREFIX)
    assert crypto.open_json(KEYS, value) == {"path": "secret/name.txt", "mode": 0o100644}
    with pytest.raises(crypto.DecryptError):
        crypto.open_json(OTHER, value)
    assert crypto.open_json(None, crypto.seal_json(None, {"a": 1})) == {"a": 1}


def test_volume_key_from_wallet() -> None:
    me = Keypair.from_ed25519_seed(b"k" * 32)
    a = me.derive_secret(crypto.wallet_key_context("vol1"))
    assert len(a) == 32
    again = Keypair.from_ed25519_seed(b"k" * 32)
    assert a == again.derive_secret(crypto.wallet_key_context("vol1"))
    assert a != me.derive_secret(crypto.wallet_key_context("vol2"))
    other = Keypair.from_ed25519_seed(b"j" * 32)
    assert a != other.derive_secret(crypto.wallet_key_context("vol1"))


def test_passphrase_key_per_volume_and_passphrase() -> None:
    a = crypto.passphrase_key("correct horse battery staple", "vol-a")
    assert len(a) == 32
    assert a == crypto.passphrase_key("correct horse battery staple", "vol-a")
    assert a != crypto.passphrase_key("correct horse battery staple", "vol-b")
    assert a != crypto.passphrase_key("correct horse battery stapler", "vol-a")
    with pytest.raises(ValueError, match="empty"):
        crypto.passphrase_key("", "vol-a")


def test_quilt_planning_never_fails_on_files_no_quilt_can_hold() -> None:
    """At 10 shards three 900 KB files fit no quilt together (symbol size > 65534) and a
    1.8 MB file fits none alone: planning says so ('infinitely' large, or a blob of its own)
    instead of raising, which stopped the uploader and with it the mount."""
    params = codec.EncodingParams(10)
    assert quilts.quilt_blob_size([900_000] * 3, params) == quilts.NO_QUILT
    assert quilts.quilt_blob_size([900_000], params) < quilts.QUILT_MAX_BLOB
    assert not quilts.quilt_candidate(1_800_000, 4 << 20, params)
    assert quilts.quilt_candidate(5_000, 4 << 20, params)
    assert quilts.quilt_candidate(900_000, 4 << 20, codec.EncodingParams(1000))
    batches = quilts.quilt_batches([("a", 100), ("b", 200), ("c", 300)], params)
    assert sorted(k for keys, _ in batches for k in keys) == ["a", "b", "c"]


@pytest.mark.parametrize(("n_shards", "path_len"), [(1000, 10), (1000, 100), (100, 60)])
def test_quilt_size_estimate_never_undershoots_the_real_quilt(n_shards: int, path_len: int) -> None:
    """The planner's quilt size (quilts.quilt_blob_size) must not be smaller than the quilt
    really built: compaction compares it with the stored quilt, and an estimate below half of
    it re-compacted full quilts forever (at 1000 shards the index of 666 sealed file records
    forced a symbol size 8x the estimate). Files as the uploader quilts them: sealed 4 KiB
    records, each patch tagged with its sealed file record."""
    params = codec.EncodingParams(n_shards)
    keys = crypto.VolumeKeys.from_volume_key(os.urandom(32))
    batch = quilts.quilt_batches([(i, 4096) for i in range(3000)], params)[0][0]
    items = []
    for i in batch:
        record = {
            "path": "d/" + "x" * (path_len - 8) + f"{i:06d}",
            "inode": 10_000 + i,
            "chunk": 0,
            "chunk_size": 67_092_453,
            "mode": 0o100644,
            "uid": 1000,
            "gid": 1000,
            "size": 4096,
            "mtime_ns": 1_763_700_000_123_456_789,
            "length": crypto.sealed_size(4096),
        }
        items.append(
            codec.quilt.QuiltItem(
                f"{10_000 + i}.0",
                crypto.seal(keys, os.urandom(4096)),
                {records.FILE_ATTR: crypto.seal_json(keys, record)},
            )
        )
    quilt = codec.quilt.build_quilt(items, n_shards)
    estimate = quilts.quilt_blob_size([4096] * len(items), params)
    assert estimate >= len(quilt.data)
    assert len(quilt.data) <= quilts.QUILT_MAX_BLOB


def _sealed_record(keys: crypto.VolumeKeys | None, **fields: object) -> str:
    info = {
        "path": "a/b.txt",
        "inode": 7,
        "chunk": 1,
        "chunk_size": 1 << 20,
        "mode": 0o100640,
        "uid": 1000,
        "gid": 1000,
        "size": 1_500_000,
        "mtime_ns": 1_796_626_038_142_477_214,
        "length": 451_424,
    }
    info.update(fields)
    return crypto.seal_json(keys, info)


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_file_record_reads_back_and_names_its_version(encrypted: bool) -> None:
    keys = KEYS if encrypted else None
    value = _sealed_record(keys, v=records.RECORD_VERSION)
    got = records.read_record(value, keys, "0xb10b", "7.1")
    assert (got.path, got.inode, got.chunk, got.length, got.mode) == (
        "a/b.txt",
        7,
        1,
        451_424,
        0o100640,
    )
    assert (got.blob, got.patch) == ("0xb10b", "7.1")
    # written before the version field existed: version 1
    assert records.read_record(_sealed_record(keys), keys, "0xb10b", None).size == 1_500_000


def test_a_newer_file_record_is_refused_by_name_not_misread() -> None:
    value = _sealed_record(None, v=records.RECORD_VERSION + 1)
    with pytest.raises(ValueError, match="version 2 is newer than this walrusfs reads"):
        records.read_record(value, None, "0xb10b", None)
