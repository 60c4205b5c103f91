"""The Move signatures of the packages the stand-in publishes, as text in Move syntax.

A Sui full node answers MovePackageService from the package's bytecode; the stand-in has no
bytecode, so the signatures are written here, transcribed from the deployed contract sources:
MystenLabs/walrus `testnet-contracts/walrus/sources/system.move`, `staking.move`,
`system/blob.move`, `system/storage_resource.move`, `system/metadata.move`,
`system/storage_pool.move`,
`testnet-contracts/wal/sources/wal.move`,
`testnet-contracts/wal_exchange/sources/wal_exchange.move`; and of the Sui framework's
`sui-framework/sources/coin.move` the functions the stand-in executes. Clients read them to
encode arguments: the TypeScript SDK learns the WAL type from the second parameter of
`staking::stake_with_pool`, and resolves pure arguments from parameter types.

What is written, module by module: every `public` function (test-only ones excluded) with its
real parameters, `&mut TxContext` included, and returns; and the module's structs with their
abilities and fields. Not written: `public(package)` and private functions (a full node lists
them too, as FRIEND and PRIVATE), the other modules of these packages, and the rest of the
framework. The text is kept apart from `chain.localnet.packages`, which parses it, so that
following a contract upgrade is an edit of data alone, checked line by line against the
Move source.
"""

from __future__ import annotations

MOVE_STDLIB = "0x" + "0" * 63 + "1"
SUI_FRAMEWORK = "0x" + "0" * 63 + "2"

#: Struct names as the sources write them -> (package alias, module). Package aliases are
#: `walrus`, `wal`, `wal_exchange` (the deployment's addresses) or a full address.
TYPE_ORIGINS: dict[str, tuple[str, str]] = {
    "System": ("walrus", "system"),
    "Staking": ("walrus", "staking"),
    "Blob": ("walrus", "blob"),
    "BlobIdDerivation": ("walrus", "blob"),
    "Storage": ("walrus", "storage_resource"),
    "Metadata": ("walrus", "metadata"),
    "StakedWal": ("walrus", "staked_wal"),
    "StorageNodeCap": ("walrus", "storage_node"),
    "NodeMetadata": ("walrus", "node_metadata"),
    "Authenticated": ("walrus", "auth"),
    "Authorized": ("walrus", "auth"),
    "Committee": ("walrus", "committee"),
    "StoragePool": ("walrus", "storage_pool"),
    "StoragePoolInnerV1": ("walrus", "storage_pool"),
    "PooledBlob": ("walrus", "storage_pool"),
    "FutureAccountingRingBuffer": ("walrus", "storage_accounting"),
    "WAL": ("wal", "wal"),
    "ProtectedTreasury": ("wal", "wal"),
    "TreasuryCapKey": ("wal", "wal"),
    "Exchange": ("wal_exchange", "wal_exchange"),
    "ExchangeRate": ("wal_exchange", "wal_exchange"),
    "AdminCap": ("wal_exchange", "wal_exchange"),
    "Coin": (SUI_FRAMEWORK, "coin"),
    "Balance": (SUI_FRAMEWORK, "balance"),
    "SUI": (SUI_FRAMEWORK, "sui"),
    "TxContext": (SUI_FRAMEWORK, "tx_context"),
    "Clock": (SUI_FRAMEWORK, "clock"),
    "ID": (SUI_FRAMEWORK, "object"),
    "UID": (SUI_FRAMEWORK, "object"),
    "VecMap": (SUI_FRAMEWORK, "vec_map"),
    "ObjectTable": (SUI_FRAMEWORK, "object_table"),
    "String": (MOVE_STDLIB, "string"),
    "Option": (MOVE_STDLIB, "option"),
}

#: (package alias, module) -> its structs and public functions, in Move syntax.
SOURCES: dict[tuple[str, str], str] = {
    ("walrus", "system"): """
struct System has key { id: UID, version: u64, package_id: ID, new_package_id: Option<ID> }
fun invalidate_blob_id(system: &System, signature: vector<u8>, members_bitmap: vector<u8>,
    message: vector<u8>): u256
fun certify_event_blob(system: &mut System, cap: &mut StorageNodeCap, blob_id: u256,
    root_hash: u256, size: u64, encoding_type: u8, ending_checkpoint_sequence_num: u64, epoch: u32,
    ctx: &mut TxContext)
fun reserve_space(self: &mut System, storage_amount: u64, epochs_ahead: u32,
    payment: &mut Coin<WAL>, ctx: &mut TxContext): Storage
fun reserve_space_for_epochs(self: &mut System, storage_amount: u64, start_epoch: u32,
    end_epoch: u32, payment: &mut Coin<WAL>, ctx: &mut TxContext): Storage
fun register_blob(self: &mut System, storage: Storage, blob_id: u256, root_hash: u256, size: u64,
    encoding_type: u8, deletable: bool, write_payment: &mut Coin<WAL>, ctx: &mut TxContext): Blob
fun certify_blob(self: &System, blob: &mut Blob, signature: vector<u8>, signers_bitmap: vector<u8>,
    message: vector<u8>)
fun delete_blob(self: &System, blob: Blob): Storage
fun extend_blob_with_resource(self: &System, blob: &mut Blob, extension: Storage)
fun extend_blob(self: &mut System, blob: &mut Blob, extended_epochs: u32, payment: &mut Coin<WAL>)
fun create_storage_pool(self: &mut System, reserved_encoded_capacity_bytes: u64, epochs_ahead: u32,
    payment: &mut Coin<WAL>, ctx: &mut TxContext): StoragePool
fun create_storage_pool_with_storage(self: &System, storage: Storage,
    ctx: &mut TxContext): StoragePool
fun register_pooled_blob(self: &mut System, storage_pool: &mut StoragePool, blob_id: u256,
    root_hash: u256, unencoded_size: u64, encoding_type: u8, deletable: bool,
    write_payment: &mut Coin<WAL>, ctx: &mut TxContext)
fun delete_pooled_blob(self: &System, storage_pool: &mut StoragePool, blob_id: u256)
fun burn_expired_pooled_blob(self: &System, storage_pool: &mut StoragePool, blob_id: u256)
fun extend_storage_pool(self: &mut System, storage_pool: &mut StoragePool, extended_epochs: u32,
    payment: &mut Coin<WAL>)
fun increase_storage_pool_capacity(self: &mut System, storage_pool: &mut StoragePool,
    additional_encoded_capacity_bytes: u64, payment: &mut Coin<WAL>)
fun increase_storage_pool_capacity_with_storage(self: &System, storage_pool: &mut StoragePool,
    storage: Storage)
fun decrease_storage_pool_capacity_by_size(self: &System, storage_pool: &mut StoragePool,
    size: u64, ctx: &mut TxContext): Storage
fun decrease_storage_pool_unused_capacity_by_percent(self: &System, storage_pool: &mut StoragePool,
    percent: u8, ctx: &mut TxContext): Storage
fun certify_pooled_blob(self: &System, storage_pool: &mut StoragePool, blob_id: u256,
    signature: vector<u8>, signers_bitmap: vector<u8>, message: vector<u8>)
fun add_subsidy(system: &mut System, subsidy: Coin<WAL>, epochs_ahead: u32)
fun add_per_epoch_subsidies(system: &mut System, subsidies: vector<Balance<WAL>>)
fun update_protocol_version(self: &mut System, cap: &StorageNodeCap, signature: vector<u8>,
    members_bitmap: vector<u8>, message: vector<u8>)
fun register_deny_list_update(self: &mut System, cap: &StorageNodeCap, deny_list_root: u256,
    deny_list_sequence: u64)
fun update_deny_list(self: &mut System, cap: &mut StorageNodeCap, signature: vector<u8>,
    members_bitmap: vector<u8>, message: vector<u8>)
fun delete_deny_listed_blob(self: &System, signature: vector<u8>, members_bitmap: vector<u8>,
    message: vector<u8>)
fun epoch(self: &System): u32
fun total_capacity_size(self: &System): u64
fun used_capacity_size(self: &System): u64
fun n_shards(self: &System): u16
fun future_accounting(self: &System): &FutureAccountingRingBuffer
fun version(system: &System): u64
fun storage_price_per_unit_size(self: &System): u64
fun write_price_per_unit_size(self: &System): u64
""",
    ("walrus", "staking"): """
struct Staking has key { id: UID, version: u64, package_id: ID, new_package_id: Option<ID> }
fun register_candidate(staking: &mut Staking, name: String, network_address: String,
    metadata: NodeMetadata, public_key: vector<u8>, network_public_key: vector<u8>,
    proof_of_possession: vector<u8>, commission_rate: u16, storage_price: u64, write_price: u64,
    node_capacity: u64, ctx: &mut TxContext): StorageNodeCap
fun set_next_commission(staking: &mut Staking, cap: &StorageNodeCap, commission_rate: u16)
fun collect_commission(staking: &mut Staking, node_id: ID, auth: Authenticated,
    ctx: &mut TxContext): Coin<WAL>
fun set_commission_receiver(staking: &mut Staking, node_id: ID, auth: Authenticated,
    receiver: Authorized)
fun set_governance_authorized(staking: &mut Staking, node_id: ID, auth: Authenticated,
    authorized: Authorized)
fun committee(staking: &Staking): &Committee
fun previous_committee(staking: &Staking): &Committee
fun compute_next_committee(staking: &Staking): Committee
fun set_storage_price_vote(self: &mut Staking, cap: &StorageNodeCap, storage_price: u64)
fun set_write_price_vote(self: &mut Staking, cap: &StorageNodeCap, write_price: u64)
fun set_node_capacity_vote(self: &mut Staking, cap: &StorageNodeCap, node_capacity: u64)
fun update_prices(staking: &mut Staking, system: &mut System)
fun node_metadata(self: &Staking, node_id: ID): NodeMetadata
fun set_next_public_key(self: &mut Staking, cap: &StorageNodeCap, public_key: vector<u8>,
    proof_of_possession: vector<u8>, ctx: &mut TxContext)
fun set_name(self: &mut Staking, cap: &StorageNodeCap, name: String)
fun set_network_address(self: &mut Staking, cap: &StorageNodeCap, network_address: String)
fun set_network_public_key(self: &mut Staking, cap: &StorageNodeCap, network_public_key: vector<u8>)
fun set_node_metadata(self: &mut Staking, cap: &StorageNodeCap, metadata: NodeMetadata)
fun voting_end(staking: &mut Staking, clock: &Clock)
fun initiate_epoch_change(staking: &mut Staking, system: &mut System, clock: &Clock)
fun initiate_epoch_change_v2(staking: &mut Staking, system: &mut System,
    treasury: &mut ProtectedTreasury, clock: &Clock, ctx: &mut TxContext)
fun epoch_sync_done(staking: &mut Staking, cap: &mut StorageNodeCap, epoch: u32, clock: &Clock)
fun stake_with_pool(staking: &mut Staking, to_stake: Coin<WAL>, node_id: ID,
    ctx: &mut TxContext): StakedWal
fun request_withdraw_stake(staking: &mut Staking, staked_wal: &mut StakedWal, ctx: &mut TxContext)
fun withdraw_stake(staking: &mut Staking, staked_wal: StakedWal, ctx: &mut TxContext): Coin<WAL>
fun try_join_active_set(staking: &mut Staking, cap: &StorageNodeCap)
fun add_commission_to_pools(staking: &mut Staking, node_ids: vector<ID>,
    commissions: vector<Balance<WAL>>)
fun epoch(staking: &Staking): u32
fun calculate_rewards(staking: &Staking, node_id: ID, staked_principal: u64, activation_epoch: u32,
    withdraw_epoch: u32): u64
fun can_withdraw_staked_wal_early(staking: &Staking, staked_wal: &StakedWal): bool
fun pool_commission(staking: &Staking, node_id: ID): u64
""",
    ("walrus", "blob"): """
struct Blob has key, store { id: UID, registered_epoch: u32, blob_id: u256, size: u64,
    encoding_type: u8, certified_epoch: Option<u32>, storage: Storage, deletable: bool }
struct BlobIdDerivation has drop { encoding_type: u8, size: u64, root_hash: u256 }
fun object_id(self: &Blob): ID
fun registered_epoch(self: &Blob): u32
fun blob_id(self: &Blob): u256
fun size(self: &Blob): u64
fun encoding_type(self: &Blob): u8
fun certified_epoch(self: &Blob): &Option<u32>
fun storage(self: &Blob): &Storage
fun is_deletable(self: &Blob): bool
fun encoded_size(self: &Blob, n_shards: u16): u64
fun end_epoch(self: &Blob): u32
fun derive_blob_id(root_hash: u256, encoding_type: u8, size: u64): u256
fun burn(self: Blob)
fun add_metadata(self: &mut Blob, metadata: Metadata)
fun add_or_replace_metadata(self: &mut Blob, metadata: Metadata): Option<Metadata>
fun take_metadata(self: &mut Blob): Metadata
fun insert_or_update_metadata_pair(self: &mut Blob, key: String, value: String)
fun remove_metadata_pair(self: &mut Blob, key: &String): (String, String)
fun remove_metadata_pair_if_exists(self: &mut Blob, key: &String): Option<String>
""",
    ("walrus", "storage_resource"): """
struct Storage has key, store { id: UID, start_epoch: u32, end_epoch: u32, storage_size: u64 }
fun start_epoch(self: &Storage): u32
fun end_epoch(self: &Storage): u32
fun size(self: &Storage): u64
fun split_by_epoch(storage: &mut Storage, split_epoch: u32, ctx: &mut TxContext): Storage
fun split_by_size(storage: &mut Storage, split_size: u64, ctx: &mut TxContext): Storage
fun fuse_periods(first: &mut Storage, second: Storage)
fun fuse_amount(first: &mut Storage, second: Storage)
fun fuse(first: &mut Storage, second: Storage)
fun destroy(storage: Storage)
""",
    ("walrus", "storage_pool"): """
struct StoragePool has key, store { id: UID, version: u64 }
struct StoragePoolInnerV1 has store { storage: Storage, used_encoded_bytes: u64, blob_count: u64,
    blobs: ObjectTable<u256, PooledBlob> }
struct PooledBlob has key, store { id: UID, registered_epoch: u32, blob_id: u256,
    unencoded_size: u64, encoding_type: u8, certified_epoch: Option<u32>, storage_pool_id: ID,
    deletable: bool }
fun start_epoch(self: &StoragePool): u32
fun end_epoch(self: &StoragePool): u32
fun reserved_encoded_capacity_bytes(self: &StoragePool): u64
fun used_encoded_bytes(self: &StoragePool): u64
fun available_encoded_bytes(self: &StoragePool): u64
fun storage(self: &StoragePool): &Storage
fun blob_count(self: &StoragePool): u64
fun contains_blob(self: &StoragePool, blob_id: u256): bool
fun blob_object_id(self: &StoragePool, blob_id: u256): ID
fun object_id(self: &StoragePool): ID
fun destroy(self: StoragePool): Storage
fun add_blob_metadata(self: &mut StoragePool, blob_id: u256, metadata: Metadata)
fun add_or_replace_blob_metadata(self: &mut StoragePool, blob_id: u256,
    metadata: Metadata): Option<Metadata>
fun take_blob_metadata(self: &mut StoragePool, blob_id: u256): Metadata
fun insert_or_update_blob_metadata_pair(self: &mut StoragePool, blob_id: u256, key: String,
    value: String)
fun remove_blob_metadata_pair(self: &mut StoragePool, blob_id: u256,
    key: &String): (String, String)
fun remove_blob_metadata_pair_if_exists(self: &mut StoragePool, blob_id: u256,
    key: &String): Option<String>
""",
    ("walrus", "metadata"): """
struct Metadata has drop, store { metadata: VecMap<String, String> }
fun new(): Metadata
fun insert_or_update(self: &mut Metadata, key: String, value: String)
fun remove(self: &mut Metadata, key: &String): (String, String)
fun remove_if_exists(self: &mut Metadata, key: &String): Option<String>
""",
    ("wal", "wal"): """
struct WAL has drop {}
struct ProtectedTreasury has key { id: UID }
struct TreasuryCapKey has copy, drop, store {}
fun total_supply(treasury: &ProtectedTreasury): u64
fun burn(treasury: &mut ProtectedTreasury, coin: Coin<WAL>)
""",
    ("wal_exchange", "wal_exchange"): """
struct ExchangeRate has copy, drop, store { wal: u64, sui: u64 }
struct Exchange has key, store { id: UID, wal: Balance<WAL>, sui: Balance<SUI>, rate: ExchangeRate,
    admin: ID }
struct AdminCap has key, store { id: UID }
fun new_exchange_rate(wal: u64, sui: u64): ExchangeRate
fun new(ctx: &mut TxContext): AdminCap
fun new_funded(wal: &mut Coin<WAL>, amount: u64, ctx: &mut TxContext): AdminCap
fun add_wal(self: &mut Exchange, wal: &mut Coin<WAL>, amount: u64)
fun add_sui(self: &mut Exchange, sui: &mut Coin<SUI>, amount: u64)
fun add_all_wal(self: &mut Exchange, wal: Coin<WAL>)
fun add_all_sui(self: &mut Exchange, sui: Coin<SUI>)
fun withdraw_wal(self: &mut Exchange, amount: u64, admin_cap: &AdminCap,
    ctx: &mut TxContext): Coin<WAL>
fun withdraw_sui(self: &mut Exchange, amount: u64, admin_cap: &AdminCap,
    ctx: &mut TxContext): Coin<SUI>
fun set_exchange_rate(self: &mut Exchange, wal: u64, sui: u64, admin_cap: &AdminCap)
fun exchange_all_for_wal(self: &mut Exchange, sui: Coin<SUI>, ctx: &mut TxContext): Coin<WAL>
fun exchange_for_wal(self: &mut Exchange, sui: &mut Coin<SUI>, amount_sui: u64,
    ctx: &mut TxContext): Coin<WAL>
fun exchange_all_for_sui(self: &mut Exchange, wal: Coin<WAL>, ctx: &mut TxContext): Coin<SUI>
fun exchange_for_sui(self: &mut Exchange, wal: &mut Coin<WAL>, amount_wal: u64,
    ctx: &mut TxContext): Coin<SUI>
""",
    (SUI_FRAMEWORK, "coin"): """
struct Coin<phantom T> has key, store { id: UID, balance: Balance<T> }
fun value<T>(self: &Coin<T>): u64
entry fun join<T>(self: &mut Coin<T>, c: Coin<T>)
fun split<T>(self: &mut Coin<T>, split_amount: u64, ctx: &mut TxContext): Coin<T>
fun zero<T>(ctx: &mut TxContext): Coin<T>
fun destroy_zero<T>(c: Coin<T>)
""",
}
