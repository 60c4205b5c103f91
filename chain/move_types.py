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
    SystemStateInnerV1 prefix { committee, total_capacity_size: u64, used_capacity_size: u64,
               storage_price_per_unit_size: u64, write_price_per_unit_size: u64, ... }
    Metadata { metadata: VecMap<String, String> }   (insertion order, not sorted)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from codec.bcs import Reader, encode_str, uleb128
from codec.errors import MalformedBcs

# Field types: "u8" "u16" "u32" "u64" "u256" "bool" "id" (32-byte address/UID) "bytes"
# (vector<u8>) "string" "option_u32", a MoveStruct subclass, or ("vector", MoveStruct subclass).
FieldType = Any

_INT_WIDTH = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "u256": 32}


class MoveStruct:
    """Base of the declarative structs: subclasses are dataclasses with a `FIELDS` spec."""

    FIELDS: ClassVar[tuple[tuple[str, FieldType], ...]] = ()

    def to_bcs(self) -> bytes:
        return b"".join(_encode(getattr(self, name), kind) for name, kind in self.FIELDS)

    @classmethod
    def from_bcs(cls, buf: bytes | memoryview) -> Self:
        reader = Reader(buf)
        value = cls.read(reader)
        reader.end()
        return value

    @classmethod
    def read(cls, reader: Reader) -> Self:
        return cls(**{name: _decode(reader, kind) for name, kind in cls.FIELDS})


def _encode(value: Any, kind: FieldType) -> bytes:
    if isinstance(kind, tuple):
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
class SystemStatePrefix(MoveStruct):
    """The leading fields of `SystemStateInnerV1`: all a client needs (epoch, committee, prices).

    Decode with `read(Reader(buf))`; the rest of the struct (accounting ring buffer, event blob
    state, deny lists) follows and is not parsed.
    """

    committee: BlsCommittee
    total_capacity_size: int
    used_capacity_size: int
    storage_price_per_unit_size: int
    write_price_per_unit_size: int
    FIELDS = (
        ("committee", BlsCommittee),
        ("total_capacity_size", "u64"),
        ("used_capacity_size", "u64"),
        ("storage_price_per_unit_size", "u64"),
        ("write_price_per_unit_size", "u64"),
    )


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
