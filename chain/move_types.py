"""Walrus Move structs and events as Python values, with their exact BCS.

The chain returns object contents and events as BCS of Move structs; field order is BCS order
(contracts/walrus/sources/system/*.move, research/sui-chain.md section 2.3). One small
declarative codec covers them all: each struct lists its fields and their Move types, so the
layout is written once and read in both directions (the client decodes, the stand-in encodes).

    Storage  { id: UID(32), start_epoch: u32, end_epoch: u32, storage_size: u64 }
    Blob     { id: UID(32), registered_epoch: u32, blob_id: u256, size: u64, encoding_type: u8,
               certified_epoch: Option<u32>, storage: Storage, deletable: bool }
    BlsCommitteeMember { public_key: vector<u8> (96-byte uncompressed G1), weight: u16,
               node_id: ID }
    BlsCommittee { members: vector<BlsCommitteeMember>, n_shards: u16, epoch: u32,
               total_aggregated_key: vector<u8> }
    SystemStateInnerV1 { committee, total_capacity_size: u64, used_capacity_size: u64,
               storage_price_per_unit_size: u64, write_price_per_unit_size: u64,
               future_accounting, event_blob_certification_state, deny_list_sizes }
    StakingInnerV1, StakingPool (node_info: name, network_address, BLS key), Coin, Exchange
    Metadata { metadata: VecMap<String, String> }   (insertion order, not sorted)
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, ClassVar, Self

from codec.bcs import Reader, encode_str, uleb128
from codec.errors import MalformedBcs

# Field types: "u8" "u16" "u32" "u64" "u256" "bool" "id" (32-byte address/UID/ID) "bytes"
# (vector<u8>) "string" "option_u32", a MoveStruct subclass, ("vector", T), ("option", T) (value
# or None), or ("enum", (T0 | None, T1 | None, ...)) whose value is `(variant index, payload)`.
FieldType = Any

_INT_WIDTH = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "u256": 32}


class MoveStruct:
    """Base of the declarative structs: subclasses are dataclasses with a `FIELDS` spec."""

    FIELDS: ClassVar[tuple[tuple[str, FieldType], ...]] = ()

    def to_bcs(self) -> bytes:
        return b"".join(_encode(getattr(self, name), kind) for name, kind in self.FIELDS)

    @classmethod
    def from_bcs(cls, buf: bytes | memoryview) -> Self:
        """The struct that is exactly `buf` (see `read` for a prefix).

        Raises:
            codec.errors.MalformedBcs: `buf` is truncated, has trailing bytes, or holds an
                invalid value (a bool, tag, length or string).
        """
        reader = Reader(buf)
        value = cls.read(reader)
        reader.end()
        return value

    @classmethod
    def read(cls, reader: Reader) -> Self:
        """The struct at the reader's position; bytes after it are left (a later contract
        version may append fields).

        Raises:
            codec.errors.MalformedBcs: truncated, or an invalid value (a bool, tag, length or
                string).
        """
        return cls(**{name: _decode(reader, kind) for name, kind in cls.FIELDS})


def _encode(value: Any, kind: FieldType) -> bytes:
    if isinstance(kind, tuple):
        if kind[0] == "option":
            return b"\x00" if value is None else b"\x01" + _encode(value, kind[1])
        if kind[0] == "enum":
            index, payload = value
            variant = kind[1][index]
            return uleb128(index) + (b"" if variant is None else _encode(payload, variant))
        return uleb128(len(value)) + b"".join(_encode(v, kind[1]) for v in value)
    if isinstance(kind, type) and issubclass(kind, MoveStruct):
        return bytes(value.to_bcs())
    if kind in _INT_WIDTH:
        return int(value).to_bytes(_INT_WIDTH[kind], "little")
    if kind == "bool":
        return b"\x01" if value else b"\x00"
    if kind == "id":
        raw = bytes.fromhex(value.removeprefix("0x").rjust(64, "0"))
        if len(raw) != 32:
            raise ValueError(f"a Sui object ID is 32 bytes: {value}")
        return raw
    if kind == "bytes":
        return uleb128(len(value)) + bytes(value)
    if kind == "string":
        return encode_str(value)
    if kind == "option_u32":
        return b"\x00" if value is None else b"\x01" + int(value).to_bytes(4, "little")
    raise TypeError(f"unknown Move field type {kind!r}")


def _decode(reader: Reader, kind: FieldType) -> Any:
    if isinstance(kind, tuple):
        if kind[0] == "option":
            tag = reader.u8()
            if tag > 1:
                raise MalformedBcs(f"invalid BCS option tag {tag}")
            return _decode(reader, kind[1]) if tag else None
        if kind[0] == "enum":
            index = reader.uleb128()
            if index >= len(kind[1]):
                raise MalformedBcs(f"enum variant {index} out of range")
            variant = kind[1][index]
            return (index, None if variant is None else _decode(reader, variant))
        return [_decode(reader, kind[1]) for _ in range(reader.uleb128())]
    if isinstance(kind, type) and issubclass(kind, MoveStruct):
        return kind.read(reader)
    if kind in _INT_WIDTH:
        return int.from_bytes(reader.take(_INT_WIDTH[kind]), "little")
    if kind == "bool":
        flag = reader.u8()
        if flag > 1:
            raise MalformedBcs(f"invalid BCS bool {flag}")
        return flag == 1
    if kind == "id":
        return "0x" + bytes(reader.take(32)).hex()
    if kind == "bytes":
        return bytes(reader.take(reader.uleb128()))
    if kind == "string":
        return reader.string()
    if kind == "option_u32":
        tag = reader.u8()
        if tag > 1:
            raise MalformedBcs(f"invalid BCS option tag {tag}")
        return reader.u32() if tag else None
    raise TypeError(f"unknown Move field type {kind!r}")


@dataclasses.dataclass(frozen=True)
class Storage(MoveStruct):
    """`walrus::storage_resource::Storage`: encoded bytes reserved for epochs [start, end)."""

    id: str
    start_epoch: int
    end_epoch: int
    storage_size: int
    FIELDS = (("id", "id"), ("start_epoch", "u32"), ("end_epoch", "u32"), ("storage_size", "u64"))


@dataclasses.dataclass(frozen=True)
class Blob(MoveStruct):
    """`walrus::blob::Blob`; `blob_id` is the Move u256 (see `codec.BlobId.from_u256`)."""

    id: str
    registered_epoch: int
    blob_id: int
    size: int
    encoding_type: int
    certified_epoch: int | None
    storage: Storage
    deletable: bool
    #: not Move: set when this is a pooled blob seen as a Blob (`chain.pools.as_blob`): the
    #: StoragePool holding it, whose range and the blob's encoded size are `storage`
    pool: str | None = dataclasses.field(default=None, compare=False)
    FIELDS = (
        ("id", "id"),
        ("registered_epoch", "u32"),
        ("blob_id", "u256"),
        ("size", "u64"),
        ("encoding_type", "u8"),
        ("certified_epoch", "option_u32"),
        ("storage", Storage),
        ("deletable", "bool"),
    )

    @property
    def end_epoch(self) -> int:
        return self.storage.end_epoch

    @property
    def is_certified(self) -> bool:
        return self.certified_epoch is not None


@dataclasses.dataclass(frozen=True)
class BlsCommitteeMember(MoveStruct):
    public_key: bytes
    weight: int
    node_id: str
    FIELDS = (("public_key", "bytes"), ("weight", "u16"), ("node_id", "id"))


@dataclasses.dataclass(frozen=True)
class BlsCommittee(MoveStruct):
    members: list[BlsCommitteeMember]
    n_shards: int
    epoch: int
    total_aggregated_key: bytes
    FIELDS = (
        ("members", ("vector", BlsCommitteeMember)),
        ("n_shards", "u16"),
        ("epoch", "u32"),
        ("total_aggregated_key", "bytes"),
    )


@dataclasses.dataclass(frozen=True)
class FutureAccounting(MoveStruct):
    """One future epoch's used capacity and WAL rewards (`storage_accounting.move`)."""

    epoch: int
    used_capacity: int
    rewards_to_distribute: int
    FIELDS = (("epoch", "u32"), ("used_capacity", "u64"), ("rewards_to_distribute", "u64"))


@dataclasses.dataclass(frozen=True)
class FutureAccountingRingBuffer(MoveStruct):
    """`length` is max_epochs_ahead; entry `(current_index + i) % length` is epoch + i."""

    current_index: int
    length: int
    ring_buffer: list[FutureAccounting]
    FIELDS = (
        ("current_index", "u32"),
        ("length", "u32"),
        ("ring_buffer", ("vector", FutureAccounting)),
    )

    def lookup(self, epochs_in_future: int) -> FutureAccounting:
        return self.ring_buffer[(self.current_index + epochs_in_future) % self.length]


@dataclasses.dataclass(frozen=True)
class EventBlob(MoveStruct):
    blob_id: int
    ending_checkpoint_sequence_number: int
    FIELDS = (("blob_id", "u256"), ("ending_checkpoint_sequence_number", "u64"))


@dataclasses.dataclass(frozen=True)
class EventBlobWeight(MoveStruct):
    """One `VecMap<EventBlob, u16>` entry."""

    key: EventBlob
    value: int
    FIELDS = (("key", EventBlob), ("value", "u16"))


@dataclasses.dataclass(frozen=True)
class EventBlobCertificationState(MoveStruct):
    latest_certified_blob: EventBlob | None
    aggregate_weight_per_blob: list[EventBlobWeight]
    FIELDS = (
        ("latest_certified_blob", ("option", EventBlob)),
        ("aggregate_weight_per_blob", ("vector", EventBlobWeight)),
    )


@dataclasses.dataclass(frozen=True)
class SystemStateInnerV1(MoveStruct):
    """The System object's versioned inner state (dynamic field `u64 version` of System).

    The current Walrus epoch is `committee.epoch`; `future_accounting.length` is
    max_epochs_ahead. Decode with `read(Reader(buf))` to tolerate fields a later contract
    version appends.
    """

    committee: BlsCommittee
    total_capacity_size: int
    used_capacity_size: int
    storage_price_per_unit_size: int
    write_price_per_unit_size: int
    future_accounting: FutureAccountingRingBuffer
    event_blob_certification_state: EventBlobCertificationState
    deny_list_sizes: str  # ExtendedField<VecMap<ID, u64>> { id }
    FIELDS = (
        ("committee", BlsCommittee),
        ("total_capacity_size", "u64"),
        ("used_capacity_size", "u64"),
        ("storage_price_per_unit_size", "u64"),
        ("write_price_per_unit_size", "u64"),
        ("future_accounting", FutureAccountingRingBuffer),
        ("event_blob_certification_state", EventBlobCertificationState),
        ("deny_list_sizes", "id"),
    )

    @property
    def epoch(self) -> int:
        return self.committee.epoch

    @property
    def n_shards(self) -> int:
        return self.committee.n_shards

    @property
    def max_epochs_ahead(self) -> int:
        return self.future_accounting.length


@dataclasses.dataclass(frozen=True)
class VersionedRoot(MoveStruct):
    """`System` and `Staking`: `{ id, version, package_id, new_package_id }`.

    The inner state is the dynamic field named `version` (u64); `package_id` is the package
    to call (it changes on upgrade; struct types keep their original package ID).
    """

    id: str
    version: int
    package_id: str
    new_package_id: str | None
    FIELDS = (
        ("id", "id"),
        ("version", "u64"),
        ("package_id", "id"),
        ("new_package_id", ("option", "id")),
    )


@dataclasses.dataclass(frozen=True)
class ShardAssignment(MoveStruct):
    """One `Committee` entry: a storage node and the shards it holds this epoch."""

    node_id: str
    shards: list[int]
    FIELDS = (("node_id", "id"), ("shards", ("vector", "u16")))


@dataclasses.dataclass(frozen=True)
class EpochParams(MoveStruct):
    total_capacity_size: int
    storage_price_per_unit_size: int
    write_price_per_unit_size: int
    FIELDS = (
        ("total_capacity_size", "u64"),
        ("storage_price_per_unit_size", "u64"),
        ("write_price_per_unit_size", "u64"),
    )


# EpochState: EpochChangeSync(u16) | EpochChangeDone(u64 ms) | NextParamsSelected(u64 ms)
EPOCH_STATE = ("enum", ("u16", "u64", "u64"))
EPOCH_CHANGE_DONE = 1


@dataclasses.dataclass(frozen=True)
class StakingInnerV1(MoveStruct):
    """Staking's inner state: epoch timing and the shard assignment of the committee."""

    n_shards: int
    epoch_duration: int
    first_epoch_start: int
    pools: str  # ObjectTable<ID, StakingPool> { id, size }
    pools_size: int
    epoch: int
    active_set: str  # ExtendedField<ActiveSet> { id }
    next_committee: list[ShardAssignment] | None
    committee: list[ShardAssignment]
    previous_committee: list[ShardAssignment]
    next_epoch_params: EpochParams | None
    epoch_state: tuple[int, int]
    next_epoch_public_keys: str  # ExtendedField<VecMap<ID, Element<UncompressedG1>>> { id }
    FIELDS = (
        ("n_shards", "u16"),
        ("epoch_duration", "u64"),
        ("first_epoch_start", "u64"),
        ("pools", "id"),
        ("pools_size", "u64"),
        ("epoch", "u32"),
        ("active_set", "id"),
        ("next_committee", ("option", ("vector", ShardAssignment))),
        ("committee", ("vector", ShardAssignment)),
        ("previous_committee", ("vector", ShardAssignment)),
        ("next_epoch_params", ("option", EpochParams)),
        ("epoch_state", EPOCH_STATE),
        ("next_epoch_public_keys", "id"),
    )


@dataclasses.dataclass(frozen=True)
class StorageNodeInfo(MoveStruct):
    name: str
    node_id: str
    network_address: str
    public_key: bytes  # 96-byte uncompressed G1
    next_epoch_public_key: bytes | None
    network_public_key: bytes
    metadata: str  # ExtendedField<NodeMetadata> { id }
    FIELDS = (
        ("name", "string"),
        ("node_id", "id"),
        ("network_address", "string"),
        ("public_key", "bytes"),
        ("next_epoch_public_key", ("option", "bytes")),
        ("network_public_key", "bytes"),
        ("metadata", "id"),
    )


@dataclasses.dataclass(frozen=True)
class VotingParams(MoveStruct):
    storage_price: int
    write_price: int
    node_capacity: int
    FIELDS = (("storage_price", "u64"), ("write_price", "u64"), ("node_capacity", "u64"))


@dataclasses.dataclass(frozen=True)
class PendingValue(MoveStruct):
    epoch: int
    value: int
    FIELDS = (("epoch", "u32"), ("value", "u64"))


# PoolState: Active | Withdrawing(u32) | Withdrawn;  Authorized: Address(address) | ObjectID(ID)
POOL_STATE = ("enum", (None, "u32", None))
AUTHORIZED = ("enum", ("id", "id"))


@dataclasses.dataclass(frozen=True)
class StakingPool(MoveStruct):
    """A storage node's pool; its object ID is the node ID (`node_info.node_id`)."""

    id: str
    state: tuple[int, int | None]
    voting_params: VotingParams
    node_info: StorageNodeInfo
    activation_epoch: int
    latest_epoch: int
    wal_balance: int
    num_shares: int
    pending_shares_withdraw: list[PendingValue]
    pre_active_withdrawals: list[PendingValue]
    pending_commission_rate: list[PendingValue]
    commission_rate: int
    exchange_rates: str  # Table<u32, PoolExchangeRate> { id, size }
    exchange_rates_size: int
    pending_stake: list[PendingValue]
    rewards_pool: int
    commission: int
    commission_receiver: tuple[int, str]
    governance_authorized: tuple[int, str]
    extra_fields: str  # Bag { id, size }
    extra_fields_size: int
    FIELDS = (
        ("id", "id"),
        ("state", POOL_STATE),
        ("voting_params", VotingParams),
        ("node_info", StorageNodeInfo),
        ("activation_epoch", "u32"),
        ("latest_epoch", "u32"),
        ("wal_balance", "u64"),
        ("num_shares", "u64"),
        ("pending_shares_withdraw", ("vector", PendingValue)),
        ("pre_active_withdrawals", ("vector", PendingValue)),
        ("pending_commission_rate", ("vector", PendingValue)),
        ("commission_rate", "u16"),
        ("exchange_rates", "id"),
        ("exchange_rates_size", "u64"),
        ("pending_stake", ("vector", PendingValue)),
        ("rewards_pool", "u64"),
        ("commission", "u64"),
        ("commission_receiver", AUTHORIZED),
        ("governance_authorized", AUTHORIZED),
        ("extra_fields", "id"),
        ("extra_fields_size", "u64"),
    )


@dataclasses.dataclass(frozen=True)
class Coin(MoveStruct):
    """`0x2::coin::Coin<T> { id, balance: Balance<T> { value: u64 } }`."""

    id: str
    balance: int
    FIELDS = (("id", "id"), ("balance", "u64"))


@dataclasses.dataclass(frozen=True)
class ExchangeRate(MoveStruct):
    wal: int
    sui: int
    FIELDS = (("wal", "u64"), ("sui", "u64"))


@dataclasses.dataclass(frozen=True)
class Exchange(MoveStruct):
    """`wal_exchange::Exchange` (testnet and devnet): swaps SUI for WAL at `rate`."""

    id: str
    wal: int
    sui: int
    rate: ExchangeRate
    admin: str
    FIELDS = (("id", "id"), ("wal", "u64"), ("sui", "u64"), ("rate", ExchangeRate), ("admin", "id"))


@dataclasses.dataclass(frozen=True)
class MetadataEntry(MoveStruct):
    key: str
    value: str
    FIELDS = (("key", "string"), ("value", "string"))


@dataclasses.dataclass(frozen=True)
class BlobAttributes(MoveStruct):
    """`walrus::metadata::Metadata`, the `metadata` dynamic field of a Blob (its attributes)."""

    metadata: list[MetadataEntry]
    FIELDS = (("metadata", ("vector", MetadataEntry)),)

    def as_dict(self) -> dict[str, str]:
        return {e.key: e.value for e in self.metadata}

    @classmethod
    def from_dict(cls, pairs: dict[str, str]) -> BlobAttributes:
        return cls([MetadataEntry(k, v) for k, v in pairs.items()])


@dataclasses.dataclass(frozen=True)
class BlobRegistered(MoveStruct):
    epoch: int
    blob_id: int
    size: int
    encoding_type: int
    end_epoch: int
    deletable: bool
    object_id: str
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("size", "u64"),
        ("encoding_type", "u8"),
        ("end_epoch", "u32"),
        ("deletable", "bool"),
        ("object_id", "id"),
    )


@dataclasses.dataclass(frozen=True)
class BlobCertified(MoveStruct):
    epoch: int
    blob_id: int
    end_epoch: int
    deletable: bool
    object_id: str
    is_extension: bool
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("end_epoch", "u32"),
        ("deletable", "bool"),
        ("object_id", "id"),
        ("is_extension", "bool"),
    )


@dataclasses.dataclass(frozen=True)
class EpochChangeStart(MoveStruct):
    """`walrus::events::EpochChangeStart`: storage nodes move to `epoch` when they see it."""

    epoch: int
    FIELDS = (("epoch", "u32"),)


@dataclasses.dataclass(frozen=True)
class BlobDeleted(MoveStruct):
    epoch: int
    blob_id: int
    end_epoch: int
    object_id: str
    was_certified: bool
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("end_epoch", "u32"),
        ("object_id", "id"),
        ("was_certified", "bool"),
    )


# -- dynamic fields ----------------------------------------------------------------------------
# A dynamic field is an object `0x2::dynamic_field::Field<K, V> { id: UID, name: K, value: V }`
# owned by its parent; its ID is derived from the parent, the name and the name's type, so a
# client can fetch it directly. System and Staking keep their state in the field named by
# their `version` (u64); a Blob keeps its attributes in the field named b"metadata".

TYPE_TAG_U64 = b"\x02"  # BCS of the TypeTag `u64`
TYPE_TAG_VECTOR_U8 = b"\x06\x01"  # BCS of the TypeTag `vector<u8>`
METADATA_FIELD_NAME = b"\x08metadata"  # BCS of the vector<u8> b"metadata"


def dynamic_field_id(parent: str, type_tag_bcs: bytes, name_bcs: bytes) -> str:
    """blake2b(0xf0 || parent || len(name) u64 LE || name BCS || TypeTag BCS) (Sui)."""
    raw = hashlib.blake2b(
        b"\xf0"
        + bytes.fromhex(parent.removeprefix("0x").rjust(64, "0"))
        + len(name_bcs).to_bytes(8, "little")
        + name_bcs
        + type_tag_bcs,
        digest_size=32,
    ).digest()
    return "0x" + raw.hex()


def versioned_inner_id(root_id: str, version: int) -> str:
    """The field holding a versioned object's (System, Staking) inner state."""
    return dynamic_field_id(root_id, TYPE_TAG_U64, version.to_bytes(8, "little"))


def metadata_field_id(blob_id: str) -> str:
    """The field holding a Blob's attributes."""
    return dynamic_field_id(blob_id, TYPE_TAG_VECTOR_U8, METADATA_FIELD_NAME)


def field_contents(field_id: str, name_bcs: bytes, value_bcs: bytes) -> bytes:
    return bytes.fromhex(field_id.removeprefix("0x").rjust(64, "0")) + name_bcs + value_bcs


def field_value(contents: bytes, name_bcs: bytes) -> bytes:
    """The value's BCS inside a `Field<K, V>` object's contents."""
    return contents[32 + len(name_bcs) :]
