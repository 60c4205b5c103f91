"""Walrus Merkle trees (walrus-core `merkle.rs`).

Leaves are `H(0x00 || data)`, inner nodes `H(0x01 || left || right)`, H = BLAKE2b-256. An odd
level is padded with one *empty* node (32 zero bytes) per level, not up to a power of two: the
two give different roots, and only this one matches the nodes and the chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from codec.params import DIGEST_LEN

EMPTY_NODE = bytes(DIGEST_LEN)


def leaf_hash(data: bytes | memoryview) -> bytes:
    h = hashlib.blake2b(b"\x00", digest_size=DIGEST_LEN)
    h.update(data)
    return h.digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.blake2b(b"\x01" + left + right, digest_size=DIGEST_LEN).digest()


def root_of_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    level = list(leaves)
    if not level:
        return EMPTY_NODE
    while len(level) > 1:
        if len(level) % 2:
            level.append(EMPTY_NODE)
        level = [inner_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def merkle_root(items: Iterable[bytes | memoryview]) -> bytes:
    return root_of_leaf_hashes(leaf_hash(item) for item in items)
