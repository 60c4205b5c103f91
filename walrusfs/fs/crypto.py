"""Encryption of a volume's content, checkpoints and file attributes (docs/formats.md).

Any blob on Walrus can be read by anyone who knows its ID, so an encrypted volume (the
default) never gives a storage node a plaintext byte: every chunk, quilt patch and checkpoint
is sealed client side as a **WFE1 stream** before it is encoded:

    offset  size  field
    0       4     magic "WFE1"
    4       16    salt: the first 16 bytes of HMAC-SHA256(dedup key, plaintext)
    20      7     nonce prefix: the next 7 bytes of that HMAC
    27      ...   segments: plaintext segment i (65,536 bytes; the last one shorter, possibly
                  empty) encrypted with AES-256-GCM, each followed by its 16-byte tag

    segment key = HKDF-SHA256(ikm = content key, salt = salt, info = "walrusfs segment v1")
    nonce i     = prefix (7) || i (u32 big-endian) || 1 if i is the last segment else 0 (1)

Segments make range reads cheap and authenticated (a 4 KiB read decrypts one 64 KiB
segment); the last-segment flag and the counter make truncation and reordering fail
authentication (the STREAM construction, as in Tink's AES-GCM-HKDF streaming AEAD). The salt
is a *keyed* hash of the plaintext: equal plaintexts give equal blobs (dedup by blob ID) while
no one without the key can test whether a volume holds a known file. Because the per-stream
key and nonces derive from the plaintext's keyed hash, a (key, nonce) pair never encrypts two
different plaintexts.

Keys: a 32-byte volume key, from `<volume>/volume.key` (0600) or derived from the wallet's
private key and the volume ID (so the wallet alone restores the volume on a new machine).
HKDF splits it into the content key, the dedup key and the metadata key (file attributes on
chain: `seal_json`).
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"WFE1"
HEADER = 27  # magic 4 + salt 16 + nonce prefix 7
SEGMENT = 64 << 10  # plaintext bytes per encrypted segment
TAG = 16
CSEGMENT = SEGMENT + TAG  # ciphertext bytes per full segment
ATTR_PREFIX = "wfe1:"  # sealed attribute values (base64url of nonce 12 || ciphertext)


class DecryptError(OSError):
    """Ciphertext that does not authenticate: corrupted, truncated, or another volume's key."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EIO, message)  # what a reader of the file gets


def _hkdf(ikm: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


@dataclass(frozen=True)
class VolumeKeys:
    content: bytes
    dedup: bytes
    meta: bytes

    @classmethod
    def from_volume_key(cls, key: bytes) -> VolumeKeys:
        """The content, dedup and metadata keys derived (HKDF) from the volume key.

        Raises:
            ValueError: `key` is not 32 bytes.
        """
        if len(key) != 32:
            raise ValueError("a volume key is 32 bytes")
        return cls(
            _hkdf(key, b"walrusfs content v1"),
            _hkdf(key, b"walrusfs dedup v1"),
            _hkdf(key, b"walrusfs metadata v1"),
        )

    def check_value(self) -> str:
        """A short fingerprint stored with the volume: a wrong key is refused at mount time
        instead of failing every read."""
        return hmac.new(self.meta, b"walrusfs key check", hashlib.sha256).hexdigest()[:16]

    def keyed_hash(self, data: bytes | memoryview) -> bytes:
        return hmac.new(self.dedup, data, hashlib.sha256).digest()


def passphrase_key(passphrase: str, volume_id: str) -> bytes:
    """A volume key from a passphrase: scrypt (N=2^15, r=8, p=1: 32 MiB, ~0.1 s), salted with
    the volume ID so one passphrase gives each volume its own key.

    Raises:
        ValueError: an empty passphrase.
    """
    if not passphrase:
        raise ValueError("an empty passphrase")
    kdf = Scrypt(
        salt=b"walrusfs passphrase v1\0" + volume_id.encode(), length=32, n=1 << 15, r=8, p=1
    )
    return kdf.derive(passphrase.encode())


def wallet_key_context(volume_id: str) -> bytes:
    """What a wallet's key is asked to derive a volume's key from (`Keypair.derive_secret`)."""
    return b"walrusfs volume key v1\0" + volume_id.encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def segments_of(plain_len: int) -> int:
    return max(1, -(-plain_len // SEGMENT))


def sealed_size(plain_len: int) -> int:
    return HEADER + plain_len + TAG * segments_of(plain_len)


def plain_size(sealed_len: int) -> int:
    """The plaintext length of a WFE1 stream of `sealed_len` bytes.

    Raises:
        DecryptError: too short to be a stream.
    """
    if sealed_len < HEADER + TAG:
        raise DecryptError(f"an encrypted stream of {sealed_len} bytes is too short")
    nseg = -(-(sealed_len - HEADER) // CSEGMENT)
    return sealed_len - HEADER - TAG * nseg


def max_plain(sealed_limit: int) -> int:
    """The longest plaintext whose sealed stream fits in `sealed_limit` bytes (a chunk that
    must fit one blob)."""
    plain = max(0, plain_size(sealed_limit)) if sealed_limit >= HEADER + TAG else 0
    while plain and sealed_size(plain) > sealed_limit:
        plain -= 1
    return plain


def seal(keys: VolumeKeys, data: bytes | memoryview) -> bytes:
    """`data` as a WFE1 stream: deterministic (the salt and nonce prefix are a keyed hash of
    the plaintext, so the same bytes seal the same), one AES-GCM tag per segment."""
    view = memoryview(data)
    mac = keys.keyed_hash(view)
    salt, prefix = mac[:16], mac[16:23]
    aead = AESGCM(_hkdf(keys.content, b"walrusfs segment v1", salt))
    nseg = segments_of(len(view))
    out = [MAGIC, salt, prefix]
    for i in range(nseg):
        piece = view[i * SEGMENT : (i + 1) * SEGMENT]
        out.append(aead.encrypt(_nonce(prefix, i, i == nseg - 1), piece, None))
    return b"".join(out)


@functools.lru_cache(maxsize=1024)
def _aead(keys: VolumeKeys, header: bytes) -> tuple[AESGCM, bytes]:
    """The stream's cipher and nonce prefix. Kept for the streams read last: a random 4 KiB
    read decrypts one 64 KiB segment (7 us), and deriving its key again (HKDF) and making
    the cipher cost more than that. AESGCM keeps no state between calls, so one object
    serves every thread."""
    if len(header) < HEADER or header[:4] != MAGIC:
        raise DecryptError("not an encrypted walrusfs stream (bad magic): a plaintext blob?")
    return AESGCM(_hkdf(keys.content, b"walrusfs segment v1", header[4:20])), header[20:27]


def open_segments(keys: VolumeKeys, header: bytes, cipher: bytes, first: int, total: int) -> bytes:
    """Decrypt consecutive segments `first`.. of a stream of `total` segments; `cipher` holds
    whole segments (the last one of the stream may be short).

    Args:
        header: the stream's first HEADER bytes.

    Raises:
        DecryptError: not a WFE1 stream, or a segment does not authenticate (another key,
            or altered bytes).
    """
    return b"".join(segment_plaintexts(keys, header, cipher, first, total))


def segment_plaintexts(
    keys: VolumeKeys, header: bytes, cipher: bytes, first: int, total: int
) -> list[bytes]:
    """`open_segments`, each segment's plaintext apart: what a reader keeping segments (the
    mount's units) takes without copying them out of one joined buffer. Raises as
    `open_segments`."""
    aead, prefix = _aead(keys, header)
    out = []
    view = memoryview(cipher)
    i = first
    pos = 0
    while pos < len(view):
        piece = view[pos : pos + CSEGMENT]
        try:
            out.append(aead.decrypt(_nonce(prefix, i, i == total - 1), piece, None))
        except InvalidTag:
            raise DecryptError(f"segment {i} of an encrypted stream does not authenticate") from (
                None
            )
        pos += len(piece)
        i += 1
    return out


def open_stream(keys: VolumeKeys, sealed: bytes) -> bytes:
    """The plaintext of a whole WFE1 stream.

    Raises:
        DecryptError: not a WFE1 stream, too short, or a segment does not authenticate.
    """
    total = segments_of(plain_size(len(sealed)))
    return open_segments(keys, sealed[:HEADER], sealed[HEADER:], 0, total)


def cipher_span(first_seg: int, nsegs: int, sealed_len: int) -> tuple[int, int]:
    """(offset, length) in the stream of segments [first_seg, first_seg + nsegs)."""
    start = HEADER + first_seg * CSEGMENT
    end = min(sealed_len, HEADER + (first_seg + nsegs) * CSEGMENT)
    return start, max(0, end - start)


def seal_json(keys: VolumeKeys | None, obj: dict[str, Any]) -> str:
    """An attribute value: sealed with the metadata key, or plain JSON on a public volume."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    if keys is None:
        return text.decode()
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(keys.meta).encrypt(nonce, text, b"walrusfs attr v1")
    return ATTR_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")


def open_json(keys: VolumeKeys | None, value: str) -> dict[str, Any]:
    """An attribute value as `seal_json` wrote it (sealed or plain JSON).

    Raises:
        DecryptError: sealed, and no key or another key.
        ValueError: not JSON of an object (including a sealed value whose base64 is bad).
    """
    if value.startswith(ATTR_PREFIX):
        if keys is None:
            raise DecryptError("an encrypted attribute, and no volume key")
        raw = value[len(ATTR_PREFIX) :]
        sealed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        try:
            text = AESGCM(keys.meta).decrypt(sealed[:12], sealed[12:], b"walrusfs attr v1")
        except InvalidTag:
            raise DecryptError("an attribute sealed with another key") from None
    else:
        text = value.encode()
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError("a walrusfs attribute is a JSON object")
    return obj
