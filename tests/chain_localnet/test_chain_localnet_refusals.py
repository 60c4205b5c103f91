"""What the stand-in refuses, over real gRPC on localhost, as Sui and the Walrus contracts
do: each Move abort mirrored from the contracts (one test each, checked by module and abort
code), and transactions rejected before they run: a gas coin that is also an input, a stale
object version, another owner's object, a signature that is not the sender's.

Each test runs pysui's gRPC client (on its asyncio thread, awaited from trio) against a fresh
ledger.
"""

from __future__ import annotations

from typing import Any

import pytest

import codec
from chain import errors
from chain.client import SystemInfo, WalrusChain
from chain.ptb import ObjectRef, Ptb
from tests.chain_localnet.helpers import (
    OTHER,
    USER,
    Encoded,
    _certify,
    _encode,
    _quorum,
    _register,
    _where,
)
from tests.localnet_harness import LocalTestnet

pytestmark = pytest.mark.trio


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


# -- transactions rejected before they run ---------------------------------------------------


async def test_gas_coin_cannot_also_be_an_input(chain: WalrusChain, testnet: LocalTestnet) -> None:
    gas = next(o for o in testnet.net.ledger.owned_by(USER.address) if "sui::SUI" in o.type)
    ptb = Ptb()
    ref = ObjectRef(gas.id, gas.version, gas.digest)
    ptb.transfer([ptb.owned(ref)], OTHER.address)
    tx = ptb.build(USER.address, ref, 1000, 10**7)
    with pytest.raises(errors.TransactionRejected, match="also an input"):
        await chain.execute_signed(tx, [USER.sign_transaction(tx)])


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
