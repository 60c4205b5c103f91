"""Epochs and checkpoints on the stand-in, over real gRPC on localhost: advancing epochs
expires blobs and Storage, epochs follow the wall clock, capacity is accounted per epoch, and
checkpoints carry the Walrus package's events to followers, each once and in order on the
checkpoint stream.

Each test runs pysui's gRPC client (on its asyncio thread, awaited from trio) against a fresh
ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import codec
from chain import errors
from chain import move_types as mt
from chain.client import SystemInfo, WalrusChain
from chain.ptb import Ptb
from tests.chain_localnet.helpers import USER, _encode, _register, _where
from tests.localnet_harness import LocalTestnet, localnet

pytestmark = pytest.mark.trio


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


# -- checkpoints ------------------------------------------------------------------------------


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
