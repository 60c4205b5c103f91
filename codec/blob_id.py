"""Blob IDs: how Walrus names a blob, in the three forms the project meets.

- raw: 32 bytes (the BLAKE2b-256 of `0x01 || u64le(size) || root_hash`);
- text: URL-safe base64 without padding, 43 characters, as `walrus` prints it and as
  storage-node URLs carry it;
- chain: a Move `u256`, which is the 32 bytes read little-endian.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from codec.errors import MalformedBlobId
from codec.params import DIGEST_LEN, ENCODING_TYPE_RS2

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, *, expect_len: int, what: str) -> bytes:
    """Strict URL-safe base64 without padding: no `=`, no `+`/`/`, exact decoded length.

    Args:
        expect_len: the decoded length in bytes.
        what: what `text` is, for the error message ("blob ID", "quilt patch ID").

    Raises:
        MalformedBlobId: anything but the canonical encoding of `expect_len` bytes.
    """
    if not isinstance(text, str) or not _B64URL.match(text):
        raise MalformedBlobId(f"{what} {text!r} is not URL-safe base64 without padding")
    if len(text) != -(-expect_len * 4 // 3):
        raise MalformedBlobId(
            f"{what} {text!r} has {len(text)} characters; expected {-(-expect_len * 4 // 3)}"
        )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as exc:
        raise MalformedBlobId(f"{what} {text!r} is not valid base64: {exc}") from exc
    if len(raw) != expect_len or b64url_encode(raw) != text:
        raise MalformedBlobId(f"{what} {text!r} is not a canonical {expect_len}-byte encoding")
    return raw


class BlobId:
    """A 32-byte Walrus blob ID; immutable, hashable, ordered by raw bytes."""

    __slots__ = ("raw",)
    raw: bytes

    def __init__(self, raw: bytes) -> None:
        raw = bytes(raw)
        if len(raw) != DIGEST_LEN:
            raise MalformedBlobId(f"a blob ID is {DIGEST_LEN} bytes, got {len(raw)}")
        object.__setattr__(self, "raw", raw)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("BlobId is immutable")

    @classmethod
    def parse(cls, text: str) -> BlobId:
        """Parse the 43-character display form; anything else is a `MalformedBlobId`."""
        return cls(b64url_decode(text.strip(), expect_len=DIGEST_LEN, what="blob ID"))

    @classmethod
    def from_u256(cls, value: int) -> BlobId:
        """The blob ID of a Move u256 (its 32 bytes little-endian).

        Raises:
            MalformedBlobId: `value` is not a u256.
        """
        if not 0 <= value < 1 << 256:
            raise MalformedBlobId(f"blob ID u256 out of range: {value}")
        return cls(value.to_bytes(DIGEST_LEN, "little"))

    @classmethod
    def derive(cls, root_hash: bytes, unencoded_length: int) -> BlobId:
        """Move `blob::derive_blob_id`: BCS of `BlobIdDerivation{u8 type, u64 size, u256 root}`.

        Raises:
            MalformedBlobId: `root_hash` is not 32 bytes.
        """
        if len(root_hash) != DIGEST_LEN:
            raise MalformedBlobId(f"root hash must be {DIGEST_LEN} bytes, got {len(root_hash)}")
        h = hashlib.blake2b(digest_size=DIGEST_LEN)
        h.update(bytes([ENCODING_TYPE_RS2]))
        h.update(unencoded_length.to_bytes(8, "little"))
        h.update(root_hash)
        return cls(h.digest())

    def to_u256(self) -> int:
        """The value Move functions such as `register_blob(blob_id: u256, ...)` take."""
        return int.from_bytes(self.raw, "little")

    def __str__(self) -> str:
        return b64url_encode(self.raw)

    def __repr__(self) -> str:
        return f"BlobId({self})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlobId) and other.raw == self.raw

    def __lt__(self, other: BlobId) -> bool:
        return self.raw < other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __bytes__(self) -> bytes:
        return self.raw
