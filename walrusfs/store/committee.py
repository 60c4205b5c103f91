"""The committees a store talks to, re-read from the chain as they age, and which one a blob
is read from while an epoch change moves shards (walrus-sdk `active_committees.rs`).

Writes always go to the current committee. Reads do too, except during an epoch change
(`EpochChangeSync`): a blob certified before the current epoch is then read from the
previous committee, whose nodes still hold its slivers while the new holders fetch them; the
blob's certified epoch comes from its status (`walrusfs/store/status.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import codec
from chain.client import WalrusChain
from walrusfs.store.nodes import ActiveCommittees, BlobStatus, Committee

#: the committees are re-read after this long (and at once while an epoch change is running
#: every COMMITTEE_MEMORY_CHANGING seconds: it ends when nodes have fetched their shards)
COMMITTEE_MEMORY = 60.0
COMMITTEE_MEMORY_CHANGING = 2.0


class StatusLookup(Protocol):
    """What the read committee needs of blob statuses (`walrusfs.store.status.BlobStatuses`)."""

    async def get(
        self, blob_id: codec.BlobId, committees: ActiveCommittees | None = None
    ) -> BlobStatus | None: ...


def is_stale(known: ActiveCommittees | None, age: float, *, fresh: bool) -> bool:
    """Whether committees read `age` seconds ago must be read again: always when asked
    `fresh`, after COMMITTEE_MEMORY seconds, or COMMITTEE_MEMORY_CHANGING during an epoch
    change (it ends once the nodes have their shards, and reads then go to the new ones)."""
    if fresh or known is None:
        return True
    limit = COMMITTEE_MEMORY_CHANGING if known.is_change_in_progress() else COMMITTEE_MEMORY
    return age > limit


class Committees:
    """The current and previous committee as last read from the chain."""

    def __init__(self, chain: WalrusChain, clock: Callable[[], float] = time.monotonic) -> None:
        self.chain = chain
        self._clock = clock
        self._known: ActiveCommittees | None = None
        self._read_at = 0.0

    async def active(self, fresh: bool = False) -> ActiveCommittees:
        """Current and previous committee and whether shards are moving between them.

        Args:
            fresh: read them from the chain even if the last read is recent.

        Raises:
            chain.errors.ChainError, ChainUnavailable: as `ActiveCommittees.load`.
        """
        known = self._known
        if known is None or is_stale(known, self._clock() - self._read_at, fresh=fresh):
            known = self._known = await ActiveCommittees.load(self.chain)
            self._read_at = self._clock()
        return known

    async def write(self, fresh: bool = False) -> Committee:
        """The current committee: the one writes go to."""
        return (await self.active(fresh)).write_committee()

    async def for_read(self, blob_id: codec.BlobId, statuses: StatusLookup) -> Committee:
        """The committee to read `blob_id` from (walrus-sdk `read_committee`): while an epoch
        change moves shards, the previous one for a blob certified before this epoch. Only
        then is the blob's status asked (it may raise BlobInvalid / BlobNotFound)."""
        committees = await self.active()
        if not committees.is_change_in_progress():
            return committees.current
        status = await statuses.get(blob_id, committees)
        return committees.read_committee(status.initial_certified_epoch if status else None)
