"""Our codec against golden vectors made by the official Walrus encoder (tests/vectors/).

If any of these fails, real storage nodes would reject our uploads or official clients could
not read our blobs: the blob ID, every sliver and the metadata must match bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

import codec
from codec.params import EncodingParams
from tests.tools.make_vectors import make_input

VECTORS = Path(__file__).parent / "vectors"
BLOBS: list[dict[str, Any]] = json.loads((VECTORS / "blob_ids.json").read_text())["vectors"]
QUILTS: list[dict[str, Any]] = json.loads((VECTORS / "quilts.json").read_text())["vectors"]


def _id(v: dict[str, Any]) -> str:
    return f"{v['name']}-n{v['n_shards']}"


def test_vector_coverage() -> None:
    """The issue's floor: >= 12 blobs over n in {4,10,100,1000}, empty, 1 byte, >= 3 quilts."""
    assert len(BLOBS) >= 12
    assert {v["n_shards"] for v in BLOBS} >= {4, 10, 100, 1000}
    assert any(v["unencoded_length"] == 0 for v in BLOBS)
    assert any(v["unencoded_length"] == 1 for v in BLOBS)
    assert len(QUILTS) >= 3


@pytest.mark.parametrize("vec", BLOBS, ids=_id)
def test_sizes_from_params_alone(vec: dict[str, Any]) -> None:
    """Symbol size, sliver lengths and the priced encoded length need no encoding."""
    params = EncodingParams(vec["n_shards"])
    size = vec["unencoded_length"]
    assert params.symbol_size(size) == vec["symbol_size"]
    assert params.primary_sliver_len(size) == vec["primary_sliver_len"]
    assert params.secondary_sliver_len(size) == vec["secondary_sliver_len"]
    assert params.encoded_size(size) == vec["encoded_length"]
    assert params.storage_units(size) == -(-vec["encoded_length"] // (1 << 20))


@pytest.mark.parametrize("vec", BLOBS, ids=_id)
def test_encode_matches_oracle(vec: dict[str, Any]) -> None:
    data = make_input(vec["input"])
    assert hashlib.sha256(data).hexdigest() == vec["input_sha256"]
    enc = codec.encode(data, vec["n_shards"])

    assert str(enc.blob_id) == vec["blob_id"]
    assert enc.blob_id.to_u256() == int(vec["blob_id_u256"])
    assert codec.BlobId.from_u256(int(vec["blob_id_u256"])) == enc.blob_id
    assert codec.BlobId.parse(vec["blob_id"]) == enc.blob_id
    assert enc.root_hash.hex() == vec["root_hash"]
    assert enc.symbol_size == vec["symbol_size"]
    assert enc.encoded_size == vec["encoded_length"]
    assert enc.params.rotation_offset(enc.blob_id.raw) == vec["rotation_offset"]

    # metadata: exact PUT body, and our Python Merkle/derivation agrees with the engine
    assert len(enc.metadata_bcs) == vec["metadata_bcs_len"]
    assert hashlib.sha256(enc.metadata_bcs).hexdigest() == vec["metadata_bcs_sha256"]
    assert enc.metadata.to_bcs() == enc.metadata_bcs
    assert enc.metadata.root_hash == enc.root_hash
    assert enc.metadata.blob_id == enc.blob_id
    primary_hash, secondary_hash = enc.metadata.hashes[0]
    assert primary_hash.hex() == vec["pair0_primary_hash"]
    assert secondary_hash.hex() == vec["pair0_secondary_hash"]

    # every sliver: primary slivers of pairs 0..n-1, then secondary slivers of pairs 0..n-1
    h = hashlib.sha256()
    for pair in enc.pairs:
        h.update(pair.primary.data)
    for pair in enc.pairs:
        h.update(pair.secondary.data)
    assert h.hexdigest() == vec["all_slivers_sha256"]
    p0 = enc.pairs[0]
    assert hashlib.sha256(p0.primary.bcs).hexdigest() == vec["pair0_primary_bcs_sha256"]
    assert hashlib.sha256(p0.secondary.bcs).hexdigest() == vec["pair0_secondary_bcs_sha256"]
    n = vec["n_shards"]
    assert [p.pair_index for p in enc.pairs] == list(range(n))
    assert all(
        p.primary.index == i and p.secondary.index == n - 1 - i for i, p in enumerate(enc.pairs)
    )


BODY_DIRS = sorted(p for p in (VECTORS / "bodies").iterdir() if p.is_dir())


@pytest.mark.parametrize("body_dir", BODY_DIRS, ids=lambda p: p.name)
def test_put_bodies_byte_exact(body_dir: Path) -> None:
    """Metadata and sliver bodies equal what the official client PUTs to storage nodes."""
    name, _, n = body_dir.name.rpartition("_n")
    vec = next(v for v in BLOBS if v["name"] == name)
    enc = codec.encode(make_input(vec["input"]), int(n))
    assert (body_dir / "metadata.bcs").read_bytes() == enc.metadata_bcs
    for pair in enc.pairs:
        p = pair.pair_index
        assert (body_dir / "primary" / f"{p}.bcs").read_bytes() == pair.primary.bcs
        assert (body_dir / "secondary" / f"{p}.bcs").read_bytes() == pair.secondary.bcs


def test_docs_example_sliver_layout() -> None:
    """research/walrus-protocol.md section 9: pair 0 primary of 'some other string' at n=10.

    ULEB(14) || "some other str" (k_s=7 symbols of 2 bytes) || u16 symbol size 2 || u16 index 0.
    (The research note's hex shows a stray extra 0x20 byte; 0x0e = 14 data bytes.)
    """
    enc = codec.encode(b"some other string", 10)
    assert enc.pairs[0].primary.bcs == b"\x0e" + b"some other str" + b"\x02\x00" + b"\x00\x00"


@pytest.mark.parametrize("vec", QUILTS, ids=_id)
def test_quilt_matches_oracle(vec: dict[str, Any]) -> None:
    items = [
        codec.QuiltItem(it["identifier"], make_input(it["input"]), it["tags"])
        for it in vec["items"]
    ]
    quilt = codec.build_quilt(items, vec["n_shards"])
    assert quilt.symbol_size == vec["symbol_size"]
    assert len(quilt.data) == vec["quilt_unencoded_length"]
    assert hashlib.sha256(quilt.data).hexdigest() == vec["quilt_sha256"]
    assert quilt.index_columns == vec["index_columns"]

    enc = codec.encode(quilt.data, vec["n_shards"])
    assert str(enc.blob_id) == vec["quilt_id"]
    assert enc.symbol_size == quilt.symbol_size
    got = [(p.identifier, p.start, p.end, str(p.patch_id(enc.blob_id))) for p in quilt.patches]
    want = [(p["identifier"], p["start"], p["end"], p["patch_id"]) for p in vec["patches"]]
    assert got == want

    # read back: the index from the first columns, each patch from its own columns only
    meta = enc.verified_metadata()
    secondary = {p.secondary.index: p.secondary for p in enc.pairs}
    index = codec.read_index([secondary[c] for c in range(quilt.index_columns)], meta)
    assert [(p.identifier, p.start, p.end, dict(p.tags)) for p in index] == [
        (p.identifier, p.start, p.end, dict(p.tags)) for p in quilt.patches
    ]
    by_name = {it.identifier: it for it in items}
    for want_patch in vec["patches"]:
        pid = codec.QuiltPatchId.parse(want_patch["patch_id"])
        content = codec.read_patch([secondary[c] for c in range(pid.start, pid.end)], meta, pid)
        item = by_name[content.identifier]
        assert content.identifier == want_patch["identifier"]
        assert content.data == item.data
        assert content.tags == dict(item.tags)


@pytest.mark.parametrize("vec", [v for v in BLOBS if v["n_shards"] in (10, 100)], ids=_id)
def test_pairs_route_to_the_shards_walrus_assigns(vec: dict[str, Any]) -> None:
    """A sliver pair uploaded to the wrong shard's node is rejected: routing must be exact."""
    enc = codec.encode(make_input(vec["input"]), vec["n_shards"])
    n, offset = vec["n_shards"], vec["rotation_offset"]
    for shard in range(n):
        pair = enc.pair_for_shard(shard)
        assert pair.pair_index == (shard - offset) % n
        assert enc.shard_for_pair(pair.pair_index) == shard
        assert pair.primary.bcs == enc.pairs[pair.pair_index].primary.bcs
