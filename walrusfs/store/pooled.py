"""Storing a blob in a storage pool (`chain.pools`): what `Writer` does when the store names a
pool.

A pool's blobs are keyed by blob ID (`storage_pool.move`: `blobs: ObjectTable<u256,
PooledBlob>`), so the pool itself says what became of earlier attempts at the same bytes: a
certified entry is reused as it is (nothing paid), an uncertified one (an attempt that failed,
or a process killed after paying) is continued (its slivers sent again where the nodes lack
them, then certified), and only when the pool has none is the blob registered, the pool grown
by what it lacks in the same transaction. The blob lives as long as the pool: its end epoch is
the pool's, and renewing the pool renews it.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

import codec
from chain import errors as chain_errors
from chain.bls import aggregate
from walrusfs.store.errors import StoreError
from walrusfs.store.nodes import Committee
from walrusfs.store.registrations import Registration
from walrusfs.store.relay import RelayError

if TYPE_CHECKING:
    from walrusfs.store.writes import StoreOptions, StoreResult, Writer

log = logging.getLogger(__name__)


class PoolEnded(StoreError):
    """The storage pool has ended: nothing is registered in it, nor reused from it (the
    mount makes a new pool for the next upload)."""


class PoolMismatch(StoreError):
    """The pool holds these bytes with the other persistence (deletable or permanent): its
    table has one entry per blob ID, so they cannot be registered again in it."""


async def store_pooled(
    writer: Writer,
    enc: codec.EncodedBlob,
    data: bytes,
    committee: Committee,
    opts: StoreOptions,
) -> StoreResult:
    """`enc` as a certified blob of the pool `opts.pool` (see the module docstring).

    Raises:
        PoolMismatch: the pool holds the blob with the other persistence.
        NotEnoughConfirmations: fewer than a quorum confirmed (the registration stays in the
            pool, where the next attempt continues it).
        chain.errors.InsufficientWal, InsufficientGas: before anything was signed.
    """
    from walrusfs.store.writes import StoreResult  # noqa: PLC0415 (writes imports this module)

    assert opts.pool is not None
    chain, pool_id, blob_u256 = writer.chain, opts.pool, enc.blob_id.to_u256()
    state = await chain.pools.get(pool_id)
    blob = await chain.pools.blob(state, blob_u256)
    if blob is not None and blob.deletable != opts.deletable:
        raise PoolMismatch(
            f"pool {pool_id} holds {enc.blob_id} as "
            f"{'deletable' if blob.deletable else 'permanent'}"
        )
    if state.end_epoch <= committee.epoch:
        raise PoolEnded(f"storage pool {pool_id} ended at epoch {state.end_epoch}")
    reused = blob is not None and blob.is_certified
    if reused:
        assert blob is not None
        log.info("%s is certified in pool %s already: reused", enc.blob_id, pool_id)
        await _add_attributes(writer, blob.id, opts.attributes or {})
    paid = 0
    relay_refused: RelayError | None = None
    relay_tip: tuple[str, bytes] | None = None
    if blob is None:
        tip = None
        if writer.relay is not None:
            try:
                tip = await writer.relay_tip(writer.relay, data, committee)
            except RelayError as exc:
                relay_refused = exc
        try:
            blob, paid, registered = await chain.pools.register(
                pool_id,
                blob_u256,
                int.from_bytes(enc.root_hash, "little"),
                enc.unencoded_length,
                deletable=opts.deletable,
                attributes=opts.attributes,
                relay_tip=None if tip is None else tip[0],
            )
            if tip is not None:
                writer.tips_paid += tip[0].amount
                relay_tip = (registered.digest, tip[1])
        except chain_errors.BlobInPoolAlready:
            # another upload of the same bytes (a sparse file's equal chunks, say) registered
            # them since the look above: continue its entry, as a retry would
            blob = await chain.pools.blob(await chain.pools.get(pool_id), blob_u256)
            if blob is None or blob.deletable != opts.deletable:
                raise
            log.info("%s: registered meanwhile as %s; continuing it", enc.blob_id, blob.id)
            reused = blob.is_certified
            if reused:
                await _add_attributes(writer, blob.id, opts.attributes or {})
    elif not blob.is_certified:
        log.info("%s: continuing its registration %s in pool %s", enc.blob_id, blob.id, pool_id)
    if opts.registered is not None and not reused:
        opts.registered(blob.id)  # a reused blob is not this upload's registration
    signers: list[str] = []
    if not blob.is_certified:
        reg = Registration(blob, paid, False, relay_tip)
        signers = await writer.upload_and_certify(
            enc,
            data,
            committee,
            reg,
            functools.partial(writer.chain.pools.certify, pool_id, blob_u256),
            progress=opts.progress,
            relay_refused=relay_refused,
        )
    end = (await chain.pools.get(pool_id)).end_epoch
    return StoreResult(
        enc.blob_id,
        blob.id,
        enc.unencoded_length,
        enc.encoded_size,
        end,
        opts.deletable,
        paid,
        False,
        reused,
        0,
        tuple(signers),
        pool=pool_id,
    )


async def move_into_pool(
    writer: Writer, meta: codec.VerifiedMetadata, pool_id: str, attributes: dict[str, str]
) -> StoreResult:
    """Register a blob the nodes already store in the pool, and certify it with the nodes'
    confirmations alone: nothing is uploaded (the nodes keep a blob ID's slivers while any
    registration of it is valid, and confirm a new registration of what they hold). The
    caller deletes the old registration once this returns.

    Raises:
        PoolMismatch: the pool holds the blob as permanent.
        NotEnoughConfirmations: nodes holding a quorum of shards did not confirm (the blob
            is not stored any more, say): the caller uploads the bytes instead.
    """
    from walrusfs.store.writes import (  # noqa: PLC0415 (writes imports this module)
        StoreResult,
        confirmation_message,
        signers_bitmap,
    )

    blob_id = meta.blob_id
    chain, blob_u256 = writer.chain, blob_id.to_u256()
    state = await chain.pools.get(pool_id)
    blob = await chain.pools.blob(state, blob_u256)
    if blob is not None and not blob.deletable:
        raise PoolMismatch(f"pool {pool_id} holds {blob_id} as permanent")
    paid = 0
    if blob is None:
        blob, paid, _ = await chain.pools.register(
            pool_id,
            blob_u256,
            int.from_bytes(meta.metadata.root_hash, "little"),
            meta.unencoded_length,
            deletable=True,
            attributes=attributes,
        )
    if not blob.is_certified:
        committee = await writer.committees.write(fresh=True)
        expected = confirmation_message(committee.epoch, blob_id, blob.id)
        confirmed = await writer.uploader.confirm_stored(blob_id, committee, blob.id, expected)
        bitmap = signers_bitmap(
            [c.node.index for c in confirmed], max(n.index for n in committee.nodes)
        )
        signature = aggregate([c.signature for c in confirmed])
        try:
            await chain.pools.certify(pool_id, blob_u256, signature, bitmap, expected)
        except chain_errors.AlreadyCertified:
            log.info("%s was certified in pool %s by an earlier attempt", blob_id, pool_id)
    state = await chain.pools.get(pool_id)
    return StoreResult(
        blob_id,
        blob.id,
        meta.unencoded_length,
        meta.params.encoded_size(meta.unencoded_length),
        state.end_epoch,
        True,
        paid,
        False,
        False,
        0,
        (),
        pool=pool_id,
    )


async def _add_attributes(writer: Writer, object_id: str, attributes: dict[str, str]) -> None:
    """Give a reused pooled blob what this upload's attributes add: a key it lacks as it
    is, a value it holds under another key as `<key>:<n>` (the next free n). Two files of
    equal bytes share the blob; each keeps its file record on chain for `fsck --rebuild`."""
    held = await writer.chain.attributes(object_id)
    extra: dict[str, str] = {}
    for key, value in attributes.items():
        if key not in held:
            extra[key] = value
        elif value not in held.values():
            n = 1
            while f"{key}:{n}" in held or f"{key}:{n}" in extra:
                n += 1
            extra[f"{key}:{n}"] = value
    if extra:
        await writer.chain.set_attributes(object_id, extra)
