"""What the chain client returns: the System's state, the committee, costs, balances, events
and executed transactions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain import move_types as mt


@dataclass(frozen=True)
class CommitteeMember:
    """A storage node as the chain describes it this epoch.

    Members are matched across the Staking committee, the System's BLS committee and the
    staking pools by `node_id` (the pool's object ID), as the Walrus client does
    (`shard_assignment_to_committee` in walrus `crates/walrus-sui/src/client/read_client.rs`),
    never by key: a pool's key changes when a pending rotation (`next_epoch_public_key`) is
    applied, while the epoch's BLS committee keeps the key it was built with
    (`staking_inner.move` `next_bls_committee`).
    """

    node_id: str
    name: str
    network_address: str
    #: 96-byte uncompressed G1: the key this epoch's certificates are checked against
    #: (`system::certify_blob` verifies with the System's BLS committee)
    public_key: bytes
    network_public_key: bytes
    shards: tuple[int, ...]
    #: position in the System's BLS committee: the signer's bit in a certificate's bitmap
    index: int = -1
    #: the staking pool's current key (`node_info.public_key`); differs from `public_key`
    #: after a rotation took effect in the pool but not yet in a BLS committee
    pool_public_key: bytes = b""
    #: the key announced for the next epoch, if any (`node_info.next_epoch_public_key`)
    next_epoch_public_key: bytes | None = None

    @property
    def weight(self) -> int:
        return len(self.shards)


@dataclass(frozen=True)
class SystemInfo:
    epoch: int
    n_shards: int
    storage_price: int  # FROST per MiB unit per epoch
    write_price: int  # FROST per MiB unit
    total_capacity: int
    used_capacity: int
    max_epochs_ahead: int
    package_id: str  # the package to call
    type_package: str  # the package that defines Blob and Storage
    system_initial_version: int
    committee_keys: tuple[mt.BlsCommitteeMember, ...]


@dataclass(frozen=True)
class CostEstimate:
    """The WAL a blob of `size` for `epochs` costs, and the Storage it would reuse."""

    size: int
    encoded_size: int
    epochs: int
    storage: int  # 0 when `reuse` is set
    write: int
    reuse: mt.Storage | None
    #: more owned Storage of the same period fused into `reuse` (fuse_amount) when no single
    #: resource is large enough; what exceeds the blob is split off and kept (split_by_size)
    fuse: tuple[mt.Storage, ...] = ()

    @property
    def total(self) -> int:
        return self.storage + self.write


@dataclass(frozen=True)
class Balances:
    sui: int  # MIST
    wal: int  # FROST


@dataclass(frozen=True)
class ChainEvent:
    """One Move event, located as Sui's EventID does (transaction digest, index)."""

    checkpoint: int
    tx_digest: str
    index: int
    type: str  # full type: `0xpkg::module::Struct`
    bcs: bytes

    @property
    def name(self) -> str:
        return self.type.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class TxResult:
    digest: str
    gas_used: int
    created: dict[str, list[Any]]  # `module::Struct` -> new objects (Blob/Storage decoded)
    events: list[tuple[str, bytes]]  # (event type, BCS)


@dataclass(frozen=True)
class PastTransaction:
    """An executed transaction as a payment check needs it (`reads.transaction`).

    `first_pure`: the bytes of the PTB's input 0 when it is a pure value, else None;
    `balance_changes`: (address, coin type, net amount) as the full node reports them.
    """

    digest: str
    timestamp_ms: int | None
    programmable: bool
    first_pure: bytes | None
    balance_changes: tuple[tuple[str, str, int], ...]
