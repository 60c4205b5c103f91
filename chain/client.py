"""The Walrus chain client: pysui's gRPC client on its own asyncio thread, awaited from trio.

`WalrusChain` is what the rest of walrusfs uses. Every public method is a coroutine that trio
code awaits; the work (gRPC calls, BCS, signing) runs on the `AsyncioThread`, so the FUSE loop
is never blocked. The same code serves devnet (the stand-in), testnet and mainnet: only the
`NetworkProfile` differs.

Money is checked before it is spent: `register_blob` and `extend_blob` compute the exact WAL
price from the System object (Move formulas, `chain.pricing`) and refuse with
`InsufficientWal`/`InsufficientGas` before anything is signed. Storage is reused the way the
Walrus client does it: the smallest owned `Storage` that covers the size and the epochs,
ties broken by the earlier end.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpclib.client
import grpclib.exceptions
import pysui.sui.sui_grpc.pgrpc_requests as rq
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import trio
from grpclib.const import Status as GRPCStatus
from pysui import GrpcProtocolClient, PysuiConfiguration
from pysui.sui.sui_common.config import confgroup

from chain import aborts, errors
from chain import move_types as mt
from chain import read_masks as masks
from chain.aio_bridge import AsyncioThread
from chain.pricing import extend_cost, format_wal, store_cost
from chain.ptb import ObjectRef, Ptb
from chain.wallet import Keypair
from codec.bcs import Reader
from codec.params import ENCODING_TYPE_RS2, EncodingParams

log = logging.getLogger(__name__)

ATTRIBUTE_READS = 16  # concurrent attribute reads in attributes_of

SUI_COIN = "0x2::coin::Coin<0x2::sui::SUI>"
#: IDs per BatchGetObjects: pysui refuses more than 50 before sending
#: (`MAX_MULTI_OBJECT_FETCH`), and Sui's archive RPC refuses more than 50 unversioned reads
#: in one batch (`crates/sui-kv-rpc/src/v2/get_object.rs`). Committees have 100+ members.
OBJECT_BATCH = 50
#: ListOwnedObjects page size: the largest a full node serves (`list_owned_objects.rs`
#: MAX_PAGE_SIZE; larger values are coerced down, so asking for more is harmless anyway).
OWNED_PAGE_SIZE = 1000
#: Gas budget = the simulated cost plus this many computation units at the gas price, the
#: margin the Sui CLI, the TypeScript SDK and the Walrus client add (`GAS_SAFE_OVERHEAD` in
#: walrus `crates/walrus-sui/src/client/retry_client.rs`, sui `simulate/mod.rs`).
GAS_SAFE_OVERHEAD = 1000
#: The budget a transaction is simulated with: at most this (Sui's protocol maximum,
#: `MAX_GAS_BUDGET` in walrus `retriable_sui_client.rs`), at most the gas coin's balance.
MAX_GAS_BUDGET = 50_000_000_000


@dataclass(frozen=True)
class NetworkProfile:
    """Where a network's Walrus lives. Package IDs are read from the System object."""

    name: str
    grpc_url: str  # host:port (a hostname: pysui rejects bare IPs)
    tls: bool
    system_object: str
    staking_object: str
    wal_type: str
    exchange_objects: tuple[str, ...] = ()


MAINNET = NetworkProfile(
    "mainnet",
    "fullnode.mainnet.sui.io:443",
    True,
    "0x2134d52768ea07e8c43570ef975eb3e4c27a39fa6396bef985b5abc58d03ddd2",
    "0x10b9d30c28448939ce6c4d6c6e0ffce4a7f8a4ada8248bdad09ef8b70e4a3904",
    "0x356a26eb9e012a68958082340d4c4116e7f55615cf27affcff209cf0ae544f59::wal::WAL",
)
TESTNET = NetworkProfile(
    "testnet",
    "fullnode.testnet.sui.io:443",
    True,
    "0x6c2547cbbc38025cf3adac45f63cb0a8d12ecf777cdc75a4971612bf97fdf6af",
    "0xbe46180321c30aab2f8b3501e24048377287fa708018a5b7c2792b35fe339ee3",
    "0x8270feb7375eee355e64fdb69c50abb6b5f9393a722883c1cf45f8e26048810a::wal::WAL",
    (
        "0xf4d164ea2def5fe07dc573992a029e010dba09b1a8dcbc44c5c2e79567f39073",
        "0x19825121c52080bb1073662231cfea5c0e4d905fd13e95f21e9a018f2ef41862",
        "0x83b454e524c71f30803f4d6c302a86fb6a39e96cdfb873c2d1e93bc1c26a3bc5",
        "0x8d63209cf8589ce7aef8f262437163c67577ed09f3e636a9d8e0813843fb8bf1",
    ),
)
PROFILES = {"mainnet": MAINNET, "testnet": TESTNET}


def devnet_profile(
    port: int, system_object: str, staking_object: str, wal_type: str, exchange: str
) -> NetworkProfile:
    """The stand-in on this machine (plaintext gRPC on localhost)."""
    return NetworkProfile(
        "devnet", f"localhost:{port}", False, system_object, staking_object, wal_type, (exchange,)
    )


# Aborts with an error class of their own; every other abort is a plain MoveAbortError.
_ABORT_CLASSES: dict[aborts.Abort, type[errors.MoveAbortError]] = {
    aborts.E_NOT_CERTIFIED: errors.NotCertified,
    aborts.E_RESOURCE_BOUNDS: errors.Expired,
    aborts.E_ALREADY_CERTIFIED: errors.AlreadyCertified,
    aborts.E_NOT_ENOUGH_STAKE: errors.QuorumNotReached,
}


@dataclass(frozen=True)
class CommitteeMember:
    """A storage node as the chain describes it this epoch.

    Members are matched across the Staking committee, the System's BLS committee and the
    staking pools by `node_id` (the pool's object ID), as the Walrus client does
    (`shard_assignment_to_committee` in walrus `crates/walrus-sui/src/client/read_client.rs`),
    never by key: a pool's key changes when a pending rotation (`next_epoch_public_key`) is
    applied, while the epoch's BLS committee keeps the key it was built with
    (`staking_inner.move` `next_bls_committee`).
    """

    node_id: str
    name: str
    network_address: str
    #: 96-byte uncompressed G1: the key this epoch's certificates are checked against
    #: (`system::certify_blob` verifies with the System's BLS committee)
    public_key: bytes
    network_public_key: bytes
    shards: tuple[int, ...]
    #: position in the System's BLS committee: the signer's bit in a certificate's bitmap
    index: int = -1
    #: the staking pool's current key (`node_info.public_key`); differs from `public_key`
    #: after a rotation took effect in the pool but not yet in a BLS committee
    pool_public_key: bytes = b""
    #: the key announced for the next epoch, if any (`node_info.next_epoch_public_key`)
    next_epoch_public_key: bytes | None = None

    @property
    def weight(self) -> int:
        return len(self.shards)


@dataclass(frozen=True)
class SystemInfo:
    epoch: int
    n_shards: int
    storage_price: int  # FROST per MiB unit per epoch
    write_price: int  # FROST per MiB unit
    total_capacity: int
    used_capacity: int
    max_epochs_ahead: int
    package_id: str  # the package to call
    type_package: str  # the package that defines Blob and Storage
    system_initial_version: int
    committee_keys: tuple[mt.BlsCommitteeMember, ...]


@dataclass(frozen=True)
class CostEstimate:
    """The WAL a blob of `size` for `epochs` costs, and the Storage it would reuse."""

    size: int
    encoded_size: int
    epochs: int
    storage: int  # 0 when `reuse` is set
    write: int
    reuse: mt.Storage | None
    #: more owned Storage of the same period fused into `reuse` (fuse_amount) when no single
    #: resource is large enough; what exceeds the blob is split off and kept (split_by_size)
    fuse: tuple[mt.Storage, ...] = ()

    @property
    def total(self) -> int:
        return self.storage + self.write


def _storage_for(
    covering: list[mt.Storage], encoded: int
) -> tuple[mt.Storage | None, tuple[mt.Storage, ...]]:
    """Owned Storage to pay a blob of `encoded` bytes with (all covering its period): the
    smallest resource large enough; else the fewest resources of one period that together are
    (fused). The excess size and the epochs past the blob's end are split off and kept, so
    nothing freed by a delete is wasted."""
    single = [s for s in covering if s.storage_size >= encoded]
    if single:
        return min(single, key=lambda s: (s.storage_size, s.end_epoch)), ()
    periods: dict[tuple[int, int], list[mt.Storage]] = {}
    for s in covering:
        periods.setdefault((s.start_epoch, s.end_epoch), []).append(s)
    best: list[mt.Storage] | None = None
    for group in periods.values():
        group.sort(key=lambda s: s.storage_size, reverse=True)
        total, take = 0, []
        for s in group:
            take.append(s)
            total += s.storage_size
            if total >= encoded:
                break
        if total >= encoded and (best is None or len(take) < len(best)):
            best = take
    if best is None:
        return None, ()
    return best[0], tuple(best[1:])


@dataclass(frozen=True)
class Balances:
    sui: int  # MIST
    wal: int  # FROST


@dataclass(frozen=True)
class ChainEvent:
    """One Move event, located as Sui's EventID does (transaction digest, index)."""

    checkpoint: int
    tx_digest: str
    index: int
    type: str  # full type: `0xpkg::module::Struct`
    bcs: bytes

    @property
    def name(self) -> str:
        return self.type.rsplit("::", 1)[-1]


@dataclass(frozen=True)
class TxResult:
    digest: str
    gas_used: int
    created: dict[str, list[Any]]  # `module::Struct` -> new objects (Blob/Storage decoded)
    events: list[tuple[str, bytes]]  # (event type, BCS)


class WalrusChain:
    """Walrus on Sui, for one wallet key. Create with `await WalrusChain.connect(...)`."""

    def __init__(
        self,
        profile: NetworkProfile,
        key: Keypair | None,
        bridge: AsyncioThread | None = None,
        gas_budget: int | None = None,
    ) -> None:
        self.profile = profile
        self.key = key  # None: read-only (a storage node following the chain)
        self.address = key.address if key is not None else ""
        #: None: each transaction's budget is its simulated cost plus a margin (`_budget`)
        self.gas_budget = gas_budget
        self._own_bridge = bridge is None
        self.bridge = bridge or AsyncioThread()
        self._client: GrpcProtocolClient | None = None
        self._tx_lock: asyncio.Lock | None = None
        #: Storage objects chosen by registrations under way: concurrent uploads must not
        #: pick the same one (the second transaction would name a consumed object)
        self._claimed: set[str] = set()

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await self.bridge.run(client.close())
        if self._own_bridge:
            # Joining the thread blocks: do it off the trio loop.
            await trio.to_thread.run_sync(self.bridge.close)

    # -- plumbing (runs on the asyncio thread) ----------------------------------------------

    async def _grpc(self) -> GrpcProtocolClient:
        if self._client is None:
            self._client = _make_client(self.profile)
        return self._client

    async def _call(self, request: Any) -> Any:
        client = await self._grpc()
        try:
            result = await client.execute_grpc_request(request=request, timeout=30)
        except (OSError, TimeoutError, grpclib.exceptions.StreamTerminatedError) as exc:
            raise errors.ChainUnavailable(
                f"cannot reach the Sui endpoint {self.profile.grpc_url}: {exc}"
            ) from exc
        if result.is_ok():
            return result.result_data
        return _raise_rpc_error(
            self.profile,
            result.result_string,
            isinstance(request, rq.ExecuteTransaction | rq.SimulateTransaction),
        )

    async def _object(self, object_id: str) -> pb.Object:
        reply = await self._call(rq.GetObject(object_id=object_id, field_mask=list(masks.OBJECT)))
        obj: pb.Object | None = reply.object
        if obj is None or obj.contents is None:
            raise errors.ObjectNotFound(f"object {object_id} not found")
        return obj

    def _run(self, coro: Any) -> Any:
        return self.bridge.run(coro)

    # -- reads ------------------------------------------------------------------------------

    async def system_info(self) -> SystemInfo:
        """Epoch, shards, prices, capacity and the committee's keys, from the System object."""
        return await self._run(self._system_info())  # type: ignore[no-any-return]

    async def _versioned_inner(self, root_id: str) -> tuple[pb.Object, mt.VersionedRoot, Reader]:
        """A System/Staking root and a reader over its inner state (the field `version`)."""
        root_obj = await self._object(root_id)
        root = mt.VersionedRoot.from_bcs(_bcs(root_obj))
        try:
            field = await self._object(mt.versioned_inner_id(root_id, root.version))
        except errors.ObjectNotFound:
            raise errors.ChainError(
                f"{root_id} has no inner state for version {root.version}: "
                "is this the right network profile?"
            ) from None
        key = root.version.to_bytes(8, "little")
        # `read`, not `from_bcs`: later contract versions may append fields.
        return root_obj, root, Reader(mt.field_value(_bcs(field), key))

    async def _system_info(self) -> SystemInfo:
        system, root, reader = await self._versioned_inner(self.profile.system_object)
        inner = mt.SystemStateInnerV1.read(reader)
        return SystemInfo(
            epoch=inner.epoch,
            n_shards=inner.n_shards,
            storage_price=inner.storage_price_per_unit_size,
            write_price=inner.write_price_per_unit_size,
            total_capacity=inner.total_capacity_size,
            used_capacity=inner.used_capacity_size,
            max_epochs_ahead=inner.max_epochs_ahead,
            package_id=root.package_id,
            type_package=_norm((system.object_type or "").split("::", 1)[0]),
            system_initial_version=_shared_version(system),
            committee_keys=tuple(inner.committee.members),
        )

    async def committee(self) -> list[CommitteeMember]:
        """The storage nodes, their shards and network addresses (Staking + StakingPools)."""
        return await self._run(self._committee())  # type: ignore[no-any-return]

    async def _committee(self) -> list[CommitteeMember]:
        _, _, reader = await self._versioned_inner(self.profile.staking_object)
        inner = mt.StakingInnerV1.read(reader)
        bls = {
            _norm(m.node_id): (i, m)
            for i, m in enumerate((await self._system_info()).committee_keys)
        }
        ids = [a.node_id for a in inner.committee]
        pools: dict[str, mt.StakingPool] = {}
        for start in range(0, len(ids), OBJECT_BATCH):
            batch = ids[start : start + OBJECT_BATCH]
            reply = await self._call(
                rq.GetMultipleObjects(object_ids=batch, field_mask=list(masks.STAKING_POOL))
            )
            for node_id, result in zip(batch, reply.objects, strict=True):
                if result.object is None:
                    raise errors.ObjectNotFound(f"staking pool {node_id} not found")
                pools[_norm(node_id)] = mt.StakingPool.read(Reader(_bcs(result.object)))
        members = []
        for assignment in inner.committee:
            node_id = _norm(assignment.node_id)
            info = pools[node_id].node_info
            if _norm(info.node_id) != node_id:
                raise errors.ChainError(
                    f"staking pool {node_id} describes node {info.node_id}: not a Walrus pool"
                )
            if node_id not in bls:
                raise errors.ChainError(
                    f"node {node_id} holds shards but is not in the System's BLS committee: "
                    "the System and Staking objects disagree (read during an epoch change?)"
                )
            index, key = bls[node_id]
            members.append(
                CommitteeMember(
                    assignment.node_id,
                    info.name,
                    info.network_address,
                    key.public_key,
                    info.network_public_key,
                    tuple(assignment.shards),
                    index=index,
                    pool_public_key=info.public_key,
                    next_epoch_public_key=info.next_epoch_public_key,
                )
            )
        return members

    async def latest_checkpoint(self) -> int:
        """The sequence number of the newest checkpoint."""

        async def go() -> int:
            reply = await self._call(
                rq.GetLatestCheckpoint(field_mask=list(masks.CHECKPOINT_NUMBER))
            )
            return int(reply.checkpoint.sequence_number or 0)

        return await self._run(go())  # type: ignore[no-any-return]

    async def checkpoint_stream(self) -> AsyncGenerator[int]:
        """The sequence number of every checkpoint from the chain's tip on, as it is executed
        (`SubscriptionService.SubscribeCheckpoints`): what a follower waits on instead of
        polling. Never ends by itself; a broken stream raises `ChainUnavailable`, after which
        the follower catches up with `checkpoint_events` and subscribes again."""
        token = trio.lowlevel.current_trio_token()
        frames, inbox = trio.open_memory_channel[tuple[int, BaseException | None]](math.inf)

        def deliver(item: tuple[int, BaseException | None]) -> None:
            try:
                token.run_sync_soon(frames.send_nowait, item)
            except trio.RunFinishedError:
                log.debug("a checkpoint frame arrived after its trio run ended")

        async def pump() -> None:
            failure: BaseException
            try:
                client = await self._grpc()
                result = await client.execute_grpc_request(
                    request=rq.SubscribeCheckpoints(field_mask=list(masks.CHECKPOINT_NUMBER))
                )
                if not result.is_ok():
                    raise errors.ChainError(f"cannot subscribe: {result.result_string}")
                async for frame in result.result_data:
                    deliver((int(frame.cursor or 0), None))
                failure = errors.ChainUnavailable("the checkpoint stream ended")
            except asyncio.CancelledError:
                raise
            except (OSError, grpclib.exceptions.GRPCError,
                    grpclib.exceptions.StreamTerminatedError) as exc:  # fmt: skip
                failure = errors.ChainUnavailable(
                    f"checkpoint stream from {self.profile.grpc_url}: {exc}"
                )
            except errors.ChainError as exc:
                failure = exc
            deliver((-1, failure))

        future = self.bridge.submit(pump())
        try:
            async with inbox:
                async for seq, failure in inbox:
                    if failure is not None:
                        raise failure
                    yield seq
        finally:
            future.cancel()

    async def checkpoint_events(self, seq: int, package: str) -> list[ChainEvent] | None:
        """The events that `package`'s modules emitted in checkpoint `seq` (None: not yet).

        Only events of the given package count: anyone can publish a module with a struct
        named `BlobRegistered`, so a follower must filter by the Walrus type package."""

        async def go() -> list[ChainEvent] | None:
            try:
                reply = await self._call(
                    rq.GetCheckpointBySequence(
                        sequence_number=seq, field_mask=list(masks.CHECKPOINT_EVENTS)
                    )
                )
            except errors.ObjectNotFound:
                return None
            out: list[ChainEvent] = []
            for tx in reply.checkpoint.transactions:
                for index, event in enumerate(tx.events.events if tx.events else []):
                    type_ = event.event_type or ""
                    if _norm(type_.split("::", 1)[0]) != _norm(package):
                        continue
                    bcs = bytes(event.contents.value or b"") if event.contents else b""
                    out.append(ChainEvent(seq, tx.digest or "", index, type_, bcs))
            return out

        return await self._run(go())  # type: ignore[no-any-return]

    async def balances(self) -> Balances:
        return await self._run(self._balances())  # type: ignore[no-any-return]

    async def _balances(self) -> Balances:
        sui = await self._call(rq.GetAddressCoinBalance(owner=self._owner()))
        wal = await self._call(
            rq.GetAddressCoinBalance(owner=self.address, coin_type=self.profile.wal_type)
        )
        return Balances(int(sui.balance.balance or 0), int(wal.balance.balance or 0))

    def _owner(self) -> str:
        if self.key is None:
            raise errors.WalletError(
                "this chain client is read-only: it has no wallet key, so it owns nothing"
            )
        return self.address

    async def _owned(self, type_: str) -> list[pb.Object]:
        owner = self._owner()
        out: list[pb.Object] = []
        token: bytes | None = None
        while True:
            page = await self._call(
                rq.GetObjectsOwnedByAddress(
                    owner=owner,
                    object_type=type_,
                    page_token=token,
                    page_size=OWNED_PAGE_SIZE,
                    field_mask=list(masks.OWNED),
                )
            )
            out.extend(page.objects)
            token = page.next_page_token
            if not token:
                return out

    async def blobs(self, valid_only: bool = True) -> list[mt.Blob]:
        """Owned Blob objects; `valid_only` drops those whose end epoch has passed."""
        return await self._run(self._blobs(valid_only))  # type: ignore[no-any-return]

    async def _blobs(self, valid_only: bool) -> list[mt.Blob]:
        info = await self._system_info()
        objs = await self._owned(f"{info.type_package}::blob::Blob")
        blobs = [mt.Blob.from_bcs(_bcs(o)) for o in objs]
        return [b for b in blobs if not valid_only or b.end_epoch > info.epoch]

    async def storage_resources(self, valid_only: bool = True) -> list[mt.Storage]:
        async def go() -> list[mt.Storage]:
            return await self._storages(await self._system_info(), valid_only)

        return await self._run(go())  # type: ignore[no-any-return]

    async def _storages(self, info: SystemInfo, valid_only: bool) -> list[mt.Storage]:
        objs = await self._owned(f"{info.type_package}::storage_resource::Storage")
        res = [mt.Storage.from_bcs(_bcs(o)) for o in objs]
        return [s for s in res if not valid_only or s.end_epoch > info.epoch]

    async def blob(self, object_id: str) -> mt.Blob:
        return await self._run(self._blob(object_id))  # type: ignore[no-any-return]

    async def _blob(self, object_id: str) -> mt.Blob:
        obj = await self._object(object_id)
        return mt.Blob.from_bcs(_bcs(obj))

    async def attributes(self, blob_object_id: str) -> dict[str, str]:
        """The blob's attributes (its `metadata` dynamic field); {} when it has none."""
        return await self._run(self._attributes(blob_object_id))  # type: ignore[no-any-return]

    async def attributes_of(self, blob_object_ids: list[str]) -> dict[str, dict[str, str]]:
        """The attributes of many blobs, fetched concurrently (one request each; listing a
        wallet's volumes reads them all)."""

        async def go() -> dict[str, dict[str, str]]:
            limit = asyncio.Semaphore(ATTRIBUTE_READS)

            async def one(object_id: str) -> dict[str, str]:
                async with limit:
                    return await self._attributes(object_id)

            found = await asyncio.gather(*(one(i) for i in blob_object_ids))
            return dict(zip(blob_object_ids, found, strict=True))

        return await self._run(go())  # type: ignore[no-any-return]

    async def _attributes(self, blob_object_id: str) -> dict[str, str]:
        try:
            field = await self._object(mt.metadata_field_id(blob_object_id))
        except errors.ObjectNotFound:
            return {}  # a blob without attributes has no field
        value = mt.field_value(_bcs(field), mt.METADATA_FIELD_NAME)
        return mt.BlobAttributes.from_bcs(value).as_dict()

    # -- costs --------------------------------------------------------------------------------

    async def estimate(self, size: int, epochs: int) -> CostEstimate:
        """What storing `size` bytes for `epochs` epochs costs now, reusing owned Storage."""

        async def go() -> CostEstimate:
            return await self._estimate(await self._system_info(), size, epochs)

        return await self._run(go())  # type: ignore[no-any-return]

    async def _estimate(self, info: SystemInfo, size: int, epochs: int) -> CostEstimate:
        if not 0 < epochs <= info.max_epochs_ahead:
            raise ValueError(f"epochs must be 1..{info.max_epochs_ahead}, got {epochs}")
        encoded = EncodingParams(info.n_shards).encoded_size(size)
        end = info.epoch + epochs
        covering = [
            s
            for s in await self._storages(info, True)
            if s.start_epoch <= info.epoch and s.end_epoch >= end and s.id not in self._claimed
        ]
        reuse, fuse = _storage_for(covering, encoded)
        cost = store_cost(encoded, epochs, info.storage_price, info.write_price)
        return CostEstimate(
            size, encoded, epochs, 0 if reuse else cost.storage, cost.write, reuse, fuse
        )

    # -- transactions -------------------------------------------------------------------------

    async def _coins(self, type_: str) -> list[pb.Object]:
        return sorted(
            await self._owned(f"0x2::coin::Coin<{type_}>"),
            key=lambda o: int(o.balance or 0),
            reverse=True,
        )

    async def _execute(
        self,
        build: Callable[[Ptb, SystemInfo, Any], None],
        wal_needed: int | None = None,
        info: SystemInfo | None = None,
    ) -> TxResult:
        """Build with `build(ptb, info, wal coin)`, check the money, sign, execute, raise.

        `wal_needed` None: the transaction takes no WAL coin; otherwise the wallet's WAL coins
        are merged into one argument that must hold `wal_needed` FROST. `info` saves a re-read
        of the System when the caller has it. Transactions of one client run one at a time:
        they spend the same gas and WAL coins, and a second one built from the same coin
        versions would be rejected as stale.
        """
        if self._tx_lock is None:
            self._tx_lock = asyncio.Lock()
        async with self._tx_lock:
            return await self._execute_locked(build, wal_needed, info or await self._system_info())

    async def _execute_locked(
        self,
        build: Callable[[Ptb, SystemInfo, Any], None],
        wal_needed: int | None,
        info: SystemInfo,
    ) -> TxResult:
        if self.key is None:
            raise errors.WalletError("this chain client is read-only: it has no wallet key")
        gas_coins = await self._coins("0x2::sui::SUI")
        if not gas_coins:
            raise errors.InsufficientGas(
                f"the wallet {self.address} holds no SUI to pay for gas: send SUI to it",
                self.gas_budget or 1,
                0,
            )
        gas = gas_coins[0]  # the largest
        ptb = Ptb()
        wal = None
        if wal_needed is not None:
            wal_coins = await self._coins(self.profile.wal_type)
            have = sum(int(c.balance or 0) for c in wal_coins)
            refs = [_ref(c) for c in wal_coins if int(c.balance or 0) > 0]
            if have < wal_needed or not refs:
                raise errors.InsufficientWal(
                    f"this needs {format_wal(wal_needed)}, the wallet {self.address} holds "
                    f"{format_wal(have)}: send WAL to it (on devnet and testnet, swap SUI for "
                    "WAL at the exchange: `walrusfs wallet get-wal SUI`)",
                    wal_needed,
                    have,
                )
            wal = ptb.owned(refs[0])
            if len(refs) > 1:
                ptb.merge_coins(wal, [ptb.owned(r) for r in refs[1:]])
        build(ptb, info, wal)
        gas_price = await self._gas_price()
        balance = int(gas.balance or 0)
        budget = self.gas_budget
        if budget is None and balance < GAS_SAFE_OVERHEAD * gas_price:
            # below Sui's least budget (`base_tx_cost_fixed` units): not even a dry run runs
            raise errors.InsufficientGas(
                f"no SUI coin of {self.address} holds the least gas budget of "
                f"{GAS_SAFE_OVERHEAD * gas_price} MIST (largest holds {balance}): send SUI to it",
                GAS_SAFE_OVERHEAD * gas_price,
                balance,
            )
        if budget is None:
            budget = await self._budget(ptb, _ref(gas), gas_price, min(balance, MAX_GAS_BUDGET))
        if balance < budget:
            raise errors.InsufficientGas(
                f"this transaction needs a gas budget of {budget} MIST; the largest SUI coin of "
                f"{self.address} holds {balance}: send SUI to it",
                budget,
                balance,
            )
        tx_bytes = ptb.build(self.address, _ref(gas), gas_price, budget)
        signature = self.key.sign_transaction(tx_bytes)
        executed = await self._call(
            rq.ExecuteTransaction(
                tx_bytestr=tx_bytes, sig_array=[signature], field_mask=list(masks.EXECUTED)
            )
        )
        return self._result(executed)

    async def _budget(self, ptb: Ptb, gas: ObjectRef, gas_price: int, ceiling: int) -> int:
        """The gas budget: the cost of a dry run (`SimulateTransaction`, nothing signed or
        spent) plus `GAS_SAFE_OVERHEAD` units, the formula of the Sui CLI, TypeScript SDK and
        Walrus client (`compute_gas_budget` in walrus `retriable_sui_client.rs`): the larger
        of computation and computation + storage - rebate, plus the margin. A dry run that
        fails still prices the attempt: the transaction is then executed with that budget, so
        its failure is reported from the chain as before (and charged, as Sui charges it)."""
        tx_bytes = ptb.build(self.address, gas, gas_price, ceiling)
        reply = await self._call(
            rq.SimulateTransaction(
                transaction=tx_bytes,
                checks_enabled=True,
                gas_selection=False,
                field_mask=list(masks.SIMULATED),
            )
        )
        effects = reply.transaction.effects if reply.transaction is not None else None
        if effects is None or effects.gas_used is None:
            raise errors.ChainError("the dry run of the transaction came back without its cost")
        used = effects.gas_used
        computation = int(used.computation_cost or 0)
        net = computation + int(used.storage_cost or 0) - int(used.storage_rebate or 0)
        return max(computation, net) + GAS_SAFE_OVERHEAD * gas_price

    async def execute_ptb(
        self, build: Callable[[Ptb, SystemInfo, Any], None], wal_needed: int | None = None
    ) -> TxResult:
        """Run a caller-built PTB with the same coin selection, money checks and errors.

        `build(ptb, info, wal)` gets the merged WAL coin argument unless `wal_needed` is None.
        """
        return await self._run(self._execute(build, wal_needed))  # type: ignore[no-any-return]

    async def execute_signed(self, tx_bytes: bytes, signatures: list[bytes]) -> TxResult:
        """Submit a transaction signed elsewhere (offline signing, multi-party flows)."""

        async def go() -> TxResult:
            executed = await self._call(
                rq.ExecuteTransaction(
                    tx_bytestr=tx_bytes, sig_array=signatures, field_mask=list(masks.EXECUTED)
                )
            )
            return self._result(executed)

        return await self._run(go())  # type: ignore[no-any-return]

    async def object_ref(self, object_id: str) -> ObjectRef:
        """The current reference (ID, version, digest) of an object."""
        return _ref(await self._run(self._object(object_id)))

    async def gas_price(self) -> int:
        return await self._run(self._gas_price())  # type: ignore[no-any-return]

    async def _gas_price(self) -> int:
        reply = await self._call(rq.GetEpoch(field_mask=list(masks.GAS_PRICE)))
        return int(reply.epoch.reference_gas_price or 1000)

    def _result(self, executed: pb.ExecutedTransaction) -> TxResult:
        effects = executed.effects
        digest = executed.digest or ""
        if effects is None or effects.status is None or effects.gas_used is None:
            raise errors.ChainError(f"transaction {digest}: the reply carries no effects")
        gas = effects.gas_used
        gas_used = (
            int(gas.computation_cost or 0)
            + int(gas.storage_cost or 0)
            - int(gas.storage_rebate or 0)
        )
        if not effects.status.success:
            _raise_execution_error(digest, effects.status.error)
        # New to the ledger: created, or unwrapped (a Storage coming back out of a Blob).
        new_ids = {
            c.object_id
            for c in effects.changed_objects
            if c.input_state == pb.ChangedObjectInputObjectState.DOES_NOT_EXIST
            and c.output_state == pb.ChangedObjectOutputObjectState.OBJECT_WRITE
        }
        created: dict[str, list[Any]] = {}
        for obj in executed.objects.objects if executed.objects else []:
            if obj.object_id not in new_ids:
                continue
            short = _short_type(obj.object_type or "")
            decoder = _DECODERS.get(short)
            created.setdefault(short, []).append(decoder(_bcs(obj)) if decoder else obj)
        events = [
            (e.event_type or "", bytes(e.contents.value or b"") if e.contents else b"")
            for e in (executed.events.events if executed.events else [])
        ]
        return TxResult(digest, gas_used, created, events)

    def _system_arg(self, ptb: Ptb, info: SystemInfo, mutable: bool) -> Any:
        return ptb.shared(self.profile.system_object, info.system_initial_version, mutable)

    async def _owned_object(self, object_id: str) -> pb.Object:
        obj = await self._object(object_id)
        if obj.owner is None or obj.owner.address != self.address:
            raise errors.ObjectNotFound(f"{object_id} is not owned by {self.address}")
        return obj

    async def _owned_ref(self, object_id: str) -> ObjectRef:
        return _ref(await self._owned_object(object_id))

    async def register_blob(
        self,
        blob_id: int,
        root_hash: int,
        size: int,
        epochs: int,
        *,
        deletable: bool = True,
        attributes: dict[str, str] | None = None,
    ) -> tuple[mt.Blob, CostEstimate, TxResult]:
        """One transaction: reuse (or reserve) Storage, register the blob, set attributes."""
        return await self._run(  # type: ignore[no-any-return]
            self._register(
                blob_id, root_hash, size, epochs, deletable=deletable, attributes=attributes or {}
            )
        )

    async def _register(
        self,
        blob_id: int,
        root_hash: int,
        size: int,
        epochs: int,
        *,
        deletable: bool,
        attributes: dict[str, str],
    ) -> tuple[mt.Blob, CostEstimate, TxResult]:
        info = await self._system_info()
        cost = await self._estimate(info, size, epochs)
        # no await between the choice (the end of _estimate) and the claim
        claim = {s.id for s in (cost.reuse, *cost.fuse) if s is not None}
        self._claimed |= claim
        try:
            return await self._register_with(
                info, cost, blob_id, root_hash, deletable=deletable, attributes=attributes
            )
        finally:
            self._claimed -= claim

    async def _register_with(
        self,
        info: SystemInfo,
        cost: CostEstimate,
        blob_id: int,
        root_hash: int,
        *,
        deletable: bool,
        attributes: dict[str, str],
    ) -> tuple[mt.Blob, CostEstimate, TxResult]:
        storage_ref = await self._owned_ref(cost.reuse.id) if cost.reuse else None
        fuse_refs = [await self._owned_ref(s.id) for s in cost.fuse]

        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            system = self._system_arg(ptb, info, True)
            if storage_ref is not None and cost.reuse is not None:
                storage = ptb.owned(storage_ref)
                for ref in fuse_refs:
                    ptb.move_call(
                        info.package_id, "storage_resource", "fuse_amount",
                        [storage, ptb.owned(ref)],
                    )  # fmt: skip
                have = cost.reuse.storage_size + sum(s.storage_size for s in cost.fuse)
                if have > cost.encoded_size:
                    rest = ptb.move_call(
                        info.package_id, "storage_resource", "split_by_size",
                        [storage, ptb.u64(cost.encoded_size)],
                    )  # fmt: skip
                    ptb.transfer([rest], self.address)
                end = info.epoch + cost.epochs
                if cost.reuse.end_epoch > end:
                    # the blob lives as long as asked; the later period stays in the wallet
                    # (usable from its start epoch on)
                    later = ptb.move_call(
                        info.package_id, "storage_resource", "split_by_epoch",
                        [storage, ptb.u32(end)],
                    )  # fmt: skip
                    ptb.transfer([later], self.address)
            else:
                storage = ptb.move_call(
                    info.package_id,
                    "system",
                    "reserve_space",
                    [system, ptb.u64(cost.encoded_size), ptb.u32(cost.epochs), wal],
                )
            blob = ptb.move_call(
                info.package_id,
                "system",
                "register_blob",
                [
                    system,
                    storage,
                    ptb.u256(blob_id),
                    ptb.u256(root_hash),
                    ptb.u64(cost.size),
                    ptb.u8(ENCODING_TYPE_RS2),
                    ptb.boolean(deletable),
                    wal,
                ],
            )
            for key, value in attributes.items():
                ptb.move_call(
                    info.package_id,
                    "blob",
                    "insert_or_update_metadata_pair",
                    [blob, ptb.string(key), ptb.string(value)],
                )
            ptb.transfer([blob], self.address)

        result = await self._execute(build, wal_needed=cost.total, info=info)
        blobs = result.created.get("blob::Blob", [])
        if len(blobs) != 1:
            raise errors.ChainError(f"transaction {result.digest} created no Blob")
        return blobs[0], cost, result

    async def certify_blob(
        self, blob_object_id: str, signature: bytes, signers_bitmap: bytes, message: bytes
    ) -> TxResult:
        """Certify with an aggregated confirmation (a quorum of the committee's shards)."""

        async def go() -> TxResult:
            blob_ref = await self._owned_ref(blob_object_id)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                ptb.move_call(
                    info.package_id,
                    "system",
                    "certify_blob",
                    [
                        self._system_arg(ptb, info, False),
                        ptb.owned(blob_ref),
                        ptb.byte_vector(signature),
                        ptb.byte_vector(signers_bitmap),
                        ptb.byte_vector(message),
                    ],
                )

            return await self._execute(build)

        return await self._run(go())  # type: ignore[no-any-return]

    async def extend_blob(self, blob_object_id: str, epochs: int) -> tuple[int, TxResult]:
        """Extend by `epochs`; returns the WAL paid. Checks the price and balance first."""

        async def go() -> tuple[int, TxResult]:
            obj = await self._owned_object(blob_object_id)
            blob_ref, blob = _ref(obj), mt.Blob.from_bcs(_bcs(obj))
            info = await self._system_info()
            cost = extend_cost(blob.storage.storage_size, epochs, info.storage_price)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                ptb.move_call(
                    info.package_id,
                    "system",
                    "extend_blob",
                    [
                        self._system_arg(ptb, info, True),
                        ptb.owned(blob_ref),
                        ptb.u32(epochs),
                        wal,
                    ],
                )

            return cost, await self._execute(build, wal_needed=cost, info=info)

        return await self._run(go())  # type: ignore[no-any-return]

    async def delete_blob(self, blob_object_id: str) -> mt.Storage:
        """Delete a deletable blob; its Storage comes back to the wallet for reuse."""

        async def go() -> mt.Storage:
            blob_ref = await self._owned_ref(blob_object_id)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                storage = ptb.move_call(
                    info.package_id,
                    "system",
                    "delete_blob",
                    [self._system_arg(ptb, info, False), ptb.owned(blob_ref)],
                )
                ptb.transfer([storage], self.address)

            result = await self._execute(build)
            storages = result.created.get("storage_resource::Storage", [])
            if len(storages) != 1:
                raise errors.ChainError(f"transaction {result.digest} returned no Storage")
            storage: mt.Storage = storages[0]
            return storage

        return await self._run(go())  # type: ignore[no-any-return]

    async def set_attributes(self, blob_object_id: str, pairs: dict[str, str]) -> TxResult:
        async def go() -> TxResult:
            blob_ref = await self._owned_ref(blob_object_id)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                blob = ptb.owned(blob_ref)
                for key, value in pairs.items():
                    ptb.move_call(
                        info.package_id,
                        "blob",
                        "insert_or_update_metadata_pair",
                        [blob, ptb.string(key), ptb.string(value)],
                    )

            return await self._execute(build)

        return await self._run(go())  # type: ignore[no-any-return]

    async def remove_attributes(self, blob_object_id: str, keys: list[str]) -> TxResult:
        """Remove the keys that exist (absent keys are not an error)."""

        async def go() -> TxResult:
            blob_ref = await self._owned_ref(blob_object_id)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                blob = ptb.owned(blob_ref)
                for key in keys:
                    ptb.move_call(
                        info.package_id,
                        "blob",
                        "remove_metadata_pair_if_exists",
                        [blob, ptb.string(key)],
                    )

            return await self._execute(build)

        return await self._run(go())  # type: ignore[no-any-return]

    async def get_wal(self, mist: int) -> TxResult:
        """Swap `mist` of SUI for WAL at the exchange (devnet and testnet only)."""
        if not self.profile.exchange_objects:
            raise errors.ChainError(f"{self.profile.name} has no WAL exchange: buy WAL instead")

        async def go() -> TxResult:
            have = (await self._balances()).sui
            if have <= mist:
                raise errors.InsufficientGas(
                    f"swapping {mist / 10**9:.9f} SUI needs that much and gas; the wallet "
                    f"{self.address} holds {have / 10**9:.9f} SUI",
                    mist,
                    have,
                )
            exchange = await self._object(self.profile.exchange_objects[0])
            package = (exchange.object_type or "").split("::", 1)[0]
            version = _shared_version(exchange)

            def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
                (sui,) = ptb.split_coins(ptb.gas(), [ptb.u64(mist)])
                wal = ptb.move_call(
                    package,
                    "wal_exchange",
                    "exchange_all_for_wal",
                    [ptb.shared(self.profile.exchange_objects[0], version, True), sui],
                )
                ptb.transfer([wal], self.address)

            return await self._execute(build)

        return await self._run(go())  # type: ignore[no-any-return]


def _norm(addr: str) -> str:
    return "0x" + addr.removeprefix("0x").rjust(64, "0").lower()


_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "blob::Blob": mt.Blob.from_bcs,
    "storage_resource::Storage": mt.Storage.from_bcs,
}


def _short_type(type_: str) -> str:
    """`0x..::blob::Blob` -> `blob::Blob`; `0x2::coin::Coin<...>` -> `coin::Coin`."""
    return "::".join(type_.split("<", 1)[0].split("::")[-2:])


def _bcs(obj: pb.Object) -> bytes:
    if obj.contents is None or obj.contents.value is None:
        raise errors.ChainError(f"object {obj.object_id} came without its contents")
    return bytes(obj.contents.value)


def _shared_version(obj: pb.Object) -> int:
    if obj.owner is None or obj.owner.version is None:
        raise errors.ChainError(f"object {obj.object_id} is not a shared object")
    return int(obj.owner.version)


def _ref(obj: pb.Object) -> ObjectRef:
    return ObjectRef(obj.object_id or "", int(obj.version or 0), obj.digest or "")


def _make_client(profile: NetworkProfile) -> GrpcProtocolClient:
    """A pysui gRPC client for `profile` (its config holds the URL only, never keys)."""
    with tempfile.TemporaryDirectory(prefix="walrusfs-pysui-") as tmp:
        cfg = PysuiConfiguration.initialize_config(
            in_folder=Path(tmp), init_groups=[{"name": "walrusfs", "make_active": True}]
        )
        group = cfg.model.get_group(group_name="walrusfs")
        group.group_protocol = confgroup.GroupProtocol.GRPC
        group.profiles.append(confgroup.Profile(profile.name, profile.grpc_url))
        group.using_profile = profile.name
        client = GrpcProtocolClient(pysui_config=cfg)
    if not profile.tls:
        host, port = profile.grpc_url.rsplit(":", 1)
        client._channel.close()
        client._channel = grpclib.client.Channel(host, int(port), ssl=False)
    return client  # type: ignore[no-any-return]


def _raise_rpc_error(profile: NetworkProfile, detail: Any, executing: bool) -> Any:
    """Map a failed RPC by its gRPC status (pysui hands back `GRPCError.args`)."""
    parts = detail if isinstance(detail, tuple | list) else (detail,)
    status = parts[0] if parts and isinstance(parts[0], GRPCStatus) else None
    message = str(parts[1] if status is not None and len(parts) > 1 else parts[0])
    if status in (GRPCStatus.UNAVAILABLE, GRPCStatus.DEADLINE_EXCEEDED):
        raise errors.ChainUnavailable(
            f"cannot reach the Sui endpoint {profile.grpc_url}: {message}"
        )
    if status == GRPCStatus.NOT_FOUND:
        raise errors.ObjectNotFound(message)
    if executing and status in (GRPCStatus.INVALID_ARGUMENT, GRPCStatus.FAILED_PRECONDITION):
        raise errors.TransactionRejected(message)
    name = status.name if status is not None else "error"
    raise errors.ChainError(f"the Sui endpoint {profile.grpc_url} answered {name}: {message}")


def _raise_execution_error(digest: str, error: pb.ExecutionError | None) -> None:
    if error is None:
        raise errors.TransactionFailed(f"transaction {digest} failed", digest, "UNKNOWN")
    kind = error.kind.name if error.kind is not None else "UNKNOWN"
    if error.abort is not None:
        location = error.abort.location
        module = location.module if location and location.module else "?"
        function = location.function_name if location and location.function_name else "?"
        code = int(error.abort.abort_code or 0)
        known = aborts.by_location(module, code)
        name = known.name if known else None
        cls = _ABORT_CLASSES.get(known, errors.MoveAbortError) if known else errors.MoveAbortError
        raise cls(
            f"transaction {digest} aborted in {module}::{function} with code {code}"
            + (f" ({name})" if name else "")
            + f": {error.description}",
            digest,
            module=module,
            function=function,
            code=code,
            name=name,
        )
    raise errors.TransactionFailed(
        f"transaction {digest} failed ({kind}): {error.description}", digest, kind
    )
