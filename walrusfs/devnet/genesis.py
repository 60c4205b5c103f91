"""A devnet's genesis: node keys, the committee on chain, a funded wallet, `devnet.json`.

Shards are split into contiguous ranges (node i of N holds shards [i*n/N, (i+1)*n/N)) unless
stakes are given, the committee is written into System and Staking with each node's
127.0.0.1:<port> as its network address, and the wallet is funded with SUI and WAL. Ports are
chosen here, once, because they are on chain. Everything is built in `devnet.partial` and
renamed into place: genesis is all or nothing.
"""

from __future__ import annotations

import os
import shutil

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chain.bls import BlsKeypair
from chain.localnet.node import GenesisConfig, Localnet, NodeSpec
from chain.wallet import Wallet
from walrusfs.devnet.layout import DevnetLayout, DevnetSpec
from walrusfs.devnet.node_config import NodeConfig, write_bls_key
from walrusfs.devnet.processes import free_ports
from walrusfs.errors import UsageError

SUI_PER_WALLET = 10_000 * 10**9  # MIST
WAL_PER_WALLET = 10_000 * 10**9  # FROST


def _network_key() -> bytes:
    """A node's network public key as Walrus publishes it: a compressed P-256 point (what a
    client pins a node's self-signed TLS certificate to). Devnet nodes serve plain HTTP on
    loopback, so the private half is not kept."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def shard_ranges(n_shards: int, n_nodes: int) -> list[list[int]]:
    return [
        list(range(i * n_shards // n_nodes, (i + 1) * n_shards // n_nodes)) for i in range(n_nodes)
    ]


def genesis(
    layout: DevnetLayout,
    n_nodes: int,
    n_shards: int,
    epoch_duration_ms: int,
    *,
    processes: int | None = None,
    stakes: list[int] | None = None,
) -> DevnetSpec:
    """Create the devnet under `layout.root`.

    Args:
        processes: how many storage-node processes serve the nodes (each node keeps its own
            key, port and disk; default one process per node).
        stakes: WAL (FROST) staked with each node; the shards are then apportioned by stake
            as the contract does (D'Hondt, `chain/localnet/committee.py`) instead of in equal
            contiguous ranges.

    Raises:
        UsageError: counts, stakes or the epoch duration out of range.
    """
    if n_nodes < 1 or n_shards < n_nodes:
        raise UsageError(f"need 1 <= nodes <= shards, got {n_nodes} nodes, {n_shards} shards")
    if processes is not None and not 1 <= processes <= n_nodes:
        raise UsageError(f"need 1 <= processes <= nodes, got {processes}")
    if stakes is not None and (len(stakes) != n_nodes or min(stakes) <= 0):
        raise UsageError("one positive stake per node")
    if n_shards > 65535:
        raise UsageError("at most 65535 shards")
    if epoch_duration_ms < 1000:
        raise UsageError("epoch duration must be at least 1s")
    tmp = layout.root.with_name("devnet.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "sui").mkdir(parents=True)
    sui_port, relay_port, *ports = free_ports(n_nodes + 2)
    ranges = shard_ranges(n_shards, n_nodes)
    specs: list[NodeSpec] = []
    for i in range(n_nodes):
        node_dir = tmp / "nodes" / f"node-{i}"
        node_dir.mkdir(parents=True)
        seed = os.urandom(32)
        write_bls_key(node_dir, seed)
        key = BlsKeypair.from_seed(seed)
        specs.append(
            NodeSpec(
                f"node-{i}",
                f"127.0.0.1:{ports[i]}",
                key.public_key_uncompressed,
                _network_key(),
                [] if stakes is not None else ranges[i],
                stakes[i] if stakes is not None else 0,
            )
        )
    wallet = Wallet.create(tmp / "wallet", env_alias="devnet", rpc=f"localhost:{sui_port}")
    config = GenesisConfig(
        n_shards,
        specs,
        [(wallet.active_address, SUI_PER_WALLET, WAL_PER_WALLET)],
        epoch_duration_ms=epoch_duration_ms,
        seed=os.urandom(16).hex(),
    )
    net = Localnet.genesis(tmp / "sui" / "ledger.db", config)
    dep = net.deployment
    net.close()
    chain = {
        "port": sui_port,
        "system_object": dep.system_id,
        "staking_object": dep.staking_id,
        "wal_type": dep.wal_type,
        "exchange": dep.exchange_id,
    }
    for i in range(n_nodes):
        NodeConfig(f"node-{i}", "127.0.0.1", ports[i], chain).save(tmp / "nodes" / f"node-{i}")
    # The wallet's keystore path must point at its final place.
    cfg = (tmp / "wallet" / "client.yaml").read_text(encoding="utf-8")
    (tmp / "wallet" / "client.yaml").write_text(
        cfg.replace(str(tmp / "wallet"), str(layout.wallet_dir)), encoding="utf-8"
    )
    groups: list[list[int]] = []
    if processes is not None and processes < n_nodes:
        groups = [
            list(range(j * n_nodes // processes, (j + 1) * n_nodes // processes))
            for j in range(processes)
        ]
    spec = DevnetSpec(
        n_nodes,
        n_shards,
        epoch_duration_ms,
        sui_port,
        ports,
        chain,
        wallet.active_address,
        processes=groups,
        relay_port=relay_port,
    )
    layout.write_spec(spec, tmp)
    tmp.rename(layout.root)  # genesis is all or nothing
    return spec
