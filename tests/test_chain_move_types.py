"""Walrus Move structs: our BCS equals the official TypeScript SDK's, both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import codec
from chain import move_types as mt
from chain.localnet.moves.encoding import encoded_blob_length
from chain.pricing import extend_cost, format_wal, reserve_cost, store_cost, write_cost
from codec.errors import MalformedBcs

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "move_structs.json").read_text()
)


def _storage(v: dict[str, Any]) -> mt.Storage:
    return mt.Storage(v["id"], v["start_epoch"], v["end_epoch"], int(v["storage_size"]))


def _blob(v: dict[str, Any]) -> mt.Blob:
    return mt.Blob(
        v["id"],
        v["registered_epoch"],
        int(v["blob_id"]),
        int(v["size"]),
        v["encoding_type"],
        v["certified_epoch"],
        _storage(v["storage"]),
        v["deletable"],
    )


@pytest.mark.parametrize("name", ["blob", "blob_uncertified"])
def test_blob_bcs_matches_sdk(name: str) -> None:
    vec = VECTORS[name]
    blob = _blob(vec["value"])
    assert blob.to_bcs().hex() == vec["bcs"]
    assert mt.Blob.from_bcs(bytes.fromhex(vec["bcs"])) == blob
    assert blob.end_epoch == vec["value"]["storage"]["end_epoch"]
    assert blob.is_certified == (vec["value"]["certified_epoch"] is not None)


def test_blob_id_u256_is_the_codec_blob_id() -> None:
    blob = _blob(VECTORS["blob"]["value"])
    assert str(codec.BlobId.from_u256(blob.blob_id)) == (
        "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"  # the docs example blob
    )


def test_storage_metadata_committee_match_sdk() -> None:
    vec = VECTORS["storage"]
    assert _storage(vec["value"]).to_bcs().hex() == vec["bcs"]
    assert mt.Storage.from_bcs(bytes.fromhex(vec["bcs"])) == _storage(vec["value"])

    vec = VECTORS["metadata"]
    pairs = {e["key"]: e["value"] for e in vec["value"]["metadata"]["contents"]}
    attrs = mt.BlobAttributes.from_dict(pairs)
    assert attrs.to_bcs().hex() == vec["bcs"]
    assert mt.BlobAttributes.from_bcs(bytes.fromhex(vec["bcs"])).as_dict() == pairs
    assert list(attrs.as_dict()) == ["walrusfs:volume", "content-type"]  # VecMap keeps order

    vec = VECTORS["committee"]
    v = vec["value"]
    committee = mt.BlsCommittee(
        [
            mt.BlsCommitteeMember(bytes(m["public_key"]["bytes"]), m["weight"], m["node_id"])
            for m in v["members"]
        ],
        v["n_shards"],
        v["epoch"],
        bytes(v["total_aggregated_key"]["bytes"]),
    )
    assert committee.to_bcs().hex() == vec["bcs"]
    assert mt.BlsCommittee.from_bcs(bytes.fromhex(vec["bcs"])) == committee


def test_events_round_trip() -> None:
    events = [
        mt.BlobRegistered(3, 12345, 17, 1, 56, True, "0x" + "ab" * 32),
        mt.BlobCertified(4, 12345, 56, True, "0x" + "ab" * 32, False),
        mt.BlobDeleted(5, 12345, 56, "0x" + "ab" * 32, True),
    ]
    for ev in events:
        assert type(ev).from_bcs(ev.to_bcs()) == ev
    assert len(events[0].to_bcs()) == 4 + 32 + 8 + 1 + 4 + 1 + 32


def test_truncated_or_invalid_bcs() -> None:
    good = bytes.fromhex(VECTORS["blob"]["bcs"])
    with pytest.raises(MalformedBcs):
        mt.Blob.from_bcs(good[:-1])
    with pytest.raises(MalformedBcs, match="trailing"):
        mt.Blob.from_bcs(good + b"\x00")
    with pytest.raises(MalformedBcs, match="bool"):
        mt.Blob.from_bcs(good[:-1] + b"\x02")


def test_prices_follow_the_move_formulas() -> None:
    params = codec.EncodingParams(1000)
    one_byte = params.encoded_size(1)  # 66,034,000 B = 63 units of 1 MiB
    assert reserve_cost(one_byte, epochs=5, storage_price=100_000) == 63 * 100_000 * 5
    assert write_cost(one_byte, write_price=20_000) == 63 * 20_000
    assert extend_cost(one_byte, epochs=2, storage_price=100_000) == 63 * 100_000 * 2
    cost = store_cost(params.encoded_size(1 << 30), 1, 100_000, 20_000)  # 1 GiB: 4663 units
    assert (cost.storage, cost.write, cost.total) == (466_300_000, 93_260_000, 559_560_000)
    assert format_wal(559_560_000) == "0.559560000 WAL"
    assert format_wal(3 * 10**9 + 5) == "3.000000005 WAL"


def test_contract_encoded_length_equals_the_codec() -> None:
    """The stand-in's `encoded_blob_length` (from the Move source) and the client's codec agree,
    so a size check on chain never disagrees with what the client paid for."""
    for n_shards in (4, 10, 100, 1000):
        params = codec.EncodingParams(n_shards)
        for size in (0, 1, 2, 1000, 12345, 1 << 20, params.max_blob_size):
            if size <= params.max_blob_size:
                assert encoded_blob_length(size, n_shards) == params.encoded_size(size)
        # One byte past the codec's maximum, the contract's u16 symbol size overflows too.
        assert encoded_blob_length(params.max_blob_size + 1, n_shards) is None
