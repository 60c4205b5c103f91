"""The chain's Walrus state as the rest of the stand-in reads it: the System's and Staking's
inner states (dynamic fields of the shared roots) and the storage nodes' pools."""

from __future__ import annotations

from dataclasses import dataclass

from chain import move_types as mt
from chain.localnet.ledger import Ledger, StoredObject
from chain.localnet.moves.deployment import Deployment

#: `EpochState::EpochChangeSync`'s tag: shards are moving, nodes have not all attested yet
EPOCH_CHANGE_SYNC = 0


@dataclass
class ChainState:
    """One ledger and the Walrus deployment in it."""

    ledger: Ledger
    deployment: Deployment

    def walrus_epoch(self) -> int:
        inner = self.system_state()
        return inner.committee.epoch

    def system_state(self) -> mt.SystemStateInnerV1:
        stored = self.ledger.get(self.deployment.system_inner_id())
        assert stored is not None
        value: mt.SystemStateInnerV1 = self.deployment.decode(stored)
        return value

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
