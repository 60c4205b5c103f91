"""Blob registrations paid for and not yet certified, so that a retry continues one instead of
registering (and paying) again.

A store that fails after registering keeps its Blob object here (`unfinished`); the next
store of the same blob ID and deletability continues it: the same object and Storage, re-read
from the chain, uploaded again and certified, or found certified by an attempt whose answer
was lost. Without it every retry during a node outage would register, and pay for, a new
Blob: a 10-minute outage would leave about as many uncertified Blobs as certified ones. What
is never retried is given back with `abandon` (deleted: its Storage returns to the wallet,
where the next registration reuses it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chain import errors as chain_errors
from chain import move_types as mt
from chain import pool_types as pt
from chain.client import WalrusChain

log = logging.getLogger(__name__)

#: what a registration is of: (blob ID as u256, deletable)
Key = tuple[int, bool]


@dataclass
class Registration:
    """A Blob object this store registered and has not certified yet."""

    #: the Blob, or the PooledBlob of a pool (whose pool keeps it: never in `Registrations`)
    blob: mt.Blob | pt.PooledBlob
    cost: int  # FROST its registration paid, reported by the store that certifies it
    reused_storage: bool
    #: an upload relay's tip paid in the registering transaction: (its digest, the nonce
    #: of its auth package), what the relay is told; None: no tip paid with it
    relay_tip: tuple[str, bytes] | None = None


class Registrations:
    """The unfinished registrations of one store (and ones an earlier process named)."""

    def __init__(self, chain: WalrusChain) -> None:
        self.chain = chain
        self._unfinished: dict[Key, Registration] = {}

    @property
    def unfinished(self) -> list[str]:
        """Object IDs of Blobs registered by this store and not certified (an upload failed
        after paying; the retry of the same bytes continues it)."""
        return [r.blob.id for r in self._unfinished.values()]

    def add(self, key: Key, reg: Registration) -> None:
        """A new registration (an upload of the same bytes running meanwhile keeps its own)."""
        self._unfinished.setdefault(key, reg)

    def finish(self, key: Key, reg: Registration) -> None:
        """`reg` is certified: no longer unfinished (unless another upload's replaced it)."""
        if self._unfinished.get(key) is reg:
            del self._unfinished[key]

    async def abandon(self, object_id: str) -> bool:
        """Delete a registration nobody will retry (its bytes changed or were removed; it may
        be one an earlier process made): its Storage returns to the wallet for the next
        registration. False if it was gone already.

        Raises:
            chain.errors.ChainError: the delete failed (not for want of the object); the
                registration is forgotten here all the same.
        """
        key = next((k for k, r in self._unfinished.items() if r.blob.id == object_id), None)
        if key is not None:
            del self._unfinished[key]
        try:
            await self.chain.delete_blob(object_id)
        except chain_errors.ObjectNotFound:
            log.info("unfinished blob %s is already gone", object_id)
            return False
        return True

    async def resumable(self, key: Key, epoch: int, resume: str | None) -> Registration | None:
        """The unfinished registration of this blob, as the chain has it now.

        Args:
            epoch: the current epoch: a registration ending by then is not continued.
            resume: the Blob object an earlier attempt (perhaps another process) registered,
                tried when this store has none of its own.

        Returns None when there is none, or it was deleted, expired or is another blob's
        (then a new one is made).
        """
        reg = self._unfinished.get(key)
        if reg is None and resume is None:
            return None
        object_id = reg.blob.id if reg is not None else resume
        assert object_id is not None
        try:
            blob: mt.Blob | None = await self.chain.blob(object_id)
        except chain_errors.ObjectNotFound:
            blob = None
        if blob is None or blob.storage.end_epoch <= epoch or (blob.blob_id, blob.deletable) != key:
            log.info("blob %s is gone, expired or another; registering anew", object_id)
            if reg is not None:
                del self._unfinished[key]
            return None
        if reg is None:  # registered by an earlier process, which paid for it
            reg = self._unfinished[key] = Registration(blob, 0, False)
        reg.blob = blob  # certified meanwhile, if an attempt's certify landed unanswered
        return reg
