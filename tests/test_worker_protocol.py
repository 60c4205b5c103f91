"""The upload worker's protocol (walrusfs/fs/worker_protocol.py): what the worker sends is
what the mount reads, errors keep their class across the process boundary, and the first
line carries the network and keys the worker runs with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import codec
from cache.blocks import BlockCachePlace
from chain import errors as chain_errors
from chain.profiles import TESTNET
from chain.wallet import Keypair
from walrusfs.fs import worker_protocol as wp
from walrusfs.store.writes import StoreResult


def _wire(obj: dict[str, object]) -> dict[str, object]:
    """Through the encoding the two processes exchange."""
    line = wp.encode(obj)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    decoded: dict[str, object] = json.loads(line)
    return decoded


def _result() -> StoreResult:
    blob_id = codec.BlobId.from_u256(12345)
    return StoreResult(blob_id, "0xab", 100, 6400, 12, True, 77, False, False, 0, ("n0", "n1"))


@pytest.mark.parametrize(
    "exc",
    [
        chain_errors.ObjectNotFound("gone"),
        chain_errors.InsufficientWal("short of WAL", 10, 3),
        chain_errors.InsufficientGas("short of SUI", 7, 1),
    ],
)
def test_chain_errors_come_back_as_themselves(exc: Exception) -> None:
    back = wp.error_from_json(_wire(wp.error_to_json(exc)))
    assert type(back) is type(exc) and str(back) == str(exc)
    if isinstance(exc, chain_errors.InsufficientFunds):
        assert isinstance(back, chain_errors.InsufficientFunds)
        assert (back.need, back.have) == (exc.need, exc.have)


def test_data_and_other_errors_keep_their_class_and_registration() -> None:
    data = _wire({**wp.error_to_json(ValueError("quilt too large")), "registered": "0x1"})
    back = wp.error_from_json(data)
    assert isinstance(back, wp.DataError) and back.registered == "0x1"
    other = wp.error_from_json(_wire({**wp.error_to_json(OSError("reset")), "registered": None}))
    assert type(other) is wp.WorkerError and not isinstance(other, wp.DataError)
    assert other.registered is None
    bug = wp.error_from_json(_wire(wp.error_to_json(KeyError("x"))))
    assert type(bug) is wp.WorkerError and "internal error" in str(bug)


def test_answers_round_trip() -> None:
    blob = wp.BlobStored(_result(), 99)
    assert wp.BlobStored.from_json(_wire(blob.to_json())) == blob
    hole = wp.BlobStored(None, 0, hole=True)
    assert wp.BlobStored.from_json(_wire(hole.to_json())) == hole
    quilt = wp.QuiltStored(_result(), {"1.0": "patch"}, {"1.0": 5}, ["2.0"])
    assert wp.QuiltStored.from_json(_wire(quilt.to_json())) == quilt
    assert wp.QuiltStored.from_json(_wire(wp.QuiltStored(None, holes=["3.0"]).to_json())) == (
        wp.QuiltStored(None, holes=["3.0"])
    )


def test_requests_carry_spans_and_the_registration_to_resume() -> None:
    upload = wp.Upload(5, {"walrusfs:kind": "data"}, resume="0xfeed")
    whole = _wire(wp.blob_request(wp.Source("/s/1.0"), upload))
    assert whole == {
        "op": "blob",
        "path": "/s/1.0",
        "epochs": 5,
        "attributes": {"walrusfs:kind": "data"},
        "resume": "0xfeed",
    }
    span = _wire(wp.blob_request(wp.Source("/s/batch", 10, 20), wp.Upload(5, {})))
    assert (span["offset"], span["length"], "resume" in span) == (10, 20, False)
    items = [wp.QuiltItem("1.0", wp.Source("/s/b", 0, 3), {"walrusfs:file": "x"})]
    quilt = _wire(wp.quilt_request(items, wp.Upload(2, {})))
    assert quilt["items"] == [["1.0", "/s/b", 0, 3, {"walrusfs:file": "x"}]]


def test_init_hands_over_network_and_keys() -> None:
    wallet = Keypair.generate()
    init = wp.Init(bytes(range(32)), TESTNET, wallet)
    back = wp.Init.from_json(_wire(init.to_json()))
    assert back.network == TESTNET and back.volume_key == bytes(range(32))
    assert back.wallet is not None and back.wallet.address == wallet.address
    assert back.blocks is None
    public = wp.Init.from_json(_wire(wp.Init(None, TESTNET, None).to_json()))
    assert public.volume_key is None and public.wallet is None
    place = BlockCachePlace(Path("/c/blocks"), 3 << 30)
    assert wp.Init.from_json(_wire(wp.Init(None, TESTNET, None, place).to_json())).blocks == place
    with pytest.raises(ValueError, match="not init"):
        wp.Init.from_json({"op": "blob"})
