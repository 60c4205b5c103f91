"""The Walrus chain client against the stand-in over real gRPC on localhost.

Each test runs pysui's gRPC client (on its asyncio thread, awaited from trio) against a fresh
ledger. Aborts are checked by module and Move abort code, WAL by the Move pricing formulas.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpclib.client
import pysui
import pytest
import trio
from pysui import GrpcProtocolClient, PysuiConfiguration
from pysui.sui.sui_bcs import bcs
from pysui.sui.sui_common.config import confgroup

import codec
from chain import errors
from chain import move_types as mt
from chain.client import SystemInfo, WalrusChain, devnet_profile
from chain.localnet.errors import bcs_error
from chain.localnet.node import Localnet
from chain.localnet.server import LocalnetServer
from chain.pricing import extend_cost, reserve_cost, write_cost
from chain.ptb import ObjectRef, Ptb
from chain.wallet import Keypair
from tests.localnet_harness import LocalTestnet, localnet

pytestmark = pytest.mark.trio

USER = Keypair.from_ed25519_seed(b"\x11" * 32)
OTHER = Keypair.from_ed25519_seed(b"\x22" * 32)
# Signers by member index; the harness gives members weights in ID order, so quorum is checked
# from the actual weights in the tests that need it.


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[LocalTestnet]:
    with localnet(tmp_path, [USER, OTHER]) as tn:
        yield tn


@pytest.fixture
async def chain(testnet: LocalTestnet) -> AsyncIterator[WalrusChain]:
    client = WalrusChain(testnet.profile, USER)
    yield client
    await client.close()


@dataclass
class Encoded:
    data: bytes
    blob_id: codec.BlobId
    root_hash: int


def _encode(data: bytes) -> Encoded:
    enc = codec.encode(data, 10)
    return Encoded(data, enc.blob_id, int.from_bytes(enc.root_hash, "little"))


def _where(exc: errors.MoveAbortError) -> tuple[str, int, str | None]:
    return exc.module, exc.code, exc.name


def _quorum(tn: LocalTestnet) -> list[int]:
    """The fewest members (heaviest first) whose shards reach 3w >= 2n+1."""
    weights = tn.member_weights()
    order = sorted(range(len(weights)), key=lambda i: -weights[i])
    chosen, total = [], 0
    for i in order:
        chosen.append(i)
        total += weights[i]
        if 3 * total >= 2 * sum(weights) + 1:
            return sorted(chosen)
    raise AssertionError("no quorum")


async def _register(
    chain: WalrusChain, enc: Encoded, epochs: int = 3, deletable: bool = True, **kw: Any
) -> mt.Blob:
    blob, _, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), epochs, deletable=deletable, **kw
    )
    return blob


async def _certify(chain: WalrusChain, tn: LocalTestnet, blob: mt.Blob) -> None:
    object_id = blob.id if blob.deletable else None
    sig, bitmap, msg = tn.confirm(
        codec.BlobId.from_u256(blob.blob_id).raw, _quorum(tn), object_id=object_id
    )
    await chain.certify_blob(blob.id, sig, bitmap, msg)


# -- reads ------------------------------------------------------------------------------------


async def test_system_state_committee_and_balances(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    assert (info.epoch, info.n_shards, info.max_epochs_ahead) == (0, 10, 53)
    assert (info.storage_price, info.write_price) == (100_000, 20_000)
    assert info.package_id == testnet.net.deployment.walrus_pkg
    members = await chain.committee()
    assert sorted(s for m in members for s in m.shards) == list(range(10))
    assert {m.network_address for m in members} == {f"localhost:{9100 + i}" for i in range(4)}
    keys = {m.public_key for m in members}
    assert keys == set(testnet.node_keys)
    balances = await chain.balances()
    assert (balances.sui, balances.wal) == (10**12, 10**12)


# -- the whole life of a blob ----------------------------------------------------------------


async def test_blob_lifecycle_and_storage_reuse(chain: WalrusChain, testnet: LocalTestnet) -> None:
    info = await chain.system_info()
    enc = _encode(b"walrusfs " * 500)
    encoded = codec.EncodingParams(10).encoded_size(len(enc.data))
    wal0 = (await chain.balances()).wal

    estimate = await chain.estimate(len(enc.data), 3)
    assert estimate.reuse is None
    assert estimate.storage == reserve_cost(encoded, 3, info.storage_price)
    assert estimate.write == write_cost(encoded, info.write_price)

    blob, cost, result = await chain.register_blob(
        enc.blob_id.to_u256(),
        enc.root_hash,
        len(enc.data),
        3,
        deletable=True,
        attributes={"path": "/docs/a.txt"},
    )
    assert cost == estimate
    assert (blob.size, blob.deletable, blob.end_epoch, blob.certified_epoch) == (
        len(enc.data),
        True,
        3,
        None,
    )
    assert blob.storage.storage_size == encoded
    assert [t.rsplit("::", 1)[1] for t, _ in result.events] == ["BlobRegistered"]
    assert mt.BlobRegistered.from_bcs(result.events[0][1]).object_id == blob.id
    wal1 = (await chain.balances()).wal
    assert wal0 - wal1 == estimate.total  # storage for 3 epochs + write fee, nothing else
    assert await chain.attributes(blob.id) == {"path": "/docs/a.txt"}

    await _certify(chain, testnet, blob)
    certified = await chain.blob(blob.id)
    assert certified.certified_epoch == 0

    paid, _ = await chain.extend_blob(blob.id, 2)
    assert paid == extend_cost(encoded, 2, info.storage_price)
    assert (await chain.blob(blob.id)).end_epoch == 5
    wal2 = (await chain.balances()).wal
    assert wal1 - wal2 == paid

    await chain.set_attributes(blob.id, {"mode": "0644", "path": "/docs/b.txt"})
    await chain.remove_attributes(blob.id, ["mode", "absent"])
    assert await chain.attributes(blob.id) == {"path": "/docs/b.txt"}

    storage = await chain.delete_blob(blob.id)
    assert (storage.start_epoch, storage.end_epoch, storage.storage_size) == (0, 5, encoded)
    assert await chain.blobs() == []
    assert [s.id for s in await chain.storage_resources()] == [storage.id]
    with pytest.raises(errors.ObjectNotFound):
        await chain.blob(blob.id)

    # The next blob of the same size reuses that Storage: no reserve_space, only the write fee.
    enc2 = _encode(b"another file " * 300)
    estimate2 = await chain.estimate(len(enc2.data), 3)
    assert estimate2.reuse is not None and estimate2.reuse.id == storage.id
    assert estimate2.storage == 0
    blob2, cost2, result2 = await chain.register_blob(
        enc2.blob_id.to_u256(), enc2.root_hash, len(enc2.data), 3
    )
    assert blob2.storage.id == storage.id
    assert blob2.end_epoch == 3  # as asked: epochs 3..5 of the Storage are split off
    assert (await chain.balances()).wal == wal2 - cost2.write
    # what the smaller, shorter blob does not need stays in the wallet
    encoded2 = codec.EncodingParams(10).encoded_size(len(enc2.data))
    assert blob2.storage.storage_size == encoded2 < encoded
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch, s.end_epoch, s.storage_size) for s in rest) == [
        (0, 5, encoded - encoded2),
        (3, 5, encoded2),
    ]
    assert {s.id for s in result2.created["storage_resource::Storage"]} == {s.id for s in rest}


async def test_reuse_picks_the_smallest_adequate_storage(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    info = await chain.system_info()
    big, small = 2_000_000, 1_000_000

    def reserve(size: int) -> Any:
        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
            res = ptb.move_call(
                info.package_id, "system", "reserve_space", [system, ptb.u64(size), ptb.u32(4), wal]
            )
            ptb.transfer([res], USER.address)

        return build

    await chain.execute_ptb(reserve(big), wal_needed=reserve_cost(big, 4, info.storage_price))
    await chain.execute_ptb(reserve(small), wal_needed=reserve_cost(small, 4, info.storage_price))
    enc = _encode(b"x" * 1000)
    estimate = await chain.estimate(len(enc.data), 2)
    assert estimate.reuse is not None and estimate.reuse.storage_size == small
    # Storage that ends too early is not reused.
    assert (await chain.estimate(len(enc.data), 5)).reuse is None

    # Registering splits off what the blob does not need: the rest stays in the wallet.
    blob, cost, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), 2
    )
    assert cost.storage == 0 and blob.storage.storage_size == cost.encoded_size
    assert blob.end_epoch == info.epoch + 2
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch - info.epoch, s.storage_size) for s in rest) == sorted(
        [(0, big), (0, small - cost.encoded_size), (2, cost.encoded_size)]
    )


async def test_storage_of_one_period_is_fused_for_a_larger_blob(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """Three freed resources, none large enough alone: the fewest that together are get
    fused (fuse_amount) and the excess split off, instead of reserving new space."""
    info = await chain.system_info()
    enc = _encode(os.urandom(1_000_000))
    need = codec.EncodingParams(info.n_shards).encoded_size(len(enc.data))
    sizes = [need // 2, need // 2 + 1000, need // 3]

    def reserve(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        for size in sizes:
            res = ptb.move_call(
                info.package_id, "system", "reserve_space", [system, ptb.u64(size), ptb.u32(4), wal]
            )
            ptb.transfer([res], USER.address)

    await chain.execute_ptb(
        reserve, wal_needed=sum(reserve_cost(x, 4, info.storage_price) for x in sizes)
    )
    estimate = await chain.estimate(len(enc.data), 3)
    assert estimate.storage == 0 and estimate.reuse is not None and len(estimate.fuse) == 1
    wal = (await chain.balances()).wal
    blob, cost, _ = await chain.register_blob(
        enc.blob_id.to_u256(), enc.root_hash, len(enc.data), 3
    )
    assert blob.storage.storage_size == need and blob.end_epoch == info.epoch + 3
    assert (await chain.balances()).wal == wal - cost.write
    rest = await chain.storage_resources(valid_only=False)
    assert sorted((s.start_epoch - info.epoch, s.storage_size) for s in rest) == sorted(
        [(0, need // 3), (0, need // 2 + need // 2 + 1000 - need), (3, need)]
    )


async def test_get_wal_from_the_exchange(chain: WalrusChain) -> None:
    before = await chain.balances()
    result = await chain.get_wal(5 * 10**9)
    after = await chain.balances()
    assert after.wal - before.wal == 5 * 10**9  # rate 1:1
    assert before.sui - after.sui == 5 * 10**9 + result.gas_used


async def test_metadata_built_in_a_ptb_and_missing_key_abort(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """`metadata::new` + `insert_or_update` + `add_metadata` in one PTB; removing an absent key
    with `remove_metadata_pair` aborts in `sui::vec_map` (EKeyDoesNotExist = 1)."""
    blob = await _register(chain, _encode(b"metadata in a ptb"))
    ref = await chain.object_ref(blob.id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        meta = ptb.move_call(info.package_id, "metadata", "new", [])
        ptb.move_call(
            info.package_id,
            "metadata",
            "insert_or_update",
            [meta, ptb.string("a"), ptb.string("1")],
        )
        ptb.move_call(info.package_id, "blob", "add_metadata", [ptb.owned(ref), meta])

    await chain.execute_ptb(build)
    assert await chain.attributes(blob.id) == {"a": "1"}
    ref = await chain.object_ref(blob.id)

    def twice(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        meta = ptb.move_call(info.package_id, "metadata", "new", [])
        ptb.move_call(info.package_id, "blob", "add_metadata", [ptb.owned(ref), meta])

    with pytest.raises(errors.MoveAbortError) as dup:
        await chain.execute_ptb(twice)
    assert (dup.value.module, dup.value.code, dup.value.name) == ("blob", 7, "EDuplicateMetadata")
    ref = await chain.object_ref(blob.id)

    def remove_absent(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.move_call(
            info.package_id, "blob", "remove_metadata_pair", [ptb.owned(ref), ptb.string("zz")]
        )

    with pytest.raises(errors.MoveAbortError) as missing:
        await chain.execute_ptb(remove_absent)
    assert (missing.value.module, missing.value.code) == ("vec_map", 1)
    assert await chain.attributes(blob.id) == {"a": "1"}


async def test_gas_coin_cannot_also_be_an_input(chain: WalrusChain, testnet: LocalTestnet) -> None:
    gas = next(o for o in testnet.net.ledger.owned_by(USER.address) if "sui::SUI" in o.type)
    ptb = Ptb()
    ref = ObjectRef(gas.id, gas.version, gas.digest)
    ptb.transfer([ptb.owned(ref)], OTHER.address)
    tx = ptb.build(USER.address, ref, 1000, 10**7)
    with pytest.raises(errors.TransactionRejected, match="also an input"):
        await chain.execute_signed(tx, [USER.sign_transaction(tx)])


# -- mirrored aborts: one test each ----------------------------------------------------------


def _reserve_build(testnet: LocalTestnet, size: int, epochs: int) -> Any:
    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        res = ptb.move_call(
            info.package_id,
            "system",
            "reserve_space",
            [system, ptb.u64(size), ptb.u32(epochs), wal],
        )
        ptb.transfer([res], USER.address)

    return build


@pytest.mark.parametrize("epochs", [0, 54])
async def test_abort_epochs_ahead_out_of_range(
    chain: WalrusChain, testnet: LocalTestnet, epochs: int
) -> None:
    wal = (await chain.balances()).wal
    with pytest.raises(errors.MoveAbortError) as info:
        await chain.execute_ptb(_reserve_build(testnet, 1000, epochs), wal_needed=1)
    assert _where(info.value) == (
        "system_state_inner",
        2,
        "EInvalidEpochsAhead",
    )
    assert "EInvalidEpochsAhead" in str(info.value)
    after = await chain.balances()
    assert after.wal == wal  # a failed transaction changes nothing but the gas
    assert await chain.storage_resources() == []


async def _register_with(
    chain: WalrusChain, testnet: LocalTestnet, storage_size: int, enc: Encoded, blob_id: int
) -> None:
    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        res = ptb.move_call(
            info.package_id,
            "system",
            "reserve_space",
            [system, ptb.u64(storage_size), ptb.u32(2), wal],
        )
        blob = ptb.move_call(
            info.package_id,
            "system",
            "register_blob",
            [
                system,
                res,
                ptb.u256(blob_id),
                ptb.u256(enc.root_hash),
                ptb.u64(len(enc.data)),
                ptb.u8(1),
                ptb.boolean(True),
                wal,
            ],
        )
        ptb.transfer([blob], USER.address)

    await chain.execute_ptb(build, wal_needed=1)


async def test_abort_storage_smaller_than_encoded_size(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    enc = _encode(b"y" * 5000)
    encoded = codec.EncodingParams(10).encoded_size(len(enc.data))
    with pytest.raises(errors.MoveAbortError) as info:
        await _register_with(chain, testnet, encoded - 1, enc, enc.blob_id.to_u256())
    assert _where(info.value)[:2] == ("blob", 3)  # EResourceSize
    await _register_with(chain, testnet, encoded, enc, enc.blob_id.to_u256())  # exact fits


async def test_abort_blob_id_not_derived_from_root_hash_and_size(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    enc = _encode(b"z" * 5000)
    encoded = codec.EncodingParams(10).encoded_size(len(enc.data))
    with pytest.raises(errors.MoveAbortError) as info:
        await _register_with(chain, testnet, encoded, enc, enc.blob_id.to_u256() ^ 1)
    assert _where(info.value) == ("blob", 6, "EInvalidBlobId")


async def test_abort_certify_twice(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"twice"))
    await _certify(chain, testnet, blob)
    with pytest.raises(errors.AlreadyCertified) as info:
        await _certify(chain, testnet, blob)
    assert _where(info.value)[:2] == ("blob", 5)


async def test_abort_certify_below_quorum(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"few signers"), deletable=False)
    weights = testnet.member_weights()
    heaviest = max(range(len(weights)), key=lambda i: weights[i])
    second = max((i for i in range(len(weights)) if i != heaviest), key=lambda i: weights[i])
    signers = sorted([heaviest, second])  # 3 + 3 = 6 shards of 10: 18 < 21
    sig, bitmap, msg = testnet.confirm(codec.BlobId.from_u256(blob.blob_id).raw, signers)
    with pytest.raises(errors.QuorumNotReached) as info:
        await chain.certify_blob(blob.id, sig, bitmap, msg)
    assert _where(info.value)[:2] == ("bls_aggregate", 2)
    assert (await chain.blob(blob.id)).certified_epoch is None


async def test_abort_bad_aggregate_signature(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"bad sig"), deletable=False)
    raw = codec.BlobId.from_u256(blob.blob_id).raw
    quorum = _quorum(testnet)
    _, bitmap, msg = testnet.confirm(raw, quorum)
    other_sig, _, _ = testnet.confirm(bytes(32), quorum)  # valid signatures, other message
    with pytest.raises(errors.MoveAbortError) as info:
        await chain.certify_blob(blob.id, other_sig, bitmap, msg)
    assert _where(info.value) == (
        "bls_aggregate",
        1,
        "ESigVerification",
    )


async def test_abort_message_for_another_epoch(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"old epoch"), deletable=False)
    sig, bitmap, msg = testnet.confirm(
        codec.BlobId.from_u256(blob.blob_id).raw, _quorum(testnet), epoch=7
    )
    with pytest.raises(errors.MoveAbortError) as info:
        await chain.certify_blob(blob.id, sig, bitmap, msg)
    assert _where(info.value) == (
        "messages",
        1,
        "EIncorrectEpoch",
    )


async def test_abort_delete_of_a_permanent_blob(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"forever"), deletable=False)
    with pytest.raises(errors.MoveAbortError) as info:
        await chain.delete_blob(blob.id)
    assert _where(info.value) == ("blob", 1, "EBlobNotDeletable")
    assert [b.id for b in await chain.blobs()] == [blob.id]


async def test_abort_extend_of_an_expired_blob(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"short lived"), epochs=1)
    await _certify(chain, testnet, blob)
    testnet.net.advance_epoch()
    with pytest.raises(errors.Expired) as info:
        await chain.extend_blob(blob.id, 1)
    assert _where(info.value)[:2] == ("blob", 2)  # EResourceBounds


async def test_abort_extend_of_an_uncertified_blob(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    blob = await _register(chain, _encode(b"not yet"))
    with pytest.raises(errors.NotCertified):
        await chain.extend_blob(blob.id, 1)


async def test_reject_stale_object_version(chain: WalrusChain, testnet: LocalTestnet) -> None:
    blob = await _register(chain, _encode(b"stale"))
    old = await chain.object_ref(blob.id)
    await chain.set_attributes(blob.id, {"k": "v"})  # the blob gets a new version

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        b = ptb.owned(old)
        ptb.move_call(
            info.package_id,
            "blob",
            "insert_or_update_metadata_pair",
            [b, ptb.string("k"), ptb.string("w")],
        )

    with pytest.raises(errors.TransactionRejected, match="not available for consumption"):
        await chain.execute_ptb(build)
    assert await chain.attributes(blob.id) == {"k": "v"}


async def test_two_processes_of_one_wallet_take_turns(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """A mount and its upload worker sign with one key from two processes: each builds with the
    wallet's largest SUI coin, so without the machine-wide wallet lock the second of two
    concurrent transactions names a gas coin version the first consumed (and on a real network
    two signed at once lock the coin for the epoch)."""
    blobs = [await _register(chain, _encode(f"turns {i}".encode())) for i in range(2)]
    # a second client has its own asyncio thread and lock, as a second process has
    other = WalrusChain(testnet.profile, USER)
    try:
        async with trio.open_nursery() as nursery:
            for client, blob in zip((chain, other), blobs, strict=True):
                for j in range(3):
                    nursery.start_soon(client.set_attributes, blob.id, {f"k{j}": "v"})
    finally:
        await other.close()
    for blob in blobs:
        assert await chain.attributes(blob.id) == {"k0": "v", "k1": "v", "k2": "v"}


async def test_reject_object_of_another_owner(testnet: LocalTestnet, chain: WalrusChain) -> None:
    blob = await _register(chain, _encode(b"mine"))
    ref = await chain.object_ref(blob.id)
    thief = WalrusChain(testnet.profile, OTHER)
    try:

        def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
            ptb.transfer([ptb.owned(ref)], OTHER.address)

        with pytest.raises(errors.TransactionRejected, match="is owned by"):
            await thief.execute_ptb(build)
    finally:
        await thief.close()
    assert [b.id for b in await chain.blobs()] == [blob.id]


async def test_reject_transaction_signed_by_a_non_owner(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    gas = next(o for o in testnet.net.ledger.owned_by(USER.address) if "sui::SUI" in o.type)
    ptb = Ptb()
    ptb.transfer([ptb.gas()], OTHER.address)
    tx = ptb.build(USER.address, ObjectRef(gas.id, gas.version, gas.digest), 1000, 10**7)
    with pytest.raises(errors.TransactionRejected, match="not the transaction sender"):
        await chain.execute_signed(tx, [OTHER.sign_transaction(tx)])
    forged = bytearray(USER.sign_transaction(tx))
    forged[10] ^= 1
    with pytest.raises(errors.TransactionRejected, match="invalid signature"):
        await chain.execute_signed(tx, [bytes(forged)])
    assert (await chain.balances()).sui == 10**12


# -- epochs ----------------------------------------------------------------------------------


async def test_advancing_epochs_expires_blobs_and_storage(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    short = await _register(chain, _encode(b"one epoch"), epochs=1)
    long = await _register(chain, _encode(b"three epochs"), epochs=3)
    storage = await chain.delete_blob(
        (await _register(chain, _encode(b"freed storage"), epochs=2)).id
    )
    assert {b.id for b in await chain.blobs()} == {short.id, long.id}
    testnet.net.advance_epoch()
    assert (await chain.system_info()).epoch == 1
    assert {b.id for b in await chain.blobs()} == {long.id}
    assert {b.id for b in await chain.blobs(valid_only=False)} == {short.id, long.id}
    assert [s.id for s in await chain.storage_resources()] == [storage.id]
    testnet.net.advance_epoch()
    assert await chain.storage_resources() == []
    assert [s.id for s in await chain.storage_resources(valid_only=False)] == [storage.id]
    assert testnet.net.system_state().future_accounting.lookup(0).epoch == 2
    # Registering into the expired Storage is refused by the contract too.
    enc = _encode(b"into expired storage")
    storage_ref = await chain.object_ref(storage.id)

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        system = ptb.shared(testnet.profile.system_object, info.system_initial_version, True)
        blob = ptb.move_call(
            info.package_id,
            "system",
            "register_blob",
            [
                system,
                ptb.owned(storage_ref),
                ptb.u256(enc.blob_id.to_u256()),
                ptb.u256(enc.root_hash),
                ptb.u64(len(enc.data)),
                ptb.u8(1),
                ptb.boolean(True),
                wal,
            ],
        )
        ptb.transfer([blob], USER.address)

    with pytest.raises(errors.Expired) as info:
        await chain.execute_ptb(build, wal_needed=0)
    assert _where(info.value) == ("blob", 2, "EResourceBounds")


async def test_epochs_follow_the_wall_clock(tmp_path: Path) -> None:
    with localnet(tmp_path, [USER], epoch_duration_ms=60_000) as tn:
        start = int(tn.net.ledger.meta("epoch_start_ms") or "0")
        assert tn.net.tick(start + 59_999) == 0
        assert tn.net.tick(start + 60_000) == 1
        assert tn.net.tick(start + 185_000) == 3
        assert tn.net.system_state().used_capacity_size == 0


async def test_capacity_accounting_per_epoch(chain: WalrusChain, testnet: LocalTestnet) -> None:
    enc = _encode(b"capacity")
    await _register(chain, enc, epochs=2)
    encoded = codec.EncodingParams(10).encoded_size(len(enc.data))
    state = testnet.net.system_state()
    assert state.used_capacity_size == encoded
    assert [state.future_accounting.lookup(i).used_capacity for i in range(3)] == [
        encoded,
        encoded,
        0,
    ]
    testnet.net.advance_epoch(2)
    assert testnet.net.system_state().used_capacity_size == 0


# -- errors a user can hit ---------------------------------------------------------------------


async def test_insufficient_wal_is_refused_before_sending(tmp_path: Path) -> None:
    with localnet(tmp_path, [USER], wal=1000) as tn:
        client = WalrusChain(tn.profile, USER)
        try:
            sui = (await client.balances()).sui
            with pytest.raises(errors.InsufficientWal) as info:
                await _register(client, _encode(b"too expensive"))
            assert info.value.have == 1000 and info.value.need > 1000
            assert "WAL" in str(info.value)
            assert (await client.balances()).sui == sui  # nothing was sent: no gas spent
        finally:
            await client.close()


async def test_insufficient_sui_for_gas(tmp_path: Path) -> None:
    with localnet(tmp_path, [USER], sui=1000) as tn:
        client = WalrusChain(tn.profile, USER)
        try:
            with pytest.raises(errors.InsufficientGas, match="gas budget"):
                await _register(client, _encode(b"no gas"))
        finally:
            await client.close()


async def test_endpoint_down_is_chain_unavailable(testnet: LocalTestnet) -> None:
    port = testnet.server.port
    testnet.server.stop()
    dep = testnet.net.deployment
    client = WalrusChain(
        devnet_profile(port, dep.system_id, dep.staking_id, dep.wal_type, dep.exchange_id), USER
    )
    try:
        with trio.fail_after(30), pytest.raises(errors.ChainUnavailable, match="cannot reach"):
            await client.system_info()
    finally:
        await client.close()


async def test_ledger_survives_a_restart(tmp_path: Path) -> None:
    with localnet(tmp_path, [USER]) as tn:
        client = WalrusChain(tn.profile, USER)
        blob = await _register(client, _encode(b"persistent"), attributes={"a": "b"})
        await client.close()
        tn.net.advance_epoch()
    net = Localnet.open(tmp_path / "ledger.db")
    server = LocalnetServer(net)
    port = server.start()
    dep = net.deployment
    client = WalrusChain(
        devnet_profile(port, dep.system_id, dep.staking_id, dep.wal_type, dep.exchange_id), USER
    )
    try:
        assert (await client.system_info()).epoch == 1
        assert [b.id for b in await client.blobs()] == [blob.id]
        assert await client.attributes(blob.id) == {"a": "b"}
    finally:
        await client.close()
        server.stop()
        net.close()


# -- pysui's own high-level builder ------------------------------------------------------------


@pytest.mark.parametrize("budget", [10_000_000, None], ids=["budget", "simulated"])
async def test_pysui_high_level_transaction_runs_on_the_stand_in(
    testnet: LocalTestnet, tmp_path: Path, budget: int | None
) -> None:
    """pysui's AsyncSuiTransaction (GetFunction, BatchGetObjects, GetEpoch, gas coins and,
    without a budget, SimulateTransaction) works unchanged: the stand-in is a Sui endpoint."""
    cfg = PysuiConfiguration.initialize_config(
        in_folder=tmp_path / "pysui", init_groups=[{"name": "t", "make_active": True}]
    )
    cfg.new_group(
        group_name="grpc",
        profile_block=[
            {
                "profile_name": "devnet",
                "url": testnet.profile.grpc_url,
                "network_type": confgroup.NetworkType.LOCAL,
                "make_active": True,
            }
        ],
        key_block=[{"key_string": USER.keystring(), "alias": "user"}],
        active_address_index=0,
        group_protocol=confgroup.GroupProtocol.GRPC,
        make_group_active=True,
    )

    async def run() -> Any:
        # grpclib channels belong to the loop they are made on: make it on the bridge's.
        client = GrpcProtocolClient(pysui_config=cfg)
        client._channel = grpclib.client.Channel("localhost", testnet.server.port, ssl=False)
        try:
            return await build_and_execute(client)
        finally:
            await client.close()

    async def build_and_execute(client: Any) -> Any:
        txn = await client.transaction()
        sui = await txn.split_coin(coin=txn.gas, amounts=[7_000])
        wal = await txn.move_call(
            target=f"{testnet.net.deployment.exchange_pkg}::wal_exchange::exchange_all_for_wal",
            arguments=[testnet.profile.exchange_objects[0], sui],
        )
        await txn.transfer_objects(transfers=[wal], recipient=USER.address)
        return await client.execute(
            command=pysui.ExecuteTransaction(**await txn.build_and_sign(gas_budget=budget))
        )

    chain = WalrusChain(testnet.profile, USER)
    try:
        before = (await chain.balances()).wal
        result = await chain.bridge.run(run())
        assert result.is_ok(), result.result_string
        assert result.result_data.effects.status.success
        assert (await chain.balances()).wal == before + 7_000
    finally:
        await chain.close()


async def test_checkpoints_carry_walrus_events_for_followers(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """Storage nodes follow the chain by checkpoint: genesis is 0 and empty, each transaction
    is one checkpoint, and only the Walrus package's events count."""
    assert await chain.latest_checkpoint() == 0
    assert await chain.checkpoint_events(0, "0x2") == []
    assert await chain.checkpoint_events(1, "0x2") is None
    info = await chain.system_info()
    enc = _encode(b"followed")
    blob = await _register(chain, enc, deletable=False)
    seq = await chain.latest_checkpoint()
    assert seq >= 1
    events = await chain.checkpoint_events(seq, info.type_package)
    assert events is not None
    registered = [e for e in events if e.name == "BlobRegistered"]
    assert len(registered) == 1 and registered[0].tx_digest
    ev = mt.BlobRegistered.from_bcs(registered[0].bcs)
    assert ev.object_id == blob.id and ev.blob_id == enc.blob_id.to_u256()
    assert await chain.checkpoint_events(seq, "0x2") == []  # another package's events: none
    assert await chain.checkpoint_events(seq + 1, info.type_package) is None


async def test_checkpoint_stream_delivers_every_checkpoint_and_epoch_changes(
    chain: WalrusChain, testnet: LocalTestnet
) -> None:
    """Followers wait on SubscribeCheckpoints instead of polling: the stream starts at the tip,
    then yields each checkpoint once, in order, as it is executed; a new epoch is a
    checkpoint of its own carrying the Walrus package's `EpochChangeStart`."""
    info = await chain.system_info()
    tip = await chain.latest_checkpoint()
    stream = chain.checkpoint_stream()
    with trio.fail_after(10):
        assert await anext(stream) == tip
        await _register(chain, _encode(b"streamed"), deletable=False)
        assert await anext(stream) == tip + 1
        testnet.net.advance_epoch(2)  # not through gRPC: the ledger itself wakes the stream
        assert [await anext(stream), await anext(stream)] == [tip + 2, tip + 3]
    await stream.aclose()
    for seq, epoch in ((tip + 2, info.epoch + 1), (tip + 3, info.epoch + 2)):
        events = await chain.checkpoint_events(seq, info.type_package)
        assert events is not None and [e.name for e in events] == ["EpochChangeStart"]
        assert mt.EpochChangeStart.from_bcs(events[0].bcs).epoch == epoch
    assert (await chain.system_info()).epoch == info.epoch + 2


async def test_read_only_client_refuses_to_sign(testnet: LocalTestnet) -> None:
    reader = WalrusChain(testnet.profile, None)
    try:
        assert (await reader.system_info()).n_shards == 10
        with pytest.raises(errors.WalletError, match="read-only"):
            await reader.register_blob(1, 1, 1, 1)
    finally:
        await reader.close()


async def test_malformed_bcs_is_named_not_passed_on_as_a_python_error() -> None:
    """canoser answers a malformed ULEB128 with a NameError of its own; the stand-in says what
    is wrong with the bytes instead (a real full node answers "invalid transaction")."""
    with pytest.raises(Exception) as refused:  # canoser raises bare Exceptions
        bcs.TransactionData.deserialize(b"\xff" * 6 + b"\x01")
    assert bcs_error(refused.value) == "a malformed ULEB128 length"
