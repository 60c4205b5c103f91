"""Where the Walrus contracts live in one ledger: package and object IDs, and the Move types
(with their dynamic-field wrappers) that the stand-in decodes stored objects by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain import move_types as mt
from chain import pool_types as pt
from chain.localnet.ledger import StoredObject
from chain.localnet.naming import SUI_FRAMEWORK, SUI_TYPE, coin_inner, coin_type

#: The deployed `VERSION`s, the keys of System's and Staking's inner-state dynamic fields:
#: `const VERSION: u64 = 3` in MystenLabs/walrus `mainnet-contracts/walrus/sources/system.move`
#: and `mainnet-contracts/walrus/sources/staking.move` (testnet-contracts likewise).
SYSTEM_VERSION = 3
STAKING_VERSION = 3

#: The name and value types of an `ObjectTable<u256, V>` entry: a dynamic object field is a
#: `Field<Wrapper<u256>, ID>` whose value is the child object's ID (`sui::dynamic_object_field`)
WRAPPER_U256 = f"{SUI_FRAMEWORK}::dynamic_object_field::Wrapper<u256>"
OBJECT_ID = f"{SUI_FRAMEWORK}::object::ID"


@dataclass(frozen=True)
class Deployment:
    """Package and object IDs of a deployment (full-length 0x addresses)."""

    walrus_pkg: str
    wal_pkg: str
    exchange_pkg: str
    system_id: str
    staking_id: str
    exchange_id: str

    @property
    def wal_type(self) -> str:
        return f"{self.wal_pkg}::wal::WAL"

    @property
    def wal_coin(self) -> str:
        return coin_type(self.wal_type)

    @property
    def sui_coin(self) -> str:
        return coin_type(SUI_TYPE)

    def t(self, module: str, name: str) -> str:
        return f"{self.walrus_pkg}::{module}::{name}"

    @property
    def system_inner_type(self) -> str:
        return field_type("u64", self.t("system_state_inner", "SystemStateInnerV1"))

    @property
    def staking_inner_type(self) -> str:
        return field_type("u64", self.t("staking_inner", "StakingInnerV1"))

    @property
    def metadata_field_type(self) -> str:
        return field_type("vector<u8>", self.t("metadata", "Metadata"))

    @property
    def pool_inner_type(self) -> str:
        return field_type("u64", self.t("storage_pool", "StoragePoolInnerV1"))

    @property
    def pooled_blob_field_type(self) -> str:
        """`Field<Wrapper<u256>, ID>`: a pool's blob-table entry."""
        return field_type(WRAPPER_U256, OBJECT_ID)

    @property
    def exchange_type(self) -> str:
        return f"{self.exchange_pkg}::wal_exchange::Exchange"

    def system_inner_id(self) -> str:
        return mt.versioned_inner_id(self.system_id, SYSTEM_VERSION)

    def staking_inner_id(self) -> str:
        return mt.versioned_inner_id(self.staking_id, STAKING_VERSION)

    def decode(self, stored: StoredObject) -> Any:
        """The Move value of a stored object, by its type.

        Raises:
            ValueError: a type the stand-in does not model.
        """
        raw = stored.contents
        types: dict[str, type[mt.MoveStruct]] = {
            self.t("blob", "Blob"): mt.Blob,
            self.t("storage_resource", "Storage"): mt.Storage,
            self.t("system", "System"): mt.VersionedRoot,
            self.t("staking", "Staking"): mt.VersionedRoot,
            self.t("staking_pool", "StakingPool"): mt.StakingPool,
            self.t("storage_pool", "StoragePool"): pt.StoragePool,
            self.t("storage_pool", "PooledBlob"): pt.PooledBlob,
            self.exchange_type: mt.Exchange,
        }
        if stored.type in types:
            return types[stored.type].from_bcs(raw)
        if coin_inner(stored.type) is not None:
            return mt.Coin.from_bcs(raw)
        if stored.df_name is not None:
            body = mt.field_value(raw, stored.df_name)
            fields: dict[str, type[mt.MoveStruct]] = {
                self.system_inner_type: mt.SystemStateInnerV1,
                self.staking_inner_type: mt.StakingInnerV1,
                self.metadata_field_type: mt.BlobAttributes,
                self.pool_inner_type: pt.StoragePoolInnerV1,
            }
            if stored.type in fields:
                return fields[stored.type].from_bcs(body)
            if stored.type == self.pooled_blob_field_type:
                return bytes(body)  # the PooledBlob's ID (an `ID` is its 32 bytes)
        raise ValueError(f"the stand-in does not know the type {stored.type}")


def field_type(name_type: str, value_type: str) -> str:
    return f"{SUI_FRAMEWORK}::dynamic_field::Field<{name_type}, {value_type}>"
