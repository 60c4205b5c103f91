"""BLS12-381 min_pk keys for the storage-node committee: G1 public keys, G2 signatures.

Walrus storage nodes sign confirmations with the fastcrypto `min_pk` scheme (DST
`BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_`), which is blspy's `BasicSchemeMPL`; the
signatures verify with `pysui_fastcrypto.bls_aggregate_verify` (tested). Verification stays in
pysui_fastcrypto; blspy is only used where a key must sign (devnet nodes, test committees) or
where G1 keys must be added (the committee's `total_aggregated_key`).

On chain a member key is an `Element<UncompressedG1>`: 96 bytes, x || y big-endian (ZCash
layout with the flag bits clear). Committee-level keys are compressed (48 bytes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pysui_fastcrypto as _fc
from blspy import BasicSchemeMPL, G1Element, PrivateKey

# BLS12-381 base field modulus; p = 3 (mod 4), so square roots are a single exponentiation.
_P = int(
    "1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab",
    16,
)


def g1_uncompress(compressed: bytes) -> bytes:
    """48-byte compressed G1 -> 96-byte uncompressed (the on-chain member key form).

    Raises:
        ValueError: not a compressed, finite point on the curve.
    """
    if len(compressed) != 48 or not compressed[0] & 0x80 or compressed[0] & 0x40:
        raise ValueError("not a compressed, finite BLS12-381 G1 point")
    y_is_larger = bool(compressed[0] & 0x20)
    x = int.from_bytes(bytes([compressed[0] & 0x1F]) + compressed[1:], "big")
    y = pow((x**3 + 4) % _P, (_P + 1) // 4, _P)
    if (y * y - x**3 - 4) % _P:
        raise ValueError("x is not on the BLS12-381 G1 curve")
    if (y > (_P - 1) // 2) != y_is_larger:
        y = _P - y
    return x.to_bytes(48, "big") + y.to_bytes(48, "big")


def g1_compress(public_key: bytes) -> bytes:
    """Either form -> the 48-byte compressed G1 that verification takes."""
    return public_key if len(public_key) == 48 else bytes(_fc.bls_g1_compress(public_key))


def g1_sum(public_keys: list[bytes]) -> bytes:
    """Compressed sum of G1 keys (either form): the committee's `total_aggregated_key`.

    Raises:
        ValueError: `public_keys` is empty.
    """
    if not public_keys:
        raise ValueError("no keys to add")
    points = [G1Element.from_bytes(bytes(_fc.bls_g1_compress(k))) for k in public_keys]
    total = points[0]
    for point in points[1:]:
        total = total + point
    return bytes(total)


@dataclass(frozen=True)
class BlsKeypair:
    """A storage node's protocol key. The secret stays out of `repr`."""

    _secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> BlsKeypair:
        return cls.from_seed(os.urandom(32))

    @classmethod
    def from_seed(cls, seed: bytes) -> BlsKeypair:
        """The keypair derived from `seed` (`key_gen`): the same seed, the same key.

        Raises:
            ValueError: `seed` is shorter than 32 bytes.
        """
        if len(seed) < 32:
            raise ValueError("a BLS key seed is at least 32 bytes")
        return cls(bytes(BasicSchemeMPL.key_gen(seed)))

    @property
    def public_key(self) -> bytes:
        """Compressed (48 bytes)."""
        return bytes(PrivateKey.from_bytes(self._secret).get_g1())

    @property
    def public_key_uncompressed(self) -> bytes:
        return g1_uncompress(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """96-byte G2 signature over `message` (e.g. `bls_confirmation_bytes`)."""
        return bytes(BasicSchemeMPL.sign(PrivateKey.from_bytes(self._secret), message))


def aggregate(signatures: list[bytes]) -> bytes:
    return bytes(_fc.bls_aggregate(signatures))


def aggregate_verify(signature: bytes, public_keys: list[bytes], message: bytes) -> bool:
    """True iff `signature` aggregates signatures of exactly these keys over `message`."""
    try:
        return bool(_fc.bls_aggregate_verify(signature, public_keys, message))
    except ValueError:
        return False
