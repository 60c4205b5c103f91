"""The stand-in answers like a Sui full node: read masks, defaults, batch and page limits; and
the client still works against it (committees over pysui's batch limit, matched by node ID;
gas budgets from a dry run).

The raw requests here go over gRPC with pysui's protobuf stubs and no mask, which is what a
client forgetting its mask sends: a full node would answer them with the documented default
fields only (sui `crates/sui-rpc-api/src/read_mask_defaults.rs`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpclib.client
import pysui.sui.sui_grpc.suimsgs.sui.rpc.v2 as pb
import pytest
import trio
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from pysui.sui.sui_grpc.suimsgs import google

from chain import errors, read_masks
from chain import move_types as mt
from chain.client import GAS_SAFE_OVERHEAD, OBJECT_BATCH, WalrusChain
from chain.localnet import masks
from chain.localnet.digests import object_digest
from chain.localnet.ledger_service import MAX_UNVERSIONED_BATCH_REQUESTS
from chain.localnet.naming import SUI_FRAMEWORK, coin_type
from chain.ptb import ObjectRef, Ptb
from tests.chain_localnet.helpers import USER, _encode, _register
from tests.localnet_harness import LocalTestnet, localnet

pytestmark = pytest.mark.trio

T = TypeVar("T")


async def _rpc(tn: LocalTestnet, call: Callable[[grpclib.client.Channel], Awaitable[T]]) -> T:
    """Run one raw gRPC exchange on an asyncio loop of its own (grpclib is asyncio)."""

    async def go() -> T:
        channel = grpclib.client.Channel("127.0.0.1", tn.server.port)
        try:
            return await call(channel)
        finally:
            channel.close()

    return await trio.to_thread.run_sync(asyncio.run, go())


def _mask(*paths: str) -> Any:
    return google.protobuf.FieldMask(paths=list(paths))


# -- read masks ---------------------------------------------------------------------------------


async def test_get_object_returns_only_the_masked_fields(testnet: LocalTestnet) -> None:
    system = testnet.net.deployment.system_id

    async def unmasked(ch: grpclib.client.Channel) -> pb.GetObjectResponse:
        return await pb.LedgerServiceStub(ch).get_object(pb.GetObjectRequest(object_id=system))

    async def masked(ch: grpclib.client.Channel) -> pb.GetObjectResponse:
        request = pb.GetObjectRequest(object_id=system, read_mask=_mask("contents", "owner"))
        return await pb.LedgerServiceStub(ch).get_object(request)

    default = (await _rpc(testnet, unmasked)).object
    assert default is not None
    assert default.object_id == system and default.version and default.digest
    assert default.contents is None and default.owner is None and default.object_type is None

    chosen = (await _rpc(testnet, masked)).object
    assert chosen is not None and chosen.contents is not None and chosen.contents.value
    assert chosen.owner is not None and chosen.owner.version is not None
    assert chosen.object_id is None and chosen.version is None and chosen.digest is None


async def test_a_mask_naming_no_field_is_refused(testnet: LocalTestnet) -> None:
    system = testnet.net.deployment.system_id
    for bad in ("contents.nothing", "version.value", "no_such_field"):

        async def call(ch: grpclib.client.Channel, path: str = bad) -> pb.GetObjectResponse:
            request = pb.GetObjectRequest(object_id=system, read_mask=_mask(path))
            return await pb.LedgerServiceStub(ch).get_object(request)

        with pytest.raises(GRPCError) as info:
            await _rpc(testnet, call)
        assert info.value.status == Status.INVALID_ARGUMENT
        assert "invalid read_mask path" in (info.value.message or "")


async def test_every_client_mask_names_real_fields() -> None:
    """The client's table passes the node's validation for the message each call masks."""
    targets: dict[str, type[Any]] = {
        "OBJECT": pb.Object,
        "STAKING_POOL": pb.Object,
        "OWNED": pb.Object,
        "GAS_PRICE": pb.Epoch,
        "CHECKPOINT_NUMBER": pb.Checkpoint,
        "CHECKPOINT_EVENTS": pb.Checkpoint,
        "EXECUTED": pb.ExecutedTransaction,
        "TRANSACTION": pb.ExecutedTransaction,
        "SIMULATED": pb.SimulateTransactionResponse,
    }
    assert set(targets) == set(read_masks.ALL)
    for name, paths in read_masks.ALL.items():
        masks.validate(paths, targets[name])
    assert "contents" in read_masks.OBJECT and "contents" in read_masks.OWNED


async def test_mask_tree_follows_sui_rpc_semantics() -> None:
    """`field_mask_tree.rs`: a shorter path absorbs longer ones, `contains` holds for prefixes
    and descendants, a selected leaf's subtree is everything."""
    tree = masks.MaskTree(["a.b", "a", "c.d"])
    assert tree.contains("a") and tree.contains("a.x.y") and tree.contains("c")
    assert tree.contains("c.d") and not tree.contains("c.e") and not tree.contains("b")
    sub = tree.subtree("a")
    assert sub is not None and sub.wildcard
    assert tree.subtree("c.e") is None
    assert masks.MaskTree(["*"]).contains("anything.at.all")


async def _transfer_tx(tn: LocalTestnet) -> bytes:
    """A signed-ready transaction splitting 1 SUI off the gas coin to the sender."""
    coins = tn.net.ledger.owned_by(USER.address, coin_type(f"{SUI_FRAMEWORK}::sui::SUI"))
    gas = max(coins, key=lambda c: int.from_bytes(c.contents[32:40], "little"))
    ptb = Ptb()
    (coin,) = ptb.split_coins(ptb.gas(), [ptb.u64(10**9)])
    ptb.transfer([coin], USER.address)
    return ptb.build(USER.address, ObjectRef(gas.id, gas.version, gas.digest), 1000, 10**9)


async def _execute(tn: LocalTestnet, mask: Any | None) -> pb.ExecutedTransaction:
    tx = await _transfer_tx(tn)
    request = pb.ExecuteTransactionRequest(
        transaction=pb.Transaction(bcs=pb.Bcs(value=tx)),
        signatures=[pb.UserSignature(bcs=pb.Bcs(value=USER.sign_transaction(tx)))],
        read_mask=mask,
    )

    async def call(ch: grpclib.client.Channel) -> pb.ExecuteTransactionResponse:
        return await pb.TransactionExecutionServiceStub(ch).execute_transaction(request)

    executed = (await _rpc(tn, call)).transaction
    assert executed is not None
    return executed


async def test_execute_transaction_masks_its_reply(testnet: LocalTestnet) -> None:
    """Default `effects`; `objects` alone returns no objects, `objects.objects.<f>` does
    (`transaction_execution_service/mod.rs` asks for the subtree `objects.objects`)."""
    default = await _execute(testnet, None)
    assert default.effects is not None and default.effects.status is not None
    assert default.effects.status.success
    assert default.digest is None and default.events is None and default.objects is None

    bare = await _execute(testnet, _mask("objects", "digest"))
    assert bare.objects is None and bare.digest and bare.effects is None

    deep = await _execute(testnet, _mask("objects.objects.object_id", "effects.gas_used"))
    assert deep.objects is not None and deep.objects.objects
    assert all(o.object_id and o.contents is None for o in deep.objects.objects)
    assert deep.effects is not None and deep.effects.gas_used is not None
    assert deep.effects.status is None


# -- batch and page limits -----------------------------------------------------------------------


async def test_batch_get_objects_refuses_more_than_the_limit(testnet: LocalTestnet) -> None:
    system = testnet.net.deployment.system_id

    def batch(n: int) -> pb.BatchGetObjectsRequest:
        return pb.BatchGetObjectsRequest(
            requests=[pb.GetObjectRequest(object_id=system) for _ in range(n)]
        )

    async def call(ch: grpclib.client.Channel, n: int) -> pb.BatchGetObjectsResponse:
        return await pb.LedgerServiceStub(ch).batch_get_objects(batch(n))

    full = await _rpc(testnet, lambda ch: call(ch, MAX_UNVERSIONED_BATCH_REQUESTS))
    assert len(full.objects) == MAX_UNVERSIONED_BATCH_REQUESTS
    assert all(r.object is not None and r.object.contents is None for r in full.objects)
    with pytest.raises(GRPCError) as info:
        await _rpc(testnet, lambda ch: call(ch, MAX_UNVERSIONED_BATCH_REQUESTS + 1))
    assert info.value.status == Status.INVALID_ARGUMENT
    assert "exceeds limit" in (info.value.message or "")


async def test_list_owned_objects_pages_and_tokens(testnet: LocalTestnet) -> None:
    """page_size 0 is clamped to 1; a token only continues the listing it came from."""

    async def page(
        ch: grpclib.client.Channel, token: bytes | None, type_: str | None
    ) -> pb.ListOwnedObjectsResponse:
        request = pb.ListOwnedObjectsRequest(
            owner=USER.address, page_size=0, page_token=token, object_type=type_
        )
        return await pb.StateServiceStub(ch).list_owned_objects(request)

    first = await _rpc(testnet, lambda ch: page(ch, None, None))
    assert len(first.objects) == 1 and first.next_page_token
    (obj,) = first.objects
    assert obj.object_id and obj.version and obj.object_type and obj.contents is None
    second = await _rpc(testnet, lambda ch: page(ch, first.next_page_token, None))
    assert len(second.objects) == 1 and second.objects[0].object_id != obj.object_id
    with pytest.raises(GRPCError) as info:
        await _rpc(testnet, lambda ch: page(ch, first.next_page_token, "0x2::coin::Coin"))
    assert info.value.status == Status.INVALID_ARGUMENT


# -- the client against the strict stand-in --------------------------------------------------------


async def test_committee_larger_than_a_batch(tmp_path: Path) -> None:
    """Real committees have 100+ members; pools are read in batches pysui accepts."""
    n = 2 * OBJECT_BATCH + 20
    with localnet(tmp_path, [USER], shards=[[i] for i in range(n)]) as tn:
        client = WalrusChain(tn.profile, USER)
        try:
            members = await client.committee()
        finally:
            await client.close()
        bls = tn.net.system_state().committee.members
    assert len(members) == n and sorted(m.index for m in members) == list(range(n))
    for m in members:
        assert bls[m.index].node_id == m.node_id and bls[m.index].public_key == m.public_key
        assert m.pool_public_key == m.public_key and m.next_epoch_public_key is None


async def test_committee_matches_nodes_by_id_not_key(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """A pool whose key rotated (the BLS committee still holds the old one) stays in the
    committee with the key certificates are checked against, and its shards."""
    bls = testnet.net.system_state().committee.members
    rotated = bls[1]
    stored = testnet.net.ledger.get(rotated.node_id)
    assert stored is not None
    pool = mt.StakingPool.from_bcs(stored.contents)
    new_key = bls[0].public_key  # any other valid G1 key
    info = dataclasses.replace(pool.node_info, public_key=new_key, next_epoch_public_key=new_key)
    changed = dataclasses.replace(pool, node_info=info).to_bcs()
    updated = dataclasses.replace(stored, contents=changed, version=stored.version + 1)
    updated = dataclasses.replace(updated, digest=object_digest(updated))
    testnet.net.ledger.apply([updated], [])

    members = {m.node_id: m for m in await chain.committee()}
    assert set(members) == {m.node_id for m in bls}
    member = members[rotated.node_id]
    assert member.public_key == rotated.public_key and member.index == 1
    assert member.pool_public_key == new_key and member.next_epoch_public_key == new_key
    assert member.shards and sum(len(m.shards) for m in members.values()) == 10


def _attributes(total: int) -> dict[str, str]:
    """Attributes of about `total` bytes, in values under Sui's 16 KiB pure-argument limit."""
    return {f"key{i:02}": chr(ord("a") + i) * 1000 for i in range(total // 1000)}


async def test_gas_budget_covers_what_the_transaction_costs(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """A register with ~12 kB of attributes costs more storage than the old fixed budget of
    0.05 SUI: with a fixed budget it fails out of gas; with the simulated one it succeeds."""
    fixed = WalrusChain(testnet.profile, USER, gas_budget=50_000_000)
    try:
        with pytest.raises(errors.TransactionFailed) as info:
            await _register(fixed, _encode(b"fixed budget"), attributes=_attributes(12_000))
        assert info.value.kind == "INSUFFICIENT_GAS"
    finally:
        await fixed.close()

    before = (await chain.balances()).sui
    blob, _, result = await chain.register_blob(
        _encode(b"simulated budget").blob_id.to_u256(),
        _encode(b"simulated budget").root_hash,
        len(b"simulated budget"),
        3,
        attributes=_attributes(12_000),
    )
    assert result.gas_used > 50_000_000
    assert before - (await chain.balances()).sui == result.gas_used
    assert len(await chain.attributes(blob.id)) == 12


async def test_too_little_sui_for_any_budget(tmp_path: Path) -> None:
    with localnet(tmp_path, [USER], sui=GAS_SAFE_OVERHEAD * 1000 - 1) as tn:
        client = WalrusChain(tn.profile, USER)
        try:
            with pytest.raises(errors.InsufficientGas, match="gas budget"):
                await _register(client, _encode(b"no gas"))
        finally:
            await client.close()
