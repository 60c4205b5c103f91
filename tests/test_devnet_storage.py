"""A storage node's records (walrusfs/devnet/storage.py): CRC-32 records, older BLAKE2b ones
still read, and any record failing its checksum treated as absent and removed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from codec.blob_id import BlobId
from codec.sliver import Axis
from walrusfs.devnet.storage import CorruptRecord, NodeStore


def test_records_round_trip_and_rot_is_never_served(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, fsync=False)
    blob = BlobId(os.urandom(32))
    payload = os.urandom(200_000)
    store.put_sliver(blob, 3, Axis.PRIMARY, payload)
    path = tmp_path / "blobs" / str(blob) / "3.primary"
    assert path.read_bytes()[:4] == b"WSN2" and len(path.read_bytes()) == 8 + len(payload)
    assert store.get_sliver(blob, 3, Axis.PRIMARY) == payload
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0x10  # one bit of rot
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptRecord, match="checksum mismatch"):
        store.get_sliver(blob, 3, Axis.PRIMARY)
    assert not path.exists() and store.get_sliver(blob, 3, Axis.PRIMARY) is None
    store.close()


def test_blake2b_records_of_older_devnets_are_read(tmp_path: Path) -> None:
    store = NodeStore(tmp_path, fsync=False)
    blob = BlobId(os.urandom(32))
    payload = os.urandom(5000)
    path = tmp_path / "blobs" / str(blob) / "7.secondary"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"WSN1" + hashlib.blake2b(payload, digest_size=32).digest() + payload)
    assert store.get_sliver(blob, 7, Axis.SECONDARY) == payload
    path.write_bytes(b"WSN1" + bytes(32) + payload)  # a wrong digest
    with pytest.raises(CorruptRecord):
        store.get_sliver(blob, 7, Axis.SECONDARY)
    assert not path.exists()
    store.close()
