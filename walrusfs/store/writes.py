"""Storing bytes (or a quilt) as a certified Walrus blob: what `walrus store` does.

Encode in a worker thread -> reuse an owned certified blob with the same ID (extend it if it
ends too early) or register (reusing or reserving Storage, attributes in the same transaction;
WAL and SUI are checked before anything is signed or uploaded), or continue an unfinished
registration (`walrusfs/store/registrations.py`) -> upload and collect a quorum of verified
confirmations (`walrusfs/store/upload.py`) and aggregate their signatures, or send the bytes
once to an upload relay and verify the certificate it answers (`walrusfs/store/relay.py`;
directly when the relay fails) -> certify.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import pysui_fastcrypto as fc
import trio

import codec
from chain import errors as chain_errors
from chain import move_types as mt
from chain.bls import aggregate
from chain.client import WalrusChain
from chain.transactions import RelayTip
from walrusfs.store.committee import Committees
from walrusfs.store.nodes import Committee
from walrusfs.store.pooled import store_pooled
from walrusfs.store.registrations import Registration, Registrations
from walrusfs.store.relay import (
    MAX_BODY,
    NONCE_LEN,
    Certificate,
    RelayClient,
    RelayError,
    auth_package,
)
from walrusfs.store.upload import Progress, Uploader

log = logging.getLogger(__name__)

Registered = Callable[[str], None]  # told the Blob object ID an upload writes to


@dataclass(frozen=True)
class StoreResult:
    blob_id: codec.BlobId
    object_id: str
    size: int
    encoded_size: int
    end_epoch: int
    deletable: bool
    cost: int  # FROST paid for storage + write (0 when an existing blob was reused)
    reused_storage: bool  # an owned Storage resource was used instead of reserve_space
    already_certified: bool  # an owned certified blob with this ID existed
    extended_by: int = 0  # epochs added to that existing blob
    signers: tuple[str, ...] = ()
    #: the storage pool holding the blob (None: an owned Blob); `object_id` is then the
    #: PooledBlob's, and `end_epoch` the pool's
    pool: str | None = None


@dataclass(frozen=True)
class QuiltResult:
    quilt: StoreResult
    patches: dict[str, codec.QuiltPatchId]


def confirmation_message(epoch: int, blob_id: codec.BlobId, object_id: str | None) -> bytes:
    """The `Confirmation` the nodes sign: of a permanent blob (`object_id` None) or of the
    deletable Blob object `object_id`."""
    if object_id is None:
        return bytes(fc.bls_confirmation_bytes(epoch, blob_id.raw))
    oid = bytes.fromhex(object_id.removeprefix("0x").rjust(64, "0"))
    return bytes(fc.bls_confirmation_bytes(epoch, blob_id.raw, oid))


def signers_bitmap(indices: Iterable[int], max_index: int) -> bytes:
    """The signers bitmap `certify_blob` takes: bit i (little-endian within each byte) for
    member index i, as long as the committee's highest index needs."""
    bitmap = bytearray((max_index + 8) // 8)
    for index in indices:
        bitmap[index // 8] |= 1 << (index % 8)
    return bytes(bitmap)


@dataclass(frozen=True)
class StoreOptions:
    """How one blob is stored: the keyword arguments of `WalrusStore.store`, which documents
    them, handed down as one value."""

    deletable: bool = True
    attributes: dict[str, str] | None = None
    progress: Progress | None = None
    reuse: bool = True
    registered: Registered | None = None
    resume: str | None = None
    #: the storage pool to register in (None: an owned Blob with Storage of its own)
    pool: str | None = None


#: certifies the registration with (signature, signers bitmap, message)
Certify = Callable[[bytes, bytes, bytes], Awaitable[object]]


class Writer:
    """Stores blobs. `encode_limit` bounds the encodes running at once (see `WalrusStore`)."""

    def __init__(
        self,
        chain: WalrusChain,
        committees: Committees,
        uploader: Uploader,
        registrations: Registrations,
        encode_limit: trio.CapacityLimiter,
        *,
        relay: RelayClient | None = None,
    ) -> None:
        self.chain = chain
        #: the upload relay blobs are sent through (None: straight to the nodes)
        self.relay = relay
        self.tips_paid = 0  # MIST paid to the relay
        self.relay_failures = 0  # uploads the relay failed, done directly instead
        self.committees = committees
        self.uploader = uploader
        self.registrations = registrations
        self.encode_limit = encode_limit

    async def store(
        self,
        data: bytes,
        epochs: int,
        opts: StoreOptions,
    ) -> StoreResult:
        """See `WalrusStore.store`."""
        committee = await self.committees.write(fresh=True)
        async with self.encode_limit:
            enc = await trio.to_thread.run_sync(codec.encode, data, committee.n_shards)
        return await self._store_encoded(
            enc,
            data,
            committee,
            epochs,
            opts,
        )

    async def store_quilt(
        self,
        items: Sequence[codec.QuiltItem],
        epochs: int,
        opts: StoreOptions,
    ) -> QuiltResult:
        """`items` as one QuiltV1 blob, stored as `store` does; with each item's patch ID."""
        committee = await self.committees.write(fresh=True)
        async with self.encode_limit:
            quilt = await trio.to_thread.run_sync(codec.build_quilt, items, committee.n_shards)
            enc = await trio.to_thread.run_sync(codec.encode, quilt.data, committee.n_shards)
        result = await self._store_encoded(
            enc,
            quilt.data,
            committee,
            epochs,
            opts,
        )
        patches = {p.identifier: p.patch_id(enc.blob_id) for p in quilt.patches}
        return QuiltResult(result, patches)

    async def _store_encoded(
        self,
        enc: codec.EncodedBlob,
        data: bytes,
        committee: Committee,
        epochs: int,
        opts: StoreOptions,
    ) -> StoreResult:
        if opts.pool is not None:
            return await store_pooled(self, enc, data, committee, opts)
        deletable = opts.deletable
        want_end = committee.epoch + epochs
        if opts.reuse and (result := await self._reused(enc, deletable, want_end)) is not None:
            return result
        key = (enc.blob_id.to_u256(), deletable)
        reg = await self.registrations.resumable(key, committee.epoch, opts.resume)
        relay_refused: RelayError | None = None
        if reg is None:
            tip: tuple[RelayTip, bytes] | None = None
            if self.relay is not None:
                try:
                    tip = await self.relay_tip(self.relay, data, committee)
                except RelayError as exc:
                    relay_refused = exc
            blob, estimate, registered = await self.chain.register_blob(
                enc.blob_id.to_u256(),
                int.from_bytes(enc.root_hash, "little"),
                enc.unencoded_length,
                epochs,
                deletable=deletable,
                attributes=opts.attributes,
                relay_tip=None if tip is None else tip[0],
            )
            reg = Registration(
                blob,
                estimate.total,
                estimate.reuse is not None,
                None if tip is None else (registered.digest, tip[1]),
            )
            if tip is not None:
                self.tips_paid += tip[0].amount
            self.registrations.add(key, reg)
        else:
            log.info("%s: continuing its registration %s", enc.blob_id, reg.blob.id)
        if opts.registered is not None:
            opts.registered(reg.blob.id)
        signers: list[str] = []
        owned = reg.blob
        assert isinstance(owned, mt.Blob)  # pooled blobs are `store_pooled`'s
        if owned.certified_epoch is None:
            signers = await self.upload_and_certify(
                enc,
                data,
                committee,
                reg,
                functools.partial(self.chain.certify_blob, owned.id),
                progress=opts.progress,
                relay_refused=relay_refused,
            )
        self.registrations.finish(key, reg)
        paid = reg.cost
        end = owned.storage.end_epoch
        extended = 0
        if end < want_end:  # continued after an epoch change: as long as asked
            extended = want_end - end
            paid += (await self.chain.extend_blob(reg.blob.id, extended))[0]
            end = want_end
        return StoreResult(
            enc.blob_id,
            reg.blob.id,
            enc.unencoded_length,
            enc.encoded_size,
            end,
            deletable,
            paid,
            reg.reused_storage,
            False,
            extended,
            tuple(signers),
        )

    async def _reused(
        self, enc: codec.EncodedBlob, deletable: bool, want_end: int
    ) -> StoreResult | None:
        """An owned certified blob of these bytes and deletability, extended to `want_end` if
        it ends before (a listing of all owned blobs); None if there is none."""
        for blob in await self.chain.blobs(pooled=False):
            if (
                blob.blob_id == enc.blob_id.to_u256()
                and blob.certified_epoch is not None
                and blob.deletable == deletable
            ):
                extended = 0
                paid = 0
                if blob.storage.end_epoch < want_end:
                    extended = want_end - blob.storage.end_epoch
                    paid, _ = await self.chain.extend_blob(blob.id, extended)
                log.info("%s is already certified as %s; reusing it", enc.blob_id, blob.id)
                return StoreResult(
                    enc.blob_id,
                    blob.id,
                    enc.unencoded_length,
                    enc.encoded_size,
                    max(blob.storage.end_epoch, want_end),
                    deletable,
                    paid,
                    False,
                    True,
                    extended,
                )
        return None

    async def fan_out(self, enc: codec.EncodedBlob, object_id: str | None) -> Certificate:
        """Send `enc` to the current committee and aggregate their confirmations: what an
        upload relay does for its clients (`walrusfs/devnet/relay.py`); nothing on chain.

        Raises:
            NotEnoughConfirmations: fewer than a quorum confirmed by the deadline.
        """
        committee = await self.committees.write(fresh=True)
        return await self._certificate(enc, committee, object_id, None)

    async def _certificate(
        self,
        enc: codec.EncodedBlob,
        committee: Committee,
        object_id: str | None,
        progress: Progress | None,
    ) -> Certificate:
        expected = confirmation_message(committee.epoch, enc.blob_id, object_id)
        confirmed = await self.uploader.confirmations(enc, committee, object_id, expected, progress)
        return Certificate(
            tuple(c.node.index for c in confirmed),
            expected,
            aggregate([c.signature for c in confirmed]),
        )

    async def upload_and_certify(
        self,
        enc: codec.EncodedBlob,
        data: bytes,
        committee: Committee,
        reg: Registration,
        certify: Certify,
        *,
        progress: Progress | None,
        relay_refused: RelayError | None,
    ) -> list[str]:
        """Upload (through the relay if there is one and it did not refuse already, else, or
        when it fails, to the nodes), then `certify` with the certificate; the signers' names.
        A blob an earlier attempt certified (its answer lost) counts as certified."""
        blob = reg.blob
        object_id = blob.id if blob.deletable else None
        cert = None
        if self.relay is not None and relay_refused is None:
            try:
                cert = await self._through_relay(
                    self.relay, enc, data, committee, object_id=object_id, reg=reg
                )
            except RelayError as exc:
                relay_refused = exc
        if relay_refused is not None:
            self.relay_failures += 1
            log.warning(
                "%s: upload relay not used (%s); uploading directly", enc.blob_id, relay_refused
            )
        if cert is None:
            cert = await self._certificate(enc, committee, object_id, progress)
        bitmap = signers_bitmap(cert.signers, max(n.index for n in committee.nodes))
        try:
            await certify(cert.signature, bitmap, cert.message)
        except chain_errors.AlreadyCertified:
            log.info("%s was certified by an earlier attempt", blob.id)
        names = {n.index: n.name for n in committee.nodes}
        return [names[i] for i in cert.signers]

    async def relay_tip(
        self, relay: RelayClient, data: bytes, committee: Committee
    ) -> tuple[RelayTip, bytes] | None:
        """The tip the relay asks for `data` and the nonce of its auth package, to be paid in
        the registering transaction; None when the relay asks none.

        Raises:
            RelayError: the relay cannot take the blob (too large, too dear, or its tip
                configuration could not be read).
        """
        if len(data) > MAX_BODY:
            raise RelayError(f"{len(data)} bytes is above the relay's limit of {MAX_BODY}")
        tips = await relay.tip_config()
        amount = tips.tip(committee.params, len(data))
        if amount > relay.max_tip:
            raise RelayError(f"the relay asks {amount} MIST, above the budget of {relay.max_tip}")
        if tips.address is None:
            return None
        nonce = os.urandom(NONCE_LEN)
        # a hash of the whole blob: seconds for a large one, in a worker thread
        package = await trio.to_thread.run_sync(auth_package, data, nonce)
        return RelayTip(package, amount, tips.address), nonce

    async def _through_relay(
        self,
        relay: RelayClient,
        enc: codec.EncodedBlob,
        data: bytes,
        committee: Committee,
        *,
        object_id: str | None,
        reg: Registration,
    ) -> Certificate:
        """The certificate of `data` from the upload relay, verified as `certify_blob` will
        verify it. The tip is the one paid when `reg` was registered; a registration made
        without one (continued from an earlier attempt, or the relay asked none then) pays
        the tip now, if one is asked, in a transaction of its own (as the Rust SDK does).

        Raises:
            RelayError: the relay is too dear, refused, failed or lied; or the tip could not
                be paid.
        """
        paid = reg.relay_tip
        if paid is None:
            tip = await self.relay_tip(relay, data, committee)
            if tip is not None:
                try:
                    result = await self.chain.execute_ptb(lambda ptb, info, wal: tip[0].add_to(ptb))
                except chain_errors.ChainError as exc:
                    raise RelayError(f"the tip could not be paid: {exc}") from exc
                paid = reg.relay_tip = (result.digest, tip[1])
                self.tips_paid += tip[0].amount
        cert = await relay.upload(data, enc.blob_id, object_id, paid)
        cert.verify(committee, confirmation_message(committee.epoch, enc.blob_id, object_id))
        return cert
