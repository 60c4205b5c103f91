"""The devnet's admin operations on the chain, stand-ins for what real Walrus does through
transactions the devnet does not model: a node's stake (`staking::stake_with_pool` and
withdrawals), a node's attestation that it holds its shards (`staking::epoch_sync_done`,
authenticated by a BLS signature in place of the StorageNodeCap), and an invalid blob ID
(`system::invalidate_blob_id` without its certificate). Each records a system transaction
with the events the contract emits."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass

import base58

from chain import move_types as mt
from chain.bls import aggregate_verify, g1_compress
from chain.localnet.digests import object_digest
from chain.localnet.replies import system_transaction
from chain.localnet.state import EPOCH_CHANGE_SYNC, ChainState

#: what a node signs (BLS, its pool key) to attest that it holds every shard of the new
#: committee (the devnet's stand-in for `staking::epoch_sync_done`, which a real node calls
#: with its StorageNodeCap): this prefix || node ID (32 bytes) || epoch (u32 LE)
SYNC_DONE_PREFIX = b"walrusfs-devnet:epoch_sync_done:"


def sync_done_message(node_id: str, epoch: int) -> bytes:
    return (
        SYNC_DONE_PREFIX
        + bytes.fromhex(node_id.removeprefix("0x").rjust(64, "0"))
        + (epoch.to_bytes(4, "little"))
    )


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


def set_stake(chain: ChainState, node_id: str, stake: int) -> None:
    """Admin: the WAL staked with a node, as if stake had been added or withdrawn; the next
    epoch's committee is apportioned from it (the devnet's stand-in for
    `staking::stake_with_pool` / withdrawals, which take effect at an epoch change).

    Args:
        node_id: the pool's object ID (0x-hex) or the node's name.
        stake: the pool's new balance in FROST (0 leaves the node out of the next committee).

    Raises:
        ValueError: `stake` is not a u64, or no pool is that node's.
    """
    if not 0 <= stake < 2**64:
        raise ValueError(f"stake {stake} out of range")
    with chain.ledger.lock:
        for stored, pool in chain.pools():
            if _names(node_id, stored.id, pool):
                new = dataclasses.replace(
                    stored,
                    version=stored.version + 1,
                    contents=dataclasses.replace(pool, wal_balance=stake).to_bcs(),
                )
                new.digest = object_digest(new)
                chain.ledger.apply([new], [])
                return
    raise ValueError(f"no storage node {node_id}")


def epoch_sync_done(chain: ChainState, node_id: str, epoch: int, signature: bytes) -> bool:
    """A node attests that it holds every shard the new committee gave it
    (`staking_inner::epoch_sync_done`, with the contract's checks: this epoch, a member,
    once). Authenticated by a BLS signature of `sync_done_message` with the node's key in
    place of the StorageNodeCap. Records a system transaction emitting `ShardsReceived`
    and, when the attested shards reach a quorum (3w >= 2n+1), `EpochChangeDone`. Returns
    whether the change is done.

    Raises:
        ValueError: `epoch` is not the current one, the node is not in its committee, the
            signature is not the node's, or the node has attested for `epoch` already.
    """
    node_id = "0x" + node_id.removeprefix("0x").rjust(64, "0").lower()
    with chain.ledger.lock:
        staking = chain.staking_state()
        if epoch != staking.epoch:
            raise ValueError(f"sync done for epoch {epoch}, the epoch is {staking.epoch}")
        members = {int(a.node_id, 16): a for a in staking.committee}
        if int(node_id, 16) not in members:
            raise ValueError(f"{node_id} is not in the committee of epoch {epoch}")
        pool = next(p for o, p in chain.pools() if int(o.id, 16) == int(node_id, 16))
        key = g1_compress(pool.node_info.public_key)
        if not aggregate_verify(signature, [key], sync_done_message(node_id, epoch)):
            raise ValueError("the sync-done attestation is not signed by the node's key")
        done_key = f"sync_done/{epoch}/{int(node_id, 16):064x}"
        if chain.ledger.meta(done_key) is not None:
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
            stk_stored = chain.ledger.get(chain.deployment.staking_inner_id())
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
        reply = system_transaction(chain.deployment, digest, epoch, events, int(time.time() * 1000))
        chain.ledger.apply(written, [], tx=(digest, bytes(reply)), meta={done_key: "1"})
        return state[0] != EPOCH_CHANGE_SYNC


def invalidate_blob(chain: ChainState, blob_id: int) -> str:
    """Admin: record that `blob_id` is invalid, emitting `InvalidBlobID` as
    `system::invalidate_blob_id` does once it has verified an invalidity certificate
    (storage nodes of more than f shards signing `InvalidBlobIdMsg` after an inconsistency
    proof). The devnet skips the certificate: it has no inconsistent blobs to prove.
    Returns the transaction digest.

    Raises:
        ValueError: `blob_id` is not a u256, or is invalid already.
    """
    if not 0 <= blob_id < 2**256:
        raise ValueError("blob ID out of range")
    with chain.ledger.lock:
        epoch = chain.walrus_epoch()
        key = f"invalid/{blob_id:064x}"
        if chain.ledger.meta(key) is not None:
            raise ValueError("the blob ID is already invalid")
        digest = _system_digest(b"InvalidBlobID::", f"0x{blob_id:064x}", epoch)
        event = InvalidBlobID(epoch, blob_id).to_bcs()
        reply = system_transaction(
            chain.deployment, digest, epoch, [("InvalidBlobID", event)], int(time.time() * 1000)
        )
        chain.ledger.apply([], [], tx=(digest, bytes(reply)), meta={key: "1"})
        return digest


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
