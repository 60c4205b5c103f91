"""A checkpoint is stored byte for byte: the upload worker leaves a chunk's trailing zeros out
(its length says where it ends), and a checkpoint whose zlib stream ended in zero bytes (its
Adler-32 checksum, about 1 in 256 of them) was stored cut short and could not be restored."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from walrusfs.fs import crypto
from walrusfs.fs.checkpoint import MAGIC, CheckpointUnusable, decode_checkpoint
from walrusfs.fs.upload_worker import _read


def _stream_ending_in_zero() -> tuple[bytes, bytes]:
    """(a database's bytes, its zlib stream) where the stream's last byte is zero."""
    for i in range(100_000):
        data = b"SQLite format 3\x00" + random.Random(i).randbytes(1200)
        stream = zlib.compress(data, 6)
        if stream[-1] == 0:
            return data, stream
    raise AssertionError("no stream ending in a zero byte")


def test_the_worker_keeps_every_byte_of_an_exact_source(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint"
    path.write_bytes(b"payload\x00\x00")
    assert _read(str(path), None) == (b"payload", 7)  # a chunk: its zeros are a hole
    assert _read(str(path), None, strip=False) == (b"payload\x00\x00", 9)


@pytest.mark.parametrize("encrypted", [False, True], ids=["public", "encrypted"])
def test_a_checkpoint_cut_by_its_trailing_zeros_is_restored(encrypted: bool) -> None:
    """What older walrusfs stored: the stream without its trailing zeros."""
    data, stream = _stream_ending_in_zero()
    keys = crypto.VolumeKeys.from_volume_key(bytes(32)) if encrypted else None
    cut = MAGIC + stream.rstrip(b"\x00")
    blob = cut if keys is None else crypto.seal(keys, cut)
    assert decode_checkpoint(blob, keys) == data
    whole = MAGIC + stream
    assert decode_checkpoint(whole if keys is None else crypto.seal(keys, whole), keys) == data


def test_a_corrupt_checkpoint_is_still_refused() -> None:
    _, stream = _stream_ending_in_zero()
    with pytest.raises(CheckpointUnusable):
        decode_checkpoint(MAGIC + stream[: len(stream) // 2], None)
