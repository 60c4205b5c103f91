"""Genesis of a devnet ledger: the Walrus deployment's packages and shared objects (System,
Staking and their inner states, the storage nodes' pools, the WAL exchange) and the funded
accounts' coins, from a `GenesisConfig`. Object IDs derive from the config's seed, so the
same config always yields the same chain."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from chain import move_types as mt
from chain.bls import g1_sum
from chain.localnet.committee import apportionment, initialize
from chain.localnet.digests import object_digest
from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_OBJECT,
    OWNER_SHARED,
    Ledger,
    StoredObject,
)
from chain.localnet.moves.deployment import STAKING_VERSION, SYSTEM_VERSION, Deployment, field_type

FROST_PER_WAL = 10**9
STAKE_PER_SHARD = 1_000_000 * FROST_PER_WAL


@dataclass(frozen=True)
class NodeSpec:
    """A storage node of the devnet committee."""

    name: str
    network_address: str  # host:port of its REST API
    bls_public_key: bytes  # 96-byte uncompressed G1
    network_public_key: bytes
    shards: list[int]
    #: WAL staked with the node (FROST); 0: proportional to its shards (STAKE_PER_SHARD each),
    #: so that the contract's apportionment at the next epoch keeps the genesis assignment
    stake: int = 0


@dataclass(frozen=True)
class GenesisConfig:
    n_shards: int
    nodes: list[NodeSpec]
    funded: list[tuple[str, int, int]]  # (address, MIST, FROST)
    storage_price: int = 100_000  # FROST per MiB unit per epoch
    write_price: int = 20_000  # FROST per MiB unit
    total_capacity: int = 1 << 50
    max_epochs_ahead: int = 53
    epoch_duration_ms: int = 24 * 3600 * 1000
    reference_gas_price: int = 1_000
    exchange_wal: int = 10**9 * FROST_PER_WAL
    exchange_rate: tuple[int, int] = (1, 1)  # (wal, sui): 1 MIST buys 1 FROST
    seed: str = "walrusfs-devnet"
    coins_per_account: int = 2


def _derived_id(seed: str, name: str) -> str:
    return "0x" + hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=32).hexdigest()


def write_genesis(path: Path, config: GenesisConfig) -> tuple[Ledger, Deployment]:
    """Create the ledger at `path`: packages, System, Staking, Exchange, pools and funded
    coins.

    Raises:
        FileExistsError: `path` already holds a devnet ledger (left as it is).
    """
    ledger = Ledger(path)
    if ledger.meta("system_id") is not None:
        ledger.close()
        raise FileExistsError(f"{path} already holds a devnet ledger")
    seed = config.seed
    dep = Deployment(
        walrus_pkg=_derived_id(seed, "walrus"),
        wal_pkg=_derived_id(seed, "wal"),
        exchange_pkg=_derived_id(seed, "wal_exchange"),
        system_id=_derived_id(seed, "system"),
        staking_id=_derived_id(seed, "staking"),
        exchange_id=_derived_id(seed, "exchange"),
    )
    now_ms = int(time.time() * 1000)
    objects: list[StoredObject] = []

    def add(
        object_id: str,
        type_: str,
        contents: bytes,
        owner_kind: int,
        owner: str | None,
        *,
        df: tuple[str, bytes, str] | None = None,
    ) -> None:
        obj = StoredObject(
            object_id,
            1,
            "",
            owner_kind,
            owner,
            1 if owner_kind == OWNER_SHARED else None,
            type_,
            contents,
            "genesis",
            *(df or (None, None, None)),
        )
        obj.digest = object_digest(obj)
        objects.append(obj)

    def add_versioned(
        root_id: str, root_type: str, version: int, value_type: str, inner: mt.MoveStruct
    ) -> None:
        """A shared `{ id, version, package_id, ... }` root and its inner-state field."""
        root = mt.VersionedRoot(root_id, version, dep.walrus_pkg, None)
        add(root_id, root_type, root.to_bcs(), OWNER_SHARED, None)
        field_id = mt.versioned_inner_id(root_id, version)
        key = version.to_bytes(8, "little")
        contents = mt.field_contents(field_id, key, inner.to_bcs())
        type_ = field_type("u64", value_type)
        add(field_id, type_, contents, OWNER_OBJECT, root_id, df=("u64", key, value_type))

    nodes = sorted(
        ((_derived_id(seed, f"node/{n.name}"), n) for n in config.nodes), key=lambda p: p[0]
    )
    if all(not n.shards for _, n in nodes):
        # as the contract's first committee: shards apportioned by stake (D'Hondt), handed
        # out in node-ID order (`committee::initialize`)
        if any(n.stake <= 0 for _, n in nodes):
            raise ValueError("without explicit shards every node needs a stake")
        counts = apportionment(config.n_shards, [(i, n.stake) for i, n in nodes])
        given = dict(initialize(counts))
        nodes = [
            (i, dataclasses.replace(n, shards=given.get(i, []))) for i, n in nodes if i in given
        ]
    assigned = sorted(s for _, n in nodes for s in n.shards)
    if assigned != list(range(config.n_shards)):
        raise ValueError("the nodes' shards must be exactly 0..n_shards-1, each once")
    members = [
        mt.BlsCommitteeMember(n.bls_public_key, len(n.shards), node_id) for node_id, n in nodes
    ]
    committee = mt.BlsCommittee(
        members,
        config.n_shards,
        0,
        g1_sum([m.public_key for m in members]),
    )
    ring = mt.FutureAccountingRingBuffer(
        0,
        config.max_epochs_ahead,
        [mt.FutureAccounting(e, 0, 0) for e in range(config.max_epochs_ahead)],
    )
    inner = mt.SystemStateInnerV1(
        committee,
        config.total_capacity,
        0,
        config.storage_price,
        config.write_price,
        ring,
        mt.EventBlobCertificationState(None, []),
        _derived_id(seed, "deny_list_sizes"),
    )
    add_versioned(
        dep.system_id,
        dep.t("system", "System"),
        SYSTEM_VERSION,
        dep.t("system_state_inner", "SystemStateInnerV1"),
        inner,
    )
    assignment = [mt.ShardAssignment(node_id, sorted(n.shards)) for node_id, n in nodes]
    staking_inner = mt.StakingInnerV1(
        config.n_shards,
        config.epoch_duration_ms,
        now_ms,
        _derived_id(seed, "pools"),
        len(nodes),
        0,
        _derived_id(seed, "active_set"),
        None,
        assignment,
        [],
        None,
        (mt.EPOCH_CHANGE_DONE, now_ms),
        _derived_id(seed, "next_epoch_public_keys"),
    )
    add_versioned(
        dep.staking_id,
        dep.t("staking", "Staking"),
        STAKING_VERSION,
        dep.t("staking_inner", "StakingInnerV1"),
        staking_inner,
    )
    for node_id, n in nodes:
        pool = mt.StakingPool(
            node_id,
            (0, None),
            mt.VotingParams(config.storage_price, config.write_price, config.total_capacity),
            mt.StorageNodeInfo(
                n.name,
                node_id,
                n.network_address,
                n.bls_public_key,
                None,
                n.network_public_key,
                _derived_id(seed, f"node/{n.name}/metadata"),
            ),
            0,
            0,
            n.stake or STAKE_PER_SHARD * len(n.shards),
            0,
            [],
            [],
            [],
            0,
            _derived_id(seed, f"node/{n.name}/exchange_rates"),
            0,
            [],
            0,
            0,
            (0, node_id),
            (0, node_id),
            _derived_id(seed, f"node/{n.name}/extra_fields"),
            0,
        )
        # A dynamic object field of the pools table; its own ID is the node ID.
        add(
            node_id,
            dep.t("staking_pool", "StakingPool"),
            pool.to_bcs(),
            OWNER_OBJECT,
            _derived_id(seed, "pools"),
        )
    exchange = mt.Exchange(
        dep.exchange_id,
        config.exchange_wal,
        0,
        mt.ExchangeRate(*config.exchange_rate),
        _derived_id(seed, "exchange_admin_cap"),
    )
    add(dep.exchange_id, dep.exchange_type, exchange.to_bcs(), OWNER_SHARED, None)
    for account, (address, mist, frost) in enumerate(config.funded):
        for kind, amount, type_ in (("sui", mist, dep.sui_coin), ("wal", frost, dep.wal_coin)):
            parts = config.coins_per_account
            for i in range(parts):
                share = amount // parts + (amount % parts if i == 0 else 0)
                coin_id = _derived_id(seed, f"coin/{account}/{kind}/{i}")
                add(coin_id, type_, mt.Coin(coin_id, share).to_bcs(), OWNER_ADDRESS, address)
    meta = {
        **dataclasses.asdict(dep),
        "reference_gas_price": str(config.reference_gas_price),
        "epoch_duration_ms": str(config.epoch_duration_ms),
        "epoch_start_ms": str(now_ms),
        "next_seq": "1",
    }
    ledger.apply(objects, [], meta=meta)
    return ledger, dep
