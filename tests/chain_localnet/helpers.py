"""What the tests of the Walrus chain client against the stand-in share
(tests/chain_localnet/): the two accounts, a blob encoded for 10 shards, its
registration, its certification by a quorum of the stand-in's nodes, and where a Move abort
happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import codec
from chain import errors
from chain import move_types as mt
from chain.client import WalrusChain
from chain.wallet import Keypair
from tests.localnet_harness import LocalTestnet

USER = Keypair.from_ed25519_seed(b"\x11" * 32)
OTHER = Keypair.from_ed25519_seed(b"\x22" * 32)
# Signers by member index; the harness gives members weights in ID order, so quorum is checked
# from the actual weights in the tests that need it.


@dataclass
class Encoded:
    data: bytes
    blob_id: codec.BlobId
    root_hash: int


def _encode(data: bytes) -> Encoded:
    enc = codec.encode(data, 10)
    return Encoded(data, enc.blob_id, int.from_bytes(enc.root_hash, "little"))


def _where(exc: errors.MoveAbortError) -> tuple[str, int, str | None]:
    return exc.module, exc.code, exc.name


def _quorum(tn: LocalTestnet) -> list[int]:
    """The fewest members (heaviest first) whose shards reach 3w >= 2n+1."""
    weights = tn.member_weights()
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    chosen, total = [], 0
    for i in order:
        chosen.append(i)
        total += weights[i]
        if 3 * total >= 2 * sum(weights) + 1:
            return sorted(chosen)
    raise AssertionError("no quorum")


async def _register(
    chain: WalrusChain, enc: Encoded, epochs: int = 3, deletable: bool = True, **kw: Any
) -> mt.Blob:
    blob, _, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), epochs, deletable=deletable, **kw
    )
    return blob


async def _certify(chain: WalrusChain, tn: LocalTestnet, blob: mt.Blob) -> None:
    object_id = blob.id if blob.deletable else None
    sig, bitmap, msg = tn.confirm(
        codec.BlobId.from_u256(blob.blob_id).raw, _quorum(tn), object_id=object_id
    )
    await chain.certify_blob(blob.id, sig, bitmap, msg)
