"""The two pure computations `register_blob` checks a blob against: its encoded length
(`redstuff::encoded_blob_length`) and its ID (`blob::derive_blob_id`)."""

from __future__ import annotations

import hashlib


def encoded_blob_length(size: int, n_shards: int) -> int | None:
    """`redstuff::encoded_blob_length`; None where Move's `as u16` cast would abort.

    Written from the Move source rather than taken from `codec`, so the contract-side check
    stays an independent cross-check of the client's encoder (tested equal).
    """
    f = (n_shards - 1) // 3
    primary, secondary = n_shards - 2 * f, n_shards - f
    symbol_size = (max(size, 1) - 1) // (primary * secondary) + 1
    symbol_size += symbol_size % 2
    if symbol_size > 0xFFFF:
        return None
    return n_shards * ((primary + secondary) * symbol_size + n_shards * 2 * 32 + 32)


def derive_blob_id(root_hash: int, encoding_type: int, size: int) -> int:
    raw = hashlib.blake2b(
        bytes([encoding_type]) + size.to_bytes(8, "little") + root_hash.to_bytes(32, "little"),
        digest_size=32,
    ).digest()
    return int.from_bytes(raw, "little")
