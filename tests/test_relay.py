"""The upload relay: blobs and quilts sent once to a relay (the devnet's, run here in
process) are certified and read back byte-exact; the client sends no sliver itself; a tip is
paid and bound to the bytes as the official relay checks it; a relay that lies is caught and
the upload done directly; the relay refuses what the official one refuses, with its codes."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

import codec
from chain.client import WalrusChain
from chain.executor import Build
from chain.ptb import Ptb
from chain.records import SystemInfo
from chain.wallet import Keypair
from tests.devnet_harness import N_SHARDS, RunningDevnet, SharedDevnets
from tests.mount_harness import Mount
from walrusfs.devnet import server
from walrusfs.devnet.relay import Relay, RelaySettings
from walrusfs.store.client import WalrusStore
from walrusfs.store.http1 import Pool
from walrusfs.store.relay import RelayClient, TipConfig, auth_package, upload_path

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N_SHARDS, tmp_path_factory.mktemp("relay-home"))


@dataclass
class Running:
    relay: Relay
    url: str


@asynccontextmanager
async def relay_on(dn: RunningDevnet, tip: TipConfig) -> AsyncIterator[Running]:
    """The devnet's relay on a free port of 127.0.0.1, until the block ends."""
    chain = WalrusChain(dn.spec.profile(), Keypair.generate())
    store = WalrusStore(chain)
    relay = Relay(chain, store, RelaySettings(tip))
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, relay.handle, "127.0.0.1", 0)
            yield Running(relay, f"http://127.0.0.1:{port}")
            nursery.cancel_scope.cancel()
    finally:
        await store.close()
        await chain.close()


@pytest.mark.trio
async def test_blobs_and_quilts_through_the_relay_read_back(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    data = os.urandom(300_000)
    async with relay_on(dn, TipConfig()) as running:
        client = RelayClient(running.url, max_tip=0)
        store = WalrusStore(chain, relay=client)
        try:
            result = await store.store(data, 2)
            quilt = await store.store_quilt(
                [codec.QuiltItem("a", b"first file"), codec.QuiltItem("b", b"second")], 2
            )
            # every sliver went from the relay; the client asked no node anything
            assert sum(store.nodes.counts.values()) == 0
            assert client.sent == len(data) + quilt.quilt.size
            assert running.relay.uploads == 2
            assert store.relay_stats == (0, 0)
        finally:
            await store.close()
    reader = WalrusStore(chain)
    try:
        assert await reader.read(result.blob_id) == data
        got = await reader.read_patch(quilt.patches["b"])
        assert got.data == b"second"
        assert (await chain.blob(result.object_id)).certified_epoch is not None
    finally:
        await reader.close()


@pytest.mark.trio
async def test_a_tip_is_paid_once_and_bound_to_the_bytes(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    tip_to = Keypair.generate().address
    tip = TipConfig(tip_to, 1_000, 100)
    data = os.urandom(40_000)
    expected = tip.tip(codec.EncodingParams(N_SHARDS), len(data))
    assert expected == 1_000 + 161 * 100  # 164,020 encoded bytes: 161 KiB rounded up
    async with relay_on(dn, tip) as running:
        dear = WalrusStore(chain, relay=RelayClient(running.url, max_tip=expected - 1))
        try:  # above the budget: straight to the nodes, nothing paid
            await dear.store(os.urandom(40_000), 2)
            assert dear.relay_stats == (0, 1) and running.relay.uploads == 0
        finally:
            await dear.close()
        store = WalrusStore(chain, relay=RelayClient(running.url, max_tip=expected))
        try:
            result = await store.store(data, 2)
            assert store.relay_stats == (expected, 0) and running.relay.uploads == 1
        finally:
            await store.close()
        balances = dict(
            ((a, c), v) for a, c, v in (await chain.transaction(_last_tip(running))).balance_changes
        )
        assert balances[(tip_to, _sui(balances))] == expected
        # paid in the transaction that registered the blob (it spent our WAL), not one apart
        (wal,) = [c for _, c in balances if c == dn.spec.profile().wal_type]
        assert balances[(chain.address, wal)] < 0

        # a registration made without the tip (an earlier attempt's, continued) pays it in a
        # transaction of its own before the upload
        again = os.urandom(40_000)
        enc = codec.encode(again, N_SHARDS)
        blob, _, _ = await chain.register_blob(
            enc.blob_id.to_u256(), int.from_bytes(enc.root_hash, "little"), len(again), 2
        )
        store = WalrusStore(chain, relay=RelayClient(running.url, max_tip=expected))
        try:
            resumed = await store.store(again, 2, resume=blob.id)
            assert resumed.object_id == blob.id
            assert store.relay_stats == (expected, 0) and running.relay.uploads == 2
        finally:
            await store.close()
        apart = await chain.transaction(_last_tip(running))
        assert [v for a, _, v in apart.balance_changes if a == tip_to] == [expected]
        assert {c for a, c, _ in apart.balance_changes if a == chain.address} == {_sui(balances)}

        # the relay's checks, in the official order, with its codes
        pool = Pool(running.url, 1, 60.0)
        try:
            nonce = os.urandom(32)
            path = upload_path(result.blob_id, result.object_id, None, None)
            rsp = await pool.request("POST", path, data)
            assert rsp.status_code == 400 and "missing the transaction ID" in rsp.text
            paid = _last_tip(running)
            rsp = await pool.request(
                "POST", upload_path(result.blob_id, result.object_id, paid, nonce), data
            )
            assert (rsp.status_code, rsp.text) == (
                401,
                "the provided nonce hash in the ptb is invalid",
            )
            rsp = await pool.request("POST", path + "&color=blue", data)
            assert rsp.status_code == 400 and "unknown field `color`" in rsp.text
            unpaid = await chain.execute_ptb(_self_transfer(chain.address, data, nonce))
            rsp = await pool.request(
                "POST", upload_path(result.blob_id, result.object_id, unpaid.digest, nonce), data
            )
            assert (rsp.status_code, rsp.text) == (
                402,
                "no tip was transferred to the proxy account",
            )
        finally:
            await pool.aclose()


@pytest.mark.parametrize("lie", ["signature", "blob"])
@pytest.mark.trio
async def test_a_lying_relay_is_caught_and_the_upload_done_directly(
    dn: RunningDevnet, chain: WalrusChain, lie: str
) -> None:
    data = os.urandom(100_000)
    async with relay_on(dn, TipConfig()) as running:
        running.relay.settings = RelaySettings(TipConfig(), lie=lie)
        store = WalrusStore(chain, relay=RelayClient(running.url, max_tip=0))
        try:
            result = await store.store(data, 2)
            assert running.relay.uploads == 1  # it answered, and was not believed
            assert store.relay_stats == (0, 1)
            # then directly: the client's own confirmations (the nodes had the slivers from
            # the relay already, so few or none were sent again)
            assert store.nodes.counts["confirmation"] > 0
        finally:
            await store.close()
    reader = WalrusStore(chain)
    try:
        assert await reader.read(result.blob_id) == data
    finally:
        await reader.close()


def _sui(balances: dict[tuple[str, str], int]) -> str:
    return next(c for _, c in balances if c.endswith("::sui::SUI"))


def _self_transfer(address: str, data: bytes, nonce: bytes) -> Build:
    """A PTB with the auth package of `data` as input 0 that pays nobody else."""

    def build(ptb: Ptb, info: SystemInfo, wal: Any) -> None:
        ptb.pure(auth_package(data, nonce))
        (coin,) = ptb.split_coins(ptb.gas(), [ptb.u64(1)])
        ptb.transfer([coin], address)

    return build


def _last_tip(running: Running) -> str:
    assert running.relay.last_tx is not None
    return running.relay.last_tx


@pytest.mark.trio
async def test_auth_package_layout() -> None:
    """sha256(blob) || sha256(nonce) || u64 LE length: 72 bytes (`HashedAuthPackage`)."""
    package = auth_package(b"abc", b"\x01" * 32)
    assert len(package) == 72
    assert package[:32] == hashlib.sha256(b"abc").digest()
    assert package[32:64] == hashlib.sha256(b"\x01" * 32).digest()
    assert package[64:] == (3).to_bytes(8, "little")
    blob_id = codec.BlobId(bytes(32))
    nonce = base64.urlsafe_b64encode(b"\x02" * 32).rstrip(b"=").decode()
    assert upload_path(blob_id, None, "T", b"\x02" * 32) == (
        f"/v1/blob-upload-relay?blob_id={blob_id}&tx_id=T&nonce={nonce}&encoding_type=RS2"
    )


def test_a_mount_uploads_through_the_relay(dn: RunningDevnet, tmp_path: Path) -> None:
    """`walrusfs mount --upload-relay`: the upload worker sends each blob and quilt once to
    the devnet's relay; what it certified is on the nodes, byte-exact."""
    assert dn.spec.relay_url is not None
    m = Mount(dn, tmp_path / "mnt", "relayed")
    m.mount("--public", "--upload-relay", dn.spec.relay_url)
    try:
        big, small = os.urandom(3_000_000), os.urandom(2_000)
        (m.path / "big").write_bytes(big)
        (m.path / "small").write_bytes(small)
        m.sync()
        log = dn.devnet.log_path("relay").read_text()
        chunks = os.getxattr(m.path / "big", "user.walrus.blob_id").decode().split()
        patch = os.getxattr(m.path / "small", "user.walrus.blob_id").decode()
        quilt_id = str(codec.QuiltPatchId.parse(patch).quilt_id)
        assert all(f"certificate of {b}" in log for b in [*chunks, quilt_id])
        stored = b""
        for i, blob_id in enumerate(chunks):  # the file's chunks, from the nodes
            back = tmp_path / f"back-{i}"
            dn.cli("blob", "read", blob_id, "-o", str(back), "--no-cache")
            stored += back.read_bytes()
        assert stored == big
        m.check_log()
    finally:
        m.teardown()
