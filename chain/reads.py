"""Reads of Walrus state: the System and its committee, balances, owned Blob and Storage
objects, blob attributes, the cost of a new blob and the gas price.

Coroutines of the asyncio thread (`chain.transport.Transport.run` awaits them from trio).
Nothing here signs or spends. Structs are matched on the type-origin package (the package
in the System object's type), as the Walrus client does; inner states and attributes are
dynamic fields read by their derived IDs (`chain.move_types`).

Any read may raise what `Transport.call` raises (`ChainUnavailable`, `ChainError`); those
that name the wallet's objects raise `WalletError` on a read-only client (no address).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import pysui.sui.sui_grpc.pgrpc_requests as rq
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb

from chain import errors, storage_reuse
from chain import move_types as mt
from chain import read_masks as masks
from chain.records import Balances, CommitteeMember, CostEstimate, PastTransaction, SystemInfo
from chain.transport import Transport, contents, norm, shared_version
from codec.bcs import Reader

ATTRIBUTE_READS = 16  # concurrent attribute reads in attributes_of
#: IDs per BatchGetObjects: pysui refuses more than 50 before sending
#: (`MAX_MULTI_OBJECT_FETCH`), and Sui's archive RPC refuses more than 50 unversioned reads
#: in one batch (`crates/sui-kv-rpc/src/v2/get_object.rs`). Committees have 100+ members.
OBJECT_BATCH = 50
#: ListOwnedObjects page size: the largest a full node serves (`list_owned_objects.rs`
#: MAX_PAGE_SIZE; larger values are coerced down, so asking for more is harmless anyway).
OWNED_PAGE_SIZE = 1000


async def versioned_inner(
    rpc: Transport, root_id: str
) -> tuple[pb.Object, mt.VersionedRoot, Reader]:
    """A System/Staking root and a reader over its inner state (the field `version`).

    Raises:
        ObjectNotFound: no object `root_id`.
        ChainError: the root has no inner state of its version (a wrong network profile).
    """
    root_obj = await rpc.object(root_id)
    root = mt.VersionedRoot.from_bcs(contents(root_obj))
    try:
        field = await rpc.object(mt.versioned_inner_id(root_id, root.version))
    except errors.ObjectNotFound:
        raise errors.ChainError(
            f"{root_id} has no inner state for version {root.version}: "
            "is this the right network profile?"
        ) from None
    key = root.version.to_bytes(8, "little")
    # `read`, not `from_bcs`: later contract versions may append fields.
    return root_obj, root, Reader(mt.field_value(contents(field), key))


async def system_info(rpc: Transport) -> SystemInfo:
    """Epoch, shards, prices, capacity and the committee's keys, from the System object."""
    system, root, reader = await versioned_inner(rpc, rpc.profile.system_object)
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
        type_package=norm((system.object_type or "").split("::", 1)[0]),
        system_initial_version=shared_version(system),
        committee_keys=tuple(inner.committee.members),
    )


async def staking_pools(rpc: Transport, node_ids: list[str]) -> dict[str, mt.StakingPool]:
    """The staking pools of `node_ids` (`BatchGetObjects` of OBJECT_BATCH IDs), by normalised
    node ID.

    Raises:
        ObjectNotFound: a pool does not exist.
    """
    pools: dict[str, mt.StakingPool] = {}
    for start in range(0, len(node_ids), OBJECT_BATCH):
        batch = node_ids[start : start + OBJECT_BATCH]
        reply = await rpc.call(
            rq.GetMultipleObjects(object_ids=batch, field_mask=list(masks.STAKING_POOL))
        )
        for node_id, result in zip(batch, reply.objects, strict=True):
            if result.object is None:
                raise errors.ObjectNotFound(f"staking pool {node_id} not found")
            pools[norm(node_id)] = mt.StakingPool.read(Reader(contents(result.object)))
    return pools


async def staking_state(rpc: Transport) -> tuple[mt.StakingInnerV1, dict[str, mt.StakingPool]]:
    """The Staking inner state and the pools of its current and previous committee (the
    previous one serves reads of older blobs while shards move: walrus-sdk
    `active_committees.rs`)."""
    _, _, reader = await versioned_inner(rpc, rpc.profile.staking_object)
    inner = mt.StakingInnerV1.read(reader)
    ids = sorted({norm(a.node_id) for a in [*inner.committee, *inner.previous_committee]})
    return inner, await staking_pools(rpc, ids)


async def committee(rpc: Transport) -> list[CommitteeMember]:
    """The storage nodes, their shards and network addresses (Staking + StakingPools).

    Raises:
        ChainError: a shard holder is missing from the System's BLS committee (the two
            disagree, as when read during an epoch change), or a pool describes another node.
    """
    _, _, reader = await versioned_inner(rpc, rpc.profile.staking_object)
    inner = mt.StakingInnerV1.read(reader)
    bls = {norm(m.node_id): (i, m) for i, m in enumerate((await system_info(rpc)).committee_keys)}
    pools = await staking_pools(rpc, [a.node_id for a in inner.committee])
    members = []
    for assignment in inner.committee:
        node_id = norm(assignment.node_id)
        info = pools[node_id].node_info
        if norm(info.node_id) != node_id:
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


def _wallet(owner: str) -> str:
    """`owner`, or `WalletError` for a read-only client (no wallet: the address is empty)."""
    if not owner:
        raise errors.WalletError(
            "this chain client is read-only: it has no wallet key, so it owns nothing"
        )
    return owner


async def balances(rpc: Transport, owner: str) -> Balances:
    sui = await rpc.call(rq.GetAddressCoinBalance(owner=_wallet(owner)))
    wal = await rpc.call(rq.GetAddressCoinBalance(owner=owner, coin_type=rpc.profile.wal_type))
    return Balances(int(sui.balance.balance or 0), int(wal.balance.balance or 0))


async def owned(rpc: Transport, owner: str, type_: str) -> list[pb.Object]:
    """Every object of `type_` that `owner` owns (all pages)."""
    owner = _wallet(owner)
    out: list[pb.Object] = []
    token: bytes | None = None
    while True:
        page = await rpc.call(
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


async def blobs(rpc: Transport, owner: str, valid_only: bool) -> list[mt.Blob]:
    """Owned Blob objects; `valid_only` drops those whose end epoch has passed."""
    info = await system_info(rpc)
    objs = await owned(rpc, owner, f"{info.type_package}::blob::Blob")
    found = [mt.Blob.from_bcs(contents(o)) for o in objs]
    return [b for b in found if not valid_only or b.end_epoch > info.epoch]


async def storages(
    rpc: Transport, owner: str, info: SystemInfo, valid_only: bool
) -> list[mt.Storage]:
    """Owned Storage objects; `valid_only` drops those whose end epoch has passed."""
    objs = await owned(rpc, owner, f"{info.type_package}::storage_resource::Storage")
    res = [mt.Storage.from_bcs(contents(o)) for o in objs]
    return [s for s in res if not valid_only or s.end_epoch > info.epoch]


async def transaction(rpc: Transport, digest: str) -> PastTransaction:
    """The executed transaction `digest` (GetTransaction, mask `TRANSACTION`).

    Raises:
        ObjectNotFound: the node has no transaction of that digest.
    """
    reply = await rpc.call(rq.GetTransaction(digest=digest, field_mask=list(masks.TRANSACTION)))
    tx = reply.transaction
    kind = tx.transaction.kind if tx.transaction is not None else None
    ptb = kind.programmable_transaction if kind is not None else None
    programmable = (
        kind is not None
        and kind.kind == pb.TransactionKindKind.PROGRAMMABLE_TRANSACTION
        and ptb is not None
    )
    first = None
    if programmable and ptb is not None and ptb.inputs:
        head = ptb.inputs[0]
        if head.kind == pb.InputInputKind.PURE and head.pure is not None:
            first = bytes(head.pure)
    stamp = tx.timestamp
    return PastTransaction(
        tx.digest or digest,
        None if stamp is None else int(stamp.timestamp() * 1000),
        programmable,
        first,
        tuple(
            (norm(c.address or ""), c.coin_type or "", int(c.amount or 0))
            for c in tx.balance_changes
        ),
    )


async def blob(rpc: Transport, object_id: str) -> mt.Blob:
    return mt.Blob.from_bcs(contents(await rpc.object(object_id)))


async def attributes(rpc: Transport, blob_object_id: str) -> dict[str, str]:
    """The blob's attributes (its `metadata` dynamic field); {} when it has none."""
    try:
        field = await rpc.object(mt.metadata_field_id(blob_object_id))
    except errors.ObjectNotFound:
        return {}  # a blob without attributes has no field
    value = mt.field_value(contents(field), mt.METADATA_FIELD_NAME)
    return mt.BlobAttributes.from_bcs(value).as_dict()


async def attributes_of(rpc: Transport, blob_object_ids: list[str]) -> dict[str, dict[str, str]]:
    """The attributes of many blobs, ATTRIBUTE_READS requests at a time."""
    limit = asyncio.Semaphore(ATTRIBUTE_READS)

    async def one(object_id: str) -> dict[str, str]:
        async with limit:
            return await attributes(rpc, object_id)

    found = await asyncio.gather(*(one(i) for i in blob_object_ids))
    return dict(zip(blob_object_ids, found, strict=True))


async def estimate(
    rpc: Transport,
    owner: str,
    info: SystemInfo,
    size: int,
    epochs: int,
    *,
    claimed: Collection[str],
) -> CostEstimate:
    """What storing `size` bytes for `epochs` epochs costs now, reusing owned Storage that
    registrations under way have not `claimed`.

    Raises:
        ValueError: `epochs` is not within 1..`max_epochs_ahead`.
        codec.DataTooLarge: `size` exceeds the largest blob of this shard count.
    """
    storage_reuse.check_epochs(info, epochs)
    owned_now = await storages(rpc, owner, info, True)
    return storage_reuse.estimate(info, owned_now, size, epochs, claimed)


async def gas_price(rpc: Transport) -> int:
    """The reference gas price of the current epoch (MIST per computation unit)."""
    reply = await rpc.call(rq.GetEpoch(field_mask=list(masks.GAS_PRICE)))
    return int(reply.epoch.reference_gas_price or 1000)
