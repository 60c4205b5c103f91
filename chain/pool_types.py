"""Walrus storage pools as Python values, with their exact BCS, and where a pool keeps its
state on chain.

From the deployed contracts (MystenLabs/walrus `mainnet-contracts/walrus/sources/system/
storage_pool.move` and `events.move`, system package VERSION 3: testnet since 2026-04-27,
mainnet since 2026-05-11):

    StoragePool        { id: UID(32), version: u64 }                      (key, store; owned)
    Field<u64, StoragePoolInnerV1> at dynamic_field_id(pool, u64, version):
      StoragePoolInnerV1 { storage: Storage, used_encoded_bytes: u64, blob_count: u64,
                           blobs: ObjectTable<u256, PooledBlob> { id: UID(32), size: u64 } }
    PooledBlob         { id: UID(32), registered_epoch: u32, blob_id: u256,
                         unencoded_size: u64, encoding_type: u8, certified_epoch: Option<u32>,
                         storage_pool_id: ID(32), deletable: bool }       (no end epoch)

An `ObjectTable<u256, PooledBlob>` keeps each PooledBlob as a dynamic *object* field of the
table's UID: a `Field<Wrapper<u256>, ID>` object (owned by the table, its value the
PooledBlob's ID) whose ID derives from the table ID and the key, and the PooledBlob itself,
owned by that field object (`sui::dynamic_object_field`). So a pooled blob is found from its
pool and blob ID alone (`pooled_blob_field_id`), and a PooledBlob's attributes are its own
`metadata` dynamic field, as a Blob's (`move_types.metadata_field_id`).
"""

from __future__ import annotations

import dataclasses

from chain.move_types import (
    TYPE_TAG_U64,
    MoveStruct,
    Storage,
    dynamic_field_id,
)
from codec.bcs import encode_str, uleb128

POOL_VERSION = 1  # storage_pool.move VERSION: the key of the pool's inner-state field

_SUI_FRAMEWORK_RAW = bytes(31) + b"\x02"
#: BCS of the TypeTag `0x2::dynamic_object_field::Wrapper<u256>` (TypeTag::Struct is variant
#: 7, u256 is variant 10), the name type of an ObjectTable<u256, _>'s entries
TYPE_TAG_WRAPPER_U256 = (
    b"\x07"
    + _SUI_FRAMEWORK_RAW
    + encode_str("dynamic_object_field")
    + encode_str("Wrapper")
    + uleb128(1)
    + b"\x0a"
)


@dataclasses.dataclass(frozen=True)
class ObjectTable(MoveStruct):
    """`sui::object_table::ObjectTable<K, V>`: its entries are dynamic object fields of `id`."""

    id: str
    size: int
    FIELDS = (("id", "id"), ("size", "u64"))


@dataclasses.dataclass(frozen=True)
class StoragePool(MoveStruct):
    """`walrus::storage_pool::StoragePool`: the state is the field named `version`."""

    id: str
    version: int
    FIELDS = (("id", "id"), ("version", "u64"))


@dataclasses.dataclass(frozen=True)
class StoragePoolInnerV1(MoveStruct):
    storage: Storage
    used_encoded_bytes: int
    blob_count: int
    blobs: ObjectTable
    FIELDS = (
        ("storage", Storage),
        ("used_encoded_bytes", "u64"),
        ("blob_count", "u64"),
        ("blobs", ObjectTable),
    )


@dataclasses.dataclass(frozen=True)
class PooledBlob(MoveStruct):
    """`walrus::storage_pool::PooledBlob`: lives as long as its pool (no Storage of its own)."""

    id: str
    registered_epoch: int
    blob_id: int
    unencoded_size: int
    encoding_type: int
    certified_epoch: int | None
    storage_pool_id: str
    deletable: bool
    FIELDS = (
        ("id", "id"),
        ("registered_epoch", "u32"),
        ("blob_id", "u256"),
        ("unencoded_size", "u64"),
        ("encoding_type", "u8"),
        ("certified_epoch", "option_u32"),
        ("storage_pool_id", "id"),
        ("deletable", "bool"),
    )

    @property
    def is_certified(self) -> bool:
        return self.certified_epoch is not None


@dataclasses.dataclass(frozen=True)
class PoolState:
    """A pool as a client sees it: the root and its inner state, read together."""

    id: str
    version: int
    inner: StoragePoolInnerV1

    @property
    def start_epoch(self) -> int:
        return self.inner.storage.start_epoch

    @property
    def end_epoch(self) -> int:
        return self.inner.storage.end_epoch

    @property
    def capacity(self) -> int:
        """Reserved encoded bytes (`reserved_encoded_capacity_bytes`)."""
        return self.inner.storage.storage_size

    @property
    def used(self) -> int:
        return self.inner.used_encoded_bytes

    @property
    def available(self) -> int:
        return self.capacity - self.used

    @property
    def blob_count(self) -> int:
        return self.inner.blob_count

    @property
    def table_id(self) -> str:
        return self.inner.blobs.id


# -- events (events.move) ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StoragePoolCreated(MoveStruct):
    epoch: int
    storage_pool_id: str
    reserved_encoded_capacity_bytes: int
    start_epoch: int
    end_epoch: int
    FIELDS = (
        ("epoch", "u32"),
        ("storage_pool_id", "id"),
        ("reserved_encoded_capacity_bytes", "u64"),
        ("start_epoch", "u32"),
        ("end_epoch", "u32"),
    )


@dataclasses.dataclass(frozen=True)
class PooledBlobRegistered(MoveStruct):
    epoch: int
    blob_id: int
    unencoded_size: int
    encoding_type: int
    deletable: bool
    object_id: str
    storage_pool_id: str
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("unencoded_size", "u64"),
        ("encoding_type", "u8"),
        ("deletable", "bool"),
        ("object_id", "id"),
        ("storage_pool_id", "id"),
    )


@dataclasses.dataclass(frozen=True)
class PooledBlobCertified(MoveStruct):
    epoch: int
    blob_id: int
    deletable: bool
    object_id: str
    storage_pool_id: str
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("deletable", "bool"),
        ("object_id", "id"),
        ("storage_pool_id", "id"),
    )


@dataclasses.dataclass(frozen=True)
class PooledBlobDeleted(MoveStruct):
    epoch: int
    blob_id: int
    object_id: str
    was_certified: bool
    storage_pool_id: str
    FIELDS = (
        ("epoch", "u32"),
        ("blob_id", "u256"),
        ("object_id", "id"),
        ("was_certified", "bool"),
        ("storage_pool_id", "id"),
    )


@dataclasses.dataclass(frozen=True)
class StoragePoolExtended(MoveStruct):
    epoch: int
    storage_pool_id: str
    new_end_epoch: int
    FIELDS = (("epoch", "u32"), ("storage_pool_id", "id"), ("new_end_epoch", "u32"))


# -- where a pool's state lives ----------------------------------------------------------------


def pool_inner_id(pool_id: str, version: int = POOL_VERSION) -> str:
    """The `Field<u64, StoragePoolInnerV1>` holding a pool's state."""
    return dynamic_field_id(pool_id, TYPE_TAG_U64, version.to_bytes(8, "little"))


def pooled_blob_field_id(table_id: str, blob_id: int) -> str:
    """The `Field<Wrapper<u256>, ID>` of a pool's blob table naming the PooledBlob of
    `blob_id` (what `object_table::borrow` looks up)."""
    return dynamic_field_id(table_id, TYPE_TAG_WRAPPER_U256, blob_id.to_bytes(32, "little"))
