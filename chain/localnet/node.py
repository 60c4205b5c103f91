"""The stand-in chain: genesis, Walrus epochs, transaction execution and the replies the
`sui.rpc.v2` services send (as pysui's bundled protobuf messages).

Walrus epochs advance with wall-clock time (`epoch_duration_ms`, checked before every request)
and by `advance_epoch()` for tests. An epoch change does what `advance_epoch` in
`system_state_inner.move` does for the client-visible state: the committee's epoch moves on,
the future-accounting ring buffer pops the finished epoch and appends an empty one, and the
used capacity becomes the new epoch's. The committee itself (nodes, keys, shards) is fixed at
genesis: the devnet has no staking.

An epoch change is recorded as a system transaction of its own (one checkpoint, like Sui's
end-of-epoch transaction) that emits the Walrus package's `EpochChangeStart { epoch }`, so
storage nodes that follow the checkpoint stream learn of it as real nodes do, from an event.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base58
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
from pysui.sui.sui_bcs import bcs

from chain import move_types as mt
from chain.bls import aggregate_verify, g1_compress, g1_sum
from chain.localnet.committee import apportionment, initialize, transition
from chain.localnet.executor import (
    MOCK_GAS_ID,
    STORAGE_COST_PER_BYTE,
    SUI_TYPE,
    ExecFailure,
    Executor,
    Outcome,
    TxRejected,
    coin_inner,
    coin_type,
    object_digest,
)
from chain.localnet.ledger import (
    OWNER_ADDRESS,
    OWNER_IMMUTABLE,
    OWNER_OBJECT,
    OWNER_SHARED,
    Ledger,
    StoredObject,
)
from chain.localnet.moves import build_functions
from chain.localnet.moves.deployment import STAKING_VERSION, SYSTEM_VERSION, Deployment, field_type
from chain.localnet.packages import Packages
from chain.localnet.resolve import transaction_proto

MIST_PER_SUI = 10**9
#: Sui protocol configuration the simulator's gas rules use (`sui-protocol-config`):
#: `max_tx_gas`, `max_gas_payment_objects`, `max_input_objects`,
#: `obj_access_cost_read_per_byte`, `gas_rounding_step`; and the simulator's margin
#: (`GAS_SAFE_OVERHEAD` units at the gas price, `simulate/mod.rs`).
MAX_TX_GAS = 50 * MIST_PER_SUI
MAX_GAS_PAYMENT_OBJECTS = 256
MAX_INPUT_OBJECTS = 2048
OBJ_ACCESS_COST_READ_PER_BYTE = 15
GAS_ROUNDING_STEP = 1000
GAS_SAFE_OVERHEAD = 1000
GAS_COIN_SIZE_BYTES = 40


def _gas_loading_cost(extra_coins: int, price: int) -> int:
    """`compute_gas_loading_cost_mist`: reading `extra_coins` more gas coins, in MIST."""
    units = extra_coins * GAS_COIN_SIZE_BYTES * OBJ_ACCESS_COST_READ_PER_BYTE
    units = -(-units // GAS_ROUNDING_STEP) * GAS_ROUNDING_STEP
    return units * price


FROST_PER_WAL = 10**9
STAKE_PER_SHARD = 1_000_000 * FROST_PER_WAL
#: what a node signs (BLS, its pool key) to attest that it holds every shard of the new
#: committee (the devnet's stand-in for `staking::epoch_sync_done`, which a real node calls
#: with its StorageNodeCap): this prefix || node ID (32 bytes) || epoch (u32 LE)
SYNC_DONE_PREFIX = b"walrusfs-devnet:epoch_sync_done:"
EPOCH_CHANGE_SYNC = 0


def sync_done_message(node_id: str, epoch: int) -> bytes:
    return (
        SYNC_DONE_PREFIX
        + bytes.fromhex(node_id.removeprefix("0x").rjust(64, "0"))
        + (epoch.to_bytes(4, "little"))
    )


class EpochChangeInProgress(Exception):
    """The previous epoch change has not finished (nodes of 2f+1 shards have not attested
    that they hold their shards): the chain cannot start another one yet."""


@dataclass(frozen=True)
class EpochChangeDone(mt.MoveStruct):
    """`walrus::events::EpochChangeDone` (`contracts/walrus/sources/system/events.move`)."""

    epoch: int
    FIELDS = (("epoch", "u32"),)


@dataclass(frozen=True)
class InvalidBlobID(mt.MoveStruct):
    """`walrus::events::InvalidBlobID`: the blob ID is invalid (its slivers do not encode one
    blob), from the epoch it was first registered as invalid."""

    epoch: int
    blob_id: int
    FIELDS = (("epoch", "u32"), ("blob_id", "u256"))


@dataclass(frozen=True)
class ShardsReceived(mt.MoveStruct):
    """`walrus::events::ShardsReceived`."""

    epoch: int
    shards: list[int]
    FIELDS = (("epoch", "u32"), ("shards", ("vector", "u16")))


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


@dataclass
class Localnet:
    """One stand-in chain over one ledger file."""

    ledger: Ledger
    deployment: Deployment
    executor: Executor = field(init=False)
    packages: Packages = field(init=False)

    def __post_init__(self) -> None:
        gas_price = int(self.ledger.meta("reference_gas_price") or "1000")
        dep = self.deployment
        self.packages = Packages(
            {"walrus": dep.walrus_pkg, "wal": dep.wal_pkg, "wal_exchange": dep.exchange_pkg}
        )
        self.executor = Executor(
            self.ledger,
            dep.decode,
            build_functions(dep),
            gas_price,
            self.walrus_epoch,
            published=self.packages.has_function,
        )

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path) -> Localnet:
        """Open an existing ledger (genesis done)."""
        ledger = Ledger(path)
        values = {
            k: ledger.meta(k)
            for k in (
                "walrus_pkg",
                "wal_pkg",
                "exchange_pkg",
                "system_id",
                "staking_id",
                "exchange_id",
            )
        }
        if any(v is None for v in values.values()):
            ledger.close()
            raise FileNotFoundError(f"{path} is not a devnet ledger (no genesis)")
        return cls(ledger, Deployment(**values))  # type: ignore[arg-type]

    @classmethod
    def genesis(cls, path: Path, config: GenesisConfig) -> Localnet:
        """Create the ledger: packages, System, Staking, Exchange, pools and funded coins."""
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
        return cls(ledger, dep)

    def close(self) -> None:
        self.ledger.close()

    def chain_id(self) -> str:
        """The chain identifier: as on Sui, the base58 digest of the genesis checkpoint
        (sui-types `ChainIdentifier`, which `GetServiceInfo.chain_id` prints), checkpoint 0
        here. Derived from the System object's ID, which genesis chose from its seed."""
        digest = hashlib.blake2b(
            b"CheckpointSummary::genesis::" + bytes.fromhex(self.deployment.system_id[2:]),
            digest_size=32,
        ).digest()
        return str(base58.b58encode(digest).decode())

    # -- epochs -----------------------------------------------------------------------------

    def walrus_epoch(self) -> int:
        inner = self.system_state()
        return inner.committee.epoch

    def system_state(self) -> mt.SystemStateInnerV1:
        stored = self.ledger.get(self.deployment.system_inner_id())
        assert stored is not None
        value: mt.SystemStateInnerV1 = self.deployment.decode(stored)
        return value

    def tick(self, now_ms: int | None = None) -> int:
        """Advance past every epoch whose time is up; returns the current epoch."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self.ledger.lock:
            duration = int(self.ledger.meta("epoch_duration_ms") or "0")
            start = int(self.ledger.meta("epoch_start_ms") or "0")
            while duration > 0 and now_ms >= start + duration:
                if self.change_in_progress() is not None:
                    break  # as on Walrus: the next epoch waits for the sync to finish
                start += duration
                self._advance_one(start)
            return self.walrus_epoch()

    def next_epoch_ms(self) -> int | None:
        """When the next epoch starts by the clock (ms since 1970); None if never."""
        duration = int(self.ledger.meta("epoch_duration_ms") or "0")
        start = int(self.ledger.meta("epoch_start_ms") or "0")
        return start + duration if duration > 0 else None

    def advance_epoch(self, count: int = 1) -> int:
        """Admin: start the next epoch now (`count` times). Returns the new epoch."""
        with self.ledger.lock:
            now_ms = int(time.time() * 1000)
            for _ in range(count):
                progress = self.change_in_progress()
                if progress is not None:
                    raise EpochChangeInProgress(
                        f"the change to epoch {self.walrus_epoch()} is in progress: nodes of "
                        f"{progress[0]} of the {progress[1]} shards needed have attested that "
                        "they hold their shards"
                    )
                self._advance_one(now_ms)
            return self.walrus_epoch()

    def staking_state(self) -> mt.StakingInnerV1:
        stored = self.ledger.get(self.deployment.staking_inner_id())
        assert stored is not None
        value: mt.StakingInnerV1 = self.deployment.decode(stored)
        return value

    def change_in_progress(self) -> tuple[int, int] | None:
        """(attested weight, weight needed) while an epoch change moves shards, else None."""
        staking = self.staking_state()
        if staking.epoch_state[0] != EPOCH_CHANGE_SYNC:
            return None
        return int(staking.epoch_state[1] or 0), (2 * staking.n_shards + 1 + 2) // 3

    def pools(self) -> list[tuple[StoredObject, mt.StakingPool]]:
        """Every staking pool, by node ID."""
        staking = self.staking_state()
        stored = self.ledger.owned_by(staking.pools)
        out = [(o, self.deployment.decode(o)) for o in stored]
        return sorted(
            [(o, p) for o, p in out if isinstance(p, mt.StakingPool)],
            key=lambda x: int(x[0].id, 16),
        )

    def set_stake(self, node_id: str, stake: int) -> None:
        """Admin: the WAL staked with a node (its ID, or its name), as if stake had been added
        or withdrawn;
        the next epoch's committee is apportioned from it (the devnet's stand-in for
        `staking::stake_with_pool` / withdrawals, which take effect at an epoch change)."""
        if not 0 <= stake < 2**64:
            raise ValueError(f"stake {stake} out of range")
        with self.ledger.lock:
            for stored, pool in self.pools():
                if _names(node_id, stored.id, pool):
                    new = dataclasses.replace(
                        stored,
                        version=stored.version + 1,
                        contents=dataclasses.replace(pool, wal_balance=stake).to_bcs(),
                    )
                    new.digest = object_digest(new)
                    self.ledger.apply([new], [])
                    return
        raise ValueError(f"no storage node {node_id}")

    def epoch_sync_done(self, node_id: str, epoch: int, signature: bytes) -> bool:
        """A node attests that it holds every shard the new committee gave it
        (`staking_inner::epoch_sync_done`, with the contract's checks: this epoch, a member,
        once). Authenticated by a BLS signature of `sync_done_message` with the node's key in
        place of the StorageNodeCap. Records a system transaction emitting `ShardsReceived`
        and, when the attested shards reach a quorum (3w >= 2n+1), `EpochChangeDone`. Returns
        whether the change is done."""
        node_id = "0x" + node_id.removeprefix("0x").rjust(64, "0").lower()
        with self.ledger.lock:
            staking = self.staking_state()
            if epoch != staking.epoch:
                raise ValueError(f"sync done for epoch {epoch}, the epoch is {staking.epoch}")
            members = {int(a.node_id, 16): a for a in staking.committee}
            if int(node_id, 16) not in members:
                raise ValueError(f"{node_id} is not in the committee of epoch {epoch}")
            pool = next(p for o, p in self.pools() if int(o.id, 16) == int(node_id, 16))
            key = g1_compress(pool.node_info.public_key)
            if not aggregate_verify(signature, [key], sync_done_message(node_id, epoch)):
                raise ValueError("the sync-done attestation is not signed by the node's key")
            done_key = f"sync_done/{epoch}/{int(node_id, 16):064x}"
            if self.ledger.meta(done_key) is not None:
                raise ValueError(f"{node_id} already attested for epoch {epoch}")
            shards = members[int(node_id, 16)].shards
            events: list[tuple[str, bytes]] = [
                ("ShardsReceived", ShardsReceived(epoch, list(shards)).to_bcs())
            ]
            state = staking.epoch_state
            written = []
            if state[0] == EPOCH_CHANGE_SYNC:
                weight = int(state[1] or 0) + len(shards)
                if 3 * weight >= 2 * staking.n_shards + 1:
                    state = (mt.EPOCH_CHANGE_DONE, int(time.time() * 1000))
                    events.append(("EpochChangeDone", EpochChangeDone(epoch).to_bcs()))
                else:
                    state = (EPOCH_CHANGE_SYNC, weight)
                stk_stored = self.ledger.get(self.deployment.staking_inner_id())
                assert stk_stored is not None and stk_stored.df_name is not None
                value = dataclasses.replace(staking, epoch_state=state)
                new = dataclasses.replace(
                    stk_stored,
                    version=stk_stored.version + 1,
                    contents=mt.field_contents(stk_stored.id, stk_stored.df_name, value.to_bcs()),
                )
                new.digest = object_digest(new)
                written.append(new)
            digest = _system_digest(b"EpochSyncDone::", node_id, epoch)
            for obj in written:
                obj.previous_tx = digest
                obj.digest = object_digest(obj)
            reply = self._system_tx(digest, epoch, events, int(time.time() * 1000))
            self.ledger.apply(written, [], tx=(digest, bytes(reply)), meta={done_key: "1"})
            return state[0] != EPOCH_CHANGE_SYNC

    def invalidate_blob(self, blob_id: int) -> str:
        """Admin: record that `blob_id` is invalid, emitting `InvalidBlobID` as
        `system::invalidate_blob_id` does once it has verified an invalidity certificate
        (storage nodes of more than f shards signing `InvalidBlobIdMsg` after an inconsistency
        proof). The devnet skips the certificate: it has no inconsistent blobs to prove.
        Returns the transaction digest."""
        if not 0 <= blob_id < 2**256:
            raise ValueError("blob ID out of range")
        with self.ledger.lock:
            epoch = self.walrus_epoch()
            key = f"invalid/{blob_id:064x}"
            if self.ledger.meta(key) is not None:
                raise ValueError("the blob ID is already invalid")
            digest = _system_digest(b"InvalidBlobID::", f"0x{blob_id:064x}", epoch)
            event = InvalidBlobID(epoch, blob_id).to_bcs()
            reply = self._system_tx(
                digest, epoch, [("InvalidBlobID", event)], int(time.time() * 1000)
            )
            self.ledger.apply([], [], tx=(digest, bytes(reply)), meta={key: "1"})
            return digest

    def _system_tx(
        self, digest: str, epoch: int, events: list[tuple[str, bytes]], at_ms: int
    ) -> pb.ExecutedTransaction:
        dep = self.deployment
        return pb.ExecutedTransaction(
            digest=digest,
            effects=pb.TransactionEffects(
                status=pb.ExecutionStatus(success=True), epoch=epoch, transaction_digest=digest
            ),
            events=pb.TransactionEvents(
                events=[
                    pb.Event(
                        package_id=dep.walrus_pkg,
                        module="events",
                        sender="0x" + "0" * 64,
                        event_type=f"{dep.walrus_pkg}::events::{name}",
                        contents=pb.Bcs(name=f"{dep.walrus_pkg}::events::{name}", value=bcs),
                        transaction_digest=digest,
                        event_index=i,
                    )
                    for i, (name, bcs) in enumerate(events)
                ]
            ),
            timestamp=datetime.datetime.fromtimestamp(at_ms / 1000, datetime.UTC),
        )

    def _next_committee(
        self, staking: mt.StakingInnerV1
    ) -> tuple[list[mt.ShardAssignment], list[mt.BlsCommitteeMember]]:
        """The committee of the next epoch (`compute_next_committee`: apportionment of the
        pools' stake, then `transition` from the current assignment) and its BLS committee
        (members in node-ID order, weight = shards, the pools' keys)."""
        pools = self.pools()
        counts = apportionment(
            staking.n_shards, [(o.id, p.wal_balance) for o, p in pools if p.wal_balance > 0]
        )
        current = [(a.node_id, list(a.shards)) for a in staking.committee]
        assigned = transition(current, counts)
        keys = {int(o.id, 16): p.node_info for o, p in pools}
        assignment = [mt.ShardAssignment(node, sorted(shards)) for node, shards in assigned]
        members = [
            mt.BlsCommitteeMember(
                keys[int(node, 16)].next_epoch_public_key or keys[int(node, 16)].public_key,
                len(shards),
                node,
            )
            for node, shards in assigned
        ]
        return assignment, members

    def _advance_one(self, start_ms: int) -> None:
        dep = self.deployment
        sys_stored = self.ledger.get(dep.system_inner_id())
        stk_stored = self.ledger.get(dep.staking_inner_id())
        assert sys_stored is not None and stk_stored is not None
        inner: mt.SystemStateInnerV1 = dep.decode(sys_stored)
        staking: mt.StakingInnerV1 = dep.decode(stk_stored)
        ring = inner.future_accounting
        entries = list(ring.ring_buffer)
        finished = entries[ring.current_index]
        entries[ring.current_index] = mt.FutureAccounting(finished.epoch + ring.length, 0, 0)
        new_index = (ring.current_index + 1) % ring.length
        ring = mt.FutureAccountingRingBuffer(new_index, ring.length, entries)
        epoch = inner.committee.epoch + 1
        assignment, members = self._next_committee(staking)
        moved = [(a.node_id, a.shards) for a in assignment] != [
            (a.node_id, sorted(a.shards)) for a in staking.committee
        ]
        bls = dataclasses.replace(inner.committee, epoch=epoch)
        if moved:
            bls = mt.BlsCommittee(
                members, inner.committee.n_shards, epoch, g1_sum([m.public_key for m in members])
            )
        inner = dataclasses.replace(
            inner,
            committee=bls,
            future_accounting=ring,
            used_capacity_size=ring.lookup(0).used_capacity,
        )
        # Shards that move make the epoch change a sync (`advance_epoch`: EpochChangeSync(0))
        # that ends when nodes of 2f+1 shards attest they hold theirs. When nothing moves the
        # devnet ends it at once: a Walrus node with nothing to fetch attests right away.
        staking = dataclasses.replace(
            staking,
            epoch=epoch,
            committee=assignment if moved else staking.committee,
            previous_committee=staking.committee,
            epoch_state=(EPOCH_CHANGE_SYNC, 0) if moved else (mt.EPOCH_CHANGE_DONE, start_ms),
        )
        digest = _epoch_change_digest(dep.system_inner_id(), epoch, start_ms)
        written = []
        for stored, value in ((sys_stored, inner), (stk_stored, staking)):
            assert stored.df_name is not None
            new = dataclasses.replace(
                stored,
                version=stored.version + 1,
                contents=mt.field_contents(stored.id, stored.df_name, value.to_bcs()),
                previous_tx=digest,
            )
            new.digest = object_digest(new)
            written.append(new)
        event = mt.EpochChangeStart(epoch)
        name = f"{dep.walrus_pkg}::events::EpochChangeStart"
        reply = pb.ExecutedTransaction(
            digest=digest,
            effects=pb.TransactionEffects(
                status=pb.ExecutionStatus(success=True), epoch=epoch, transaction_digest=digest
            ),
            events=pb.TransactionEvents(
                events=[
                    pb.Event(
                        package_id=dep.walrus_pkg,
                        module="events",
                        sender="0x" + "0" * 64,
                        event_type=name,
                        contents=pb.Bcs(name=name, value=event.to_bcs()),
                        transaction_digest=digest,
                        event_index=0,
                    )
                ]
            ),
            timestamp=datetime.datetime.fromtimestamp(start_ms / 1000, datetime.UTC),
        )
        self.ledger.apply(
            written, [], tx=(digest, bytes(reply)), meta={"epoch_start_ms": str(start_ms)}
        )

    # -- transactions -----------------------------------------------------------------------

    def execute(self, tx_bytes: bytes, signatures: list[bytes]) -> pb.ExecutedTransaction:
        """Execute; `TxRejected` if invalid. A failed execution is a reply with an error."""
        with self.ledger.lock:
            self.tick()
            outcome = self.executor.execute(tx_bytes, signatures)
            written = [after for _, _, after, _ in outcome.changed if after is not None]
            deleted = [obj.id for obj, _, after, _ in outcome.changed if after is None]
            reply = self._reply(tx_bytes, signatures, outcome)
            seq = self.ledger.apply(written, deleted, tx=(outcome.digest, bytes(reply)))
            reply.checkpoint = seq
            return reply

    def simulate(
        self, tx_bytes: bytes, *, gas_selection: bool, estimate_budget: bool, payment_given: int
    ) -> pb.ExecutedTransaction:
        """Dry-run: the effects the transaction would have; nothing is written.

        As a full node simulates (sui `simulate/mod.rs`, `simulate_transaction`): with
        `gas_selection`, a budget the client did not give (`estimate_budget`) is estimated from
        a run paid by a mock gas coin (`estimate_gas_budget`), and a transaction without gas
        payment gets every SUI coin of its gas owner that is not an input (`select_gas`); then
        it runs as it would execute. Without gas selection, a transaction without payment is
        run with the mock coin. The reply's transaction is the one simulated (resolved).
        """
        with self.ledger.lock:
            self.tick()
            data = bcs.TransactionData.deserialize(tx_bytes)
            v1 = data.value
            gas = v1.GasData
            price = int(gas.Price)
            if gas_selection:
                if estimate_budget:
                    estimate = self._estimate_budget(data, price, payment_given)
                    if int(gas.Budget) < estimate:
                        raise TxRejected(
                            "Insufficient gas balance to cover estimated transaction cost. "
                            f"Available gas balance: {gas.Budget} MIST. "
                            f"Estimated gas budget required: {estimate} MIST"
                        )
                    gas.Budget = estimate
                if not gas.Payment:
                    self._select_gas(v1, price if estimate_budget else None)
                tx_bytes = bytes(data.serialize())
                outcome = self.executor.simulate(tx_bytes)
            else:
                outcome = self.executor.simulate(tx_bytes, mock_gas=True)
            return self._reply(tx_bytes, [], outcome)

    def _estimate_budget(self, data: Any, price: int, payment_given: int) -> int:
        """`estimate_gas_budget_from_gas_cost`: a run with the maximum budget and the mock coin;
        max(computation, computation + storage - mock coin's storage - rebate), plus the
        loading cost of payment coins beyond one, plus `GAS_SAFE_OVERHEAD` units, capped."""
        trial = bcs.TransactionData.deserialize(bytes(data.serialize()))
        trial.value.GasData.Payment = []
        trial.value.GasData.Budget = MAX_TX_GAS
        outcome = self.executor.simulate(bytes(trial.serialize()), mock_gas=True)
        mock_storage = STORAGE_COST_PER_BYTE * len(mt.Coin(MOCK_GAS_ID, 0).to_bcs())
        storage = max(0, outcome.storage_cost - mock_storage)
        net = max(0, outcome.computation_cost + storage - outcome.storage_rebate)
        base = max(outcome.computation_cost, net)
        loading = _gas_loading_cost(max(0, payment_given - 1), price)
        return min(base + loading + GAS_SAFE_OVERHEAD * price, MAX_TX_GAS)

    def _select_gas(self, v1: Any, loading_price: int | None) -> None:
        """`select_gas`: the owner's SUI coins that are not inputs, up to the payment limit;
        the budget grows by the loading cost of coins beyond one when it was estimated."""
        owner = "0x" + bytes(v1.GasData.Owner.Address).hex()
        ptb = v1.TransactionKind.value
        inputs = {
            "0x" + bytes(arg.value.value.ObjectID.Address).hex()
            for arg in ptb.Inputs
            if arg.enum_name == "Object"
        }
        limit = min(MAX_GAS_PAYMENT_OBJECTS, MAX_INPUT_OBJECTS - len(inputs))
        coins = sorted(
            (c for c in self.ledger.owned_by(owner, coin_type(SUI_TYPE)) if c.id not in inputs),
            key=lambda c: c.id,
        )[: max(0, limit)]
        value = sum(int.from_bytes(c.contents[32:40], "little") for c in coins)
        v1.GasData.Payment = [
            bcs.ObjectReference(
                bcs.Address.from_str(c.id), c.version, bcs.Digest.from_str(c.digest)
            )
            for c in coins
        ]
        budget = int(v1.GasData.Budget)
        if loading_price is not None:
            budget = min(
                budget + _gas_loading_cost(max(0, len(coins) - 1), loading_price), MAX_TX_GAS
            )
            v1.GasData.Budget = budget
        if value < budget:
            raise TxRejected(
                "Unable to perform gas selection due to insufficient SUI balance (in address "
                f"balance or coins) for account {owner} to satisfy required budget {budget}."
            )

    def _reply(
        self, tx_bytes: bytes, signatures: list[bytes], outcome: Outcome
    ) -> pb.ExecutedTransaction:
        status = pb.ExecutionStatus(success=outcome.success)
        if outcome.error is not None:
            status.error = _error_proto(outcome.error)
        changed: list[pb.ChangedObject] = []
        gas_object: pb.ChangedObject | None = None
        outputs: list[pb.Object] = []
        for obj, before, after, op in outcome.changed:
            proto = pb.ChangedObject(
                object_id=obj.id,
                input_state=pb.ChangedObjectInputObjectState.EXISTS
                if before is not None
                else pb.ChangedObjectInputObjectState.DOES_NOT_EXIST,
                output_state=pb.ChangedObjectOutputObjectState.OBJECT_WRITE
                if after is not None
                else pb.ChangedObjectOutputObjectState.DOES_NOT_EXIST,
                id_operation={
                    "created": pb.ChangedObjectIdOperation.CREATED,
                    "deleted": pb.ChangedObjectIdOperation.DELETED,
                    "none": pb.ChangedObjectIdOperation.NONE,
                }[op],
                object_type=obj.type,
            )
            if before is not None:
                proto.input_version = before.version
                proto.input_digest = before.digest
                proto.input_owner = owner_proto(before)
            if after is not None:
                proto.output_version = after.version
                proto.output_digest = after.digest
                proto.output_owner = owner_proto(after)
                outputs.append(object_proto(after))
            changed.append(proto)
            if obj.id == outcome.gas_id:
                gas_object = proto
        digest = outcome.digest
        events = [
            pb.Event(
                package_id=package,
                module=module,
                sender=outcome.sender,
                event_type=f"{package}::{module}::{type(event).__name__}",
                contents=pb.Bcs(
                    name=f"{package}::{module}::{type(event).__name__}", value=event.to_bcs()
                ),
                transaction_digest=digest,
                event_index=i,
            )
            for i, (package, module, event) in enumerate(outcome.events)
        ]
        return pb.ExecutedTransaction(
            digest=digest,
            transaction=transaction_proto(tx_bytes),
            signatures=[
                pb.UserSignature(bcs=pb.Bcs(name="UserSignature", value=s)) for s in signatures
            ],
            effects=pb.TransactionEffects(
                status=status,
                epoch=self.walrus_epoch(),
                gas_used=pb.GasCostSummary(
                    computation_cost=outcome.computation_cost,
                    storage_cost=outcome.storage_cost,
                    storage_rebate=outcome.storage_rebate,
                    non_refundable_storage_fee=outcome.non_refundable_storage_fee,
                ),
                transaction_digest=digest,
                gas_object=gas_object,
                changed_objects=changed,
                lamport_version=outcome.lamport,
            ),
            events=pb.TransactionEvents(events=events),
            objects=pb.ObjectSet(objects=outputs),
            timestamp=datetime.datetime.now(datetime.UTC),
        )


def _names(wanted: str, object_id: str, pool: mt.StakingPool) -> bool:
    """`wanted` is the pool's node ID (0x-hex) or the node's name."""
    if wanted.startswith("0x"):
        return int(wanted, 16) == int(object_id, 16)
    return pool.node_info.name == wanted


def _system_digest(kind: bytes, node_id: str, epoch: int) -> str:
    """The synthetic digest of a devnet system transaction about a node in an epoch."""
    h = hashlib.blake2b(kind, digest_size=32)
    h.update(bytes.fromhex(node_id.removeprefix("0x")) + epoch.to_bytes(8, "little"))
    return str(base58.b58encode(h.digest()).decode())


def _epoch_change_digest(system_inner: str, epoch: int, start_ms: int) -> str:
    """The synthetic digest of the system transaction that starts `epoch`."""
    h = hashlib.blake2b(b"EpochChange::", digest_size=32)
    h.update(bytes.fromhex(system_inner.removeprefix("0x")))
    h.update(epoch.to_bytes(8, "little") + start_ms.to_bytes(8, "little"))
    return str(base58.b58encode(h.digest()).decode())


def _error_proto(error: ExecFailure) -> pb.ExecutionError:
    proto = pb.ExecutionError(
        description=error.description,
        kind=pb.ExecutionErrorExecutionErrorKind(error.kind),
    )
    if error.command is not None:
        proto.command = error.command
    if error.abort_code is not None:
        proto.abort = pb.MoveAbort(
            abort_code=error.abort_code,
            location=pb.MoveLocation(
                package=error.package, module=error.module, function_name=error.function
            ),
        )
    return proto


def owner_proto(obj: StoredObject) -> pb.Owner:
    if obj.owner_kind == OWNER_SHARED:
        return pb.Owner(kind=pb.OwnerOwnerKind.SHARED, version=obj.initial_shared_version)
    if obj.owner_kind == OWNER_IMMUTABLE:
        return pb.Owner(kind=pb.OwnerOwnerKind.IMMUTABLE)
    kind = (
        pb.OwnerOwnerKind.ADDRESS if obj.owner_kind == OWNER_ADDRESS else pb.OwnerOwnerKind.OBJECT
    )
    return pb.Owner(kind=kind, address=obj.owner)


def object_proto(obj: StoredObject) -> pb.Object:
    proto = pb.Object(
        object_id=obj.id,
        version=obj.version,
        digest=obj.digest,
        owner=owner_proto(obj),
        object_type=obj.type,
        has_public_transfer=obj.owner_kind == OWNER_ADDRESS,
        contents=pb.Bcs(name=obj.type, value=obj.contents),
        previous_transaction=obj.previous_tx,
    )
    if coin_inner(obj.type) is not None:
        proto.balance = int.from_bytes(obj.contents[32:40], "little")
    return proto


def dynamic_field_proto(obj: StoredObject) -> pb.DynamicField:
    assert obj.df_name is not None and obj.df_name_type is not None
    return pb.DynamicField(
        kind=pb.DynamicFieldDynamicFieldKind.FIELD,
        parent=obj.owner,
        field_id=obj.id,
        name=pb.Bcs(name=obj.df_name_type, value=obj.df_name),
        value=pb.Bcs(name=obj.df_value_type, value=mt.field_value(obj.contents, obj.df_name)),
        value_type=obj.df_value_type,
        field_object=object_proto(obj),
    )
