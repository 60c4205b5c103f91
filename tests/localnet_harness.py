"""A stand-in chain with a test committee whose BLS keys the tests hold (they sign
confirmations the way storage nodes do)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pysui_fastcrypto as _fc

from chain.bls import BlsKeypair, aggregate
from chain.client import NetworkProfile, devnet_profile
from chain.localnet.genesis import GenesisConfig, NodeSpec
from chain.localnet.node import Localnet
from chain.localnet.server import LocalnetServer
from chain.wallet import Keypair

N_SHARDS = 10
# Four nodes; shards per node 2, 3, 2, 3 (weights). Quorum: 3w >= 2*10+1, i.e. w >= 7.
SHARDS = [[0, 1], [2, 3, 4], [5, 6], [7, 8, 9]]


@dataclass
class LocalTestnet:
    net: Localnet
    server: LocalnetServer
    profile: NetworkProfile
    node_keys: dict[bytes, BlsKeypair]  # uncompressed public key -> key

    def member_keys(self) -> list[BlsKeypair]:
        """The committee's keys in member order (the order of the signers bitmap)."""
        members = self.net.system_state().committee.members
        return [self.node_keys[m.public_key] for m in members]

    def member_weights(self) -> list[int]:
        return [m.weight for m in self.net.system_state().committee.members]

    def confirm(
        self,
        blob_id: bytes,
        signers: list[int],
        epoch: int | None = None,
        object_id: str | None = None,
    ) -> tuple[bytes, bytes, bytes]:
        """(aggregate signature, signers bitmap, message) from members `signers`."""
        epoch = self.net.walrus_epoch() if epoch is None else epoch
        if object_id is None:
            message = bytes(_fc.bls_confirmation_bytes(epoch, blob_id))
        else:
            message = bytes(
                _fc.bls_confirmation_bytes(epoch, blob_id, bytes.fromhex(object_id[2:]))
            )
        keys = self.member_keys()
        signature = aggregate([keys[i].sign(message) for i in signers])
        bitmap = bytearray((len(keys) + 7) // 8)
        for i in signers:
            bitmap[i // 8] |= 1 << (i % 8)
        return signature, bytes(bitmap), message


@contextlib.contextmanager
def localnet(
    directory: Path,
    funded: list[Keypair],
    sui: int = 10**12,
    wal: int = 10**12,
    shards: list[list[int]] | None = None,
    **genesis: Any,
) -> Iterator[LocalTestnet]:
    """A stand-in with the test committee (`shards`: each node's shards; default `SHARDS`)."""
    layout = SHARDS if shards is None else shards
    if len(layout) > 255:
        raise ValueError("at most 255 test nodes (one seed byte each)")
    keys = [BlsKeypair.from_seed(bytes([i + 1]) * 32) for i in range(len(layout))]
    nodes = [
        NodeSpec(
            f"node{i}",
            f"localhost:{9100 + i}",
            k.public_key_uncompressed,
            bytes([i]) * 32,
            layout[i],
        )
        for i, k in enumerate(keys)
    ]
    n_shards = sum(len(s) for s in layout)
    config = GenesisConfig(n_shards, nodes, [(k.address, sui, wal) for k in funded], **genesis)
    net = Localnet.genesis(directory / "ledger.db", config)
    server = LocalnetServer(net)
    port = server.start()
    dep = net.deployment
    profile = devnet_profile(port, dep.system_id, dep.staking_id, dep.wal_type, dep.exchange_id)
    try:
        yield LocalTestnet(net, server, profile, {k.public_key_uncompressed: k for k in keys})
    finally:
        server.stop()
        net.close()
