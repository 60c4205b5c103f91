"""Shard assignment as the Walrus staking contract computes it: stake -> shard counts (D'Hondt)
-> which shards (`committee::initialize` at genesis, `committee::transition` at an epoch
change, which keeps every shard it can where it is and moves only the surplus).

Transcribed from MystenLabs/walrus `mainnet-contracts/walrus/sources/staking/`:
`staking_inner.move` (`apportionment`, `dhondt`, `max_shards_per_node`,
`MIN_NODES_FOR_SHARDS_LIMIT = 20`, `SHARDS_LIMIT_DENOMINATOR = 10`), `apportionment_queue.move`
(highest quotient first, ties to the higher tie-breaker) and `committee.move` (`initialize`,
`transition`). Quotients are exact fractions (the contract's UQ64.64 rounds; with the stakes
the devnet uses the order is the same).
"""

from __future__ import annotations

from fractions import Fraction

MIN_NODES_FOR_SHARDS_LIMIT = 20
SHARDS_LIMIT_DENOMINATOR = 10


def max_shards_per_node(n_nodes: int, n_shards: int) -> int:
    if n_nodes >= MIN_NODES_FOR_SHARDS_LIMIT:
        return n_shards // SHARDS_LIMIT_DENOMINATOR
    return -(-(n_shards * MIN_NODES_FOR_SHARDS_LIMIT) // (n_nodes * SHARDS_LIMIT_DENOMINATOR))


def dhondt(priorities: list[int], n_shards: int, stake: list[int]) -> list[int]:
    """Shards per node (`staking_inner::dhondt`): the Hagenbach-Bischoff lower bound, then one
    shard at a time to the highest stake / (shards + 1), ties to the higher priority.

    Raises:
        ValueError: the total stake is 0 (the contract's `ENoStake`).
    """
    total = sum(stake)
    if total <= 0:
        raise ValueError("no stake: the committee would be empty (ENoStake)")
    cap = max_shards_per_node(len(stake), n_shards)
    shards = [min(s // (total // (n_shards + 1) + 1), cap) for s in stake]
    queue = [
        (Fraction(stake[i], shards[i] + 1), priorities[i], i)
        for i in range(len(stake))
        if shards[i] != cap
    ]
    distributed = sum(shards)
    while distributed != n_shards:
        best = max(queue)
        queue.remove(best)
        _, tie, index = best
        shards[index] += 1
        if shards[index] != cap:
            queue.append((Fraction(stake[index], shards[index] + 1), tie, index))
        distributed += 1
    return shards


def apportionment(n_shards: int, stakes: list[tuple[str, int]]) -> dict[str, int]:
    """`staking_inner::apportionment`: node ID -> shard count, nodes with none left out.
    `stakes` is in the active set's order (the first has the highest priority).

    Raises:
        ValueError: the total stake is 0.
    """
    n = len(stakes)
    counts = dhondt([n - i for i in range(n)], n_shards, [s for _, s in stakes])
    return {node: c for (node, _), c in zip(stakes, counts, strict=True) if c > 0}


def initialize(counts: dict[str, int]) -> list[tuple[str, list[int]]]:
    """`committee::initialize`: shards handed out in order, nodes sorted by ID."""
    out = []
    next_shard = 0
    for node in sorted(counts, key=_id_key):
        out.append((node, list(range(next_shard, next_shard + counts[node]))))
        next_shard += counts[node]
    return out


def transition(
    committee: list[tuple[str, list[int]]], counts: dict[str, int]
) -> list[tuple[str, list[int]]]:
    """`committee::transition`: nodes keep their shards up to their new count; the surplus
    (and every shard of a node that left) goes, last first, to the nodes that need more.

    Raises:
        ValueError: `counts` adds up to another number of shards than `committee` holds.
    """
    wanted = dict(counts)
    new: dict[str, list[int]] = {}
    to_move: list[int] = []
    for node, previous in committee:
        assigned = wanted.pop(node, None)
        if not assigned:
            to_move.extend(previous)
            continue
        if len(previous) == assigned:
            new[node] = list(previous)
        elif len(previous) > assigned:
            kept = list(previous)
            for _ in range(len(previous) - assigned):
                to_move.append(kept.pop())
            new[node] = kept
        else:
            wanted[node] = assigned
    if sum(counts.values()) != sum(len(s) for _, s in committee):
        raise ValueError(
            "the new assignment has another number of shards (EInvalidShardAssignment)"
        )
    current = dict(committee)
    for node, count in wanted.items():  # in insertion order, as the VecMap's keys
        if count == 0:
            continue
        shards = list(current.get(node, []))
        while len(shards) < count:
            shards.append(to_move.pop())
        new[node] = shards
    return sorted(new.items(), key=lambda item: _id_key(item[0]))


def _id_key(node_id: str) -> int:
    """Sui IDs sort as addresses (`sort_vec_map_by_node_id`: by their bytes)."""
    return int(node_id, 16)
