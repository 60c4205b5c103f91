"""Walrus epochs on the stand-in: they advance with wall-clock time (`epoch_duration_ms`,
checked before every request) and by `advance_epoch()` for tests and the devnet's admin.

An epoch change does what `advance_epoch` in `system_state_inner.move` does for the
client-visible state: the committee's epoch moves on, the future-accounting ring buffer pops
the finished epoch and appends an empty one, and the used capacity becomes the new epoch's.
The next committee is apportioned from the pools' stake (`compute_next_committee`); shards
that move make the change a sync that the nodes end by attesting (`admin.epoch_sync_done`).

An epoch change is recorded as a system transaction of its own (one checkpoint, like Sui's
end-of-epoch transaction) that emits the Walrus package's `EpochChangeStart { epoch }`, so
storage nodes that follow the checkpoint stream learn of it as real nodes do, from an event.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

import base58

from chain import move_types as mt
from chain.bls import g1_sum
from chain.localnet.committee import apportionment, transition
from chain.localnet.digests import object_digest
from chain.localnet.replies import system_transaction
from chain.localnet.state import EPOCH_CHANGE_SYNC, ChainState


class EpochChangeInProgress(Exception):
    """The previous epoch change has not finished (nodes of 2f+1 shards have not attested
    that they hold their shards): the chain cannot start another one yet."""


def tick(chain: ChainState, now_ms: int | None = None) -> int:
    """Advance past every epoch whose time is up; returns the current epoch. An epoch change
    still in progress (a shard sync) holds the clock back, as on Walrus.

    Args:
        now_ms: the wall-clock time in ms since 1970 (None: now).

    Raises:
        ValueError: no pool has stake left, so the next committee would be empty.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    with chain.ledger.lock:
        duration = int(chain.ledger.meta("epoch_duration_ms") or "0")
        start = int(chain.ledger.meta("epoch_start_ms") or "0")
        while duration > 0 and now_ms >= start + duration:
            if chain.change_in_progress() is not None:
                break  # as on Walrus: the next epoch waits for the sync to finish
            start += duration
            advance_one(chain, start)
        return chain.walrus_epoch()


def next_epoch_ms(chain: ChainState) -> int | None:
    """When the next epoch starts by the clock (ms since 1970); None if never."""
    duration = int(chain.ledger.meta("epoch_duration_ms") or "0")
    start = int(chain.ledger.meta("epoch_start_ms") or "0")
    return start + duration if duration > 0 else None


def advance_epoch(chain: ChainState, count: int = 1) -> int:
    """Admin: start the next epoch now (`count` times). Returns the new epoch.

    Raises:
        EpochChangeInProgress: the previous change still waits for nodes to attest (epochs
            started before it was met stay started).
        ValueError: no pool has stake left, so the next committee would be empty.
    """
    with chain.ledger.lock:
        now_ms = int(time.time() * 1000)
        for _ in range(count):
            progress = chain.change_in_progress()
            if progress is not None:
                raise EpochChangeInProgress(
                    f"the change to epoch {chain.walrus_epoch()} is in progress: nodes of "
                    f"{progress[0]} of the {progress[1]} shards needed have attested that "
                    "they hold their shards"
                )
            advance_one(chain, now_ms)
        return chain.walrus_epoch()


def next_committee(
    chain: ChainState, staking: mt.StakingInnerV1
) -> tuple[list[mt.ShardAssignment], list[mt.BlsCommitteeMember]]:
    """The committee of the next epoch (`compute_next_committee`: apportionment of the
    pools' stake, then `transition` from the current assignment) and its BLS committee
    (members in node-ID order, weight = shards, the pools' keys)."""
    pools = chain.pools()
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


def advance_one(chain: ChainState, start_ms: int) -> None:
    """Start the next epoch at `start_ms` (ms since 1970), as one system transaction in its
    own checkpoint. The caller checks that no epoch change is in progress."""
    dep = chain.deployment
    sys_stored = chain.ledger.get(dep.system_inner_id())
    stk_stored = chain.ledger.get(dep.staking_inner_id())
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
    assignment, members = next_committee(chain, staking)
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
    digest = epoch_change_digest(dep.system_inner_id(), epoch, start_ms)
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
    event = ("EpochChangeStart", mt.EpochChangeStart(epoch).to_bcs())
    reply = system_transaction(dep, digest, epoch, [event], start_ms)
    chain.ledger.apply(
        written, [], tx=(digest, bytes(reply)), meta={"epoch_start_ms": str(start_ms)}
    )


def epoch_change_digest(system_inner: str, epoch: int, start_ms: int) -> str:
    """The synthetic digest of the system transaction that starts `epoch`."""
    h = hashlib.blake2b(b"EpochChange::", digest_size=32)
    h.update(bytes.fromhex(system_inner.removeprefix("0x")))
    h.update(epoch.to_bytes(8, "little") + start_ms.to_bytes(8, "little"))
    return str(base58.b58encode(h.digest()).decode())
