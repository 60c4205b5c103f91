"""What a client of the stand-in meets beyond the contracts, over real gRPC on localhost:
too little WAL or SUI refused before anything is sent, an endpoint down, a ledger that
outlives its server, two processes of one wallet taking turns, pysui's own high-level
builder, a read-only client, and malformed BCS named for what it is.

Each test runs pysui's gRPC client (on its asyncio thread, awaited from trio) against a fresh
ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpclib.client
import pysui
import pytest
import trio
from pysui import GrpcProtocolClient, PysuiConfiguration
from pysui.sui.sui_bcs import bcs
from pysui.sui.sui_common.config import confgroup

from chain import errors
from chain.client import WalrusChain, devnet_profile
from chain.localnet.errors import bcs_error
from chain.localnet.node import Localnet
from chain.localnet.server import LocalnetServer
from tests.chain_localnet.helpers import USER, _encode, _register
from tests.localnet_harness import LocalTestnet, localnet

pytestmark = pytest.mark.trio


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


# -- one wallet, two processes ----------------------------------------------------------------


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


# -- a client that cannot sign, bytes that are not BCS ----------------------------------------


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
