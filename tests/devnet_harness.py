"""A devnet of real processes for tests, and the raw storage-node protocol spoken with httpx.

The flow functions here are deliberately the bare protocol (walrus-protocol.md sections 9-10):
register on chain, PUT metadata then slivers to the node holding each shard, GET confirmations,
aggregate, certify. The product's client (walrusfs.store) is tested separately.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

import codec
from chain import move_types as mt
from chain.bls import aggregate, aggregate_verify, g1_compress
from chain.client import CommitteeMember, SystemInfo, WalrusChain
from chain.wallet import Wallet
from walrusfs.devnet import faucet
from walrusfs.devnet.launcher import Devnet
from walrusfs.devnet.layout import DevnetSpec

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
N_SHARDS = 10  # 4 nodes hold shards [0,1] [2,3,4] [5,6] [7,8,9]; quorum 7, k_p 4


def walrusfs(
    home: Path, *args: str, check: bool = True, timeout: float = 120, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """The CLI in `home`; the caller's own network or wallet choice never leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("WALRUSFS_NETWORK", "WALRUSFS_WALLET")}
    env.update(WALRUSFS_HOME=str(home), PYTHONPATH=str(ROOT), **env_vars)
    proc = subprocess.run(
        [sys.executable, "-m", "walrusfs.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"walrusfs {' '.join(args)} -> {proc.returncode}\n{proc.stderr}")
    return proc


@dataclass
class RunningDevnet:
    """A devnet and the WALRUSFS_HOME the CLI runs in. `wallet`: the home's own account
    (named in its config.toml, funded with `walrusfs devnet fund`) on a devnet shared by
    several modules; None: the devnet's own wallet."""

    home: Path
    devnet: Devnet
    spec: DevnetSpec
    wallet: Path | None = None

    @property
    def wallet_config(self) -> Path:
        """The `client.yaml` the CLI in this home signs with."""
        return self.wallet if self.wallet is not None else self.devnet.wallet().config_path

    def sibling(self, home: Path) -> RunningDevnet:
        """Another WALRUSFS_HOME on the same network and account (another machine of the same
        user): the devnet's directory shared, the config copied; nothing of any volume."""
        (home / "data").mkdir(parents=True)
        os.symlink(self.home / "data" / "devnet", home / "data" / "devnet")
        conf = self.home / "config" / "config.toml"
        if conf.exists():
            (home / "config").mkdir()
            (home / "config" / "config.toml").write_text(conf.read_text())
        return RunningDevnet(home, self.devnet, self.spec, self.wallet)

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return walrusfs(self.home, *args, check=check, timeout=timeout)

    async def chain(self) -> WalrusChain:
        wallet = self.devnet.wallet() if self.wallet is None else Wallet.load(self.wallet)
        return WalrusChain(self.spec.profile(), wallet.active)

    def on_chain(self, fn: Callable[[WalrusChain], Awaitable[T]]) -> T:
        """`fn(chain)` run to completion from synchronous test code."""

        async def go() -> T:
            chain = await self.chain()
            try:
                return await fn(chain)
            finally:
                await chain.close()

        return trio.run(go)


@dataclass
class Node:
    index: int  # committee member index (bit of the signers bitmap)
    member: CommitteeMember

    @property
    def url(self) -> str:
        return f"http://{self.member.network_address}"

    @property
    def port(self) -> int:
        return int(self.member.network_address.rsplit(":", 1)[1])

    def devnet_index(self, dn: RunningDevnet) -> int:
        """The `node-<i>` this member is (for `walrusfs devnet node ... I`)."""
        return dn.spec.node_ports.index(self.port)


def start_devnet(
    home: Path,
    n_shards: int = N_SHARDS,
    *,
    n_nodes: int | None = None,
    processes: int | None = None,
    stakes: list[int] | None = None,
) -> Generator[RunningDevnet, None, None]:
    """`walrusfs devnet up` in `home` for a module's tests; every process stopped after.
    `n_nodes`, `processes`, `stakes`: a larger committee served by a few processes (the
    launcher's API: the CLI's `devnet up` takes only --nodes and --n-shards)."""
    devnet = Devnet(home / "data")
    try:
        if n_nodes is None:
            walrusfs(home, "devnet", "up", "--n-shards", str(n_shards))
        else:
            devnet.up(n_nodes, n_shards, processes=processes, stakes=stakes)
        yield RunningDevnet(home, devnet, devnet.spec())
    finally:
        devnet.down()


class SharedDevnets:
    """One devnet per shard count for the test modules that can share one (a pytest-xdist
    worker's session: `devnets` in conftest.py), each module on its own funded account.

    A module shares only if it leaves the devnet as it found it: no epoch advanced, every
    fault healed (`heal_all`). Its own account keeps the modules apart on chain: volume names,
    checkpoints, writer leases and balances are per address, as for two users of Walrus.
    """

    #: what each module's account gets from the devnet's wallet (genesis holds 10,000 each)
    FUNDS = 1_000 * 10**9

    def __init__(self, base: Path) -> None:
        self.base = base
        self.running: dict[int, RunningDevnet] = {}
        self._stops: list[Generator[RunningDevnet, None, None]] = []

    def account(self, n_shards: int, home: Path) -> RunningDevnet:
        """A new home on the shared devnet of `n_shards` shards, with its own wallet, funded."""
        shared = self.running.get(n_shards)
        if shared is None:
            started = start_devnet(self.base / f"shards-{n_shards}", n_shards)
            shared = self.running[n_shards] = next(started)
            self._stops.append(started)
        (home / "data").mkdir(parents=True)
        os.symlink(shared.home / "data" / "devnet", home / "data" / "devnet")
        wallet = Wallet.create(
            home / "wallet", env_alias="devnet", rpc=shared.spec.profile().grpc_url
        )
        (home / "config").mkdir()
        (home / "config" / "config.toml").write_text(f'wallet = "{wallet.config_path}"\n')
        trio.run(
            lambda: faucet.fund(
                shared.devnet, wallet.active_address, mist=self.FUNDS, frost=self.FUNDS
            )
        )
        return RunningDevnet(home, shared.devnet, shared.spec, wallet.config_path)

    def close(self) -> None:
        """Stop every devnet started."""
        for started in self._stops:
            started.close()  # the generator's finally: `devnet down`


def node_requests(dn: RunningDevnet) -> dict[str, dict[str, int]]:
    """Node name -> requests it answered by handler (the devnet's `/devnet/requests`)."""
    out = {}
    with httpx.Client(timeout=10) as client:
        for i, port in enumerate(dn.spec.node_ports):
            rsp = client.get(f"http://127.0.0.1:{port}/devnet/requests")
            rsp.raise_for_status()
            out[f"node-{i}"] = dict(rsp.json()["success"]["data"])
    return out


def heal_all(dn: RunningDevnet) -> None:
    """All nodes running, no test switches: how every fault-drill test must leave the devnet."""
    for i in range(dn.spec.n_nodes):
        dn.devnet.set_faults(i)
        if dn.devnet.pid(f"node-{i}") is None:
            dn.devnet.node_start(i)


async def nodes(chain: WalrusChain) -> tuple[SystemInfo, list[Node]]:
    """The committee with each node's member index (order of `SystemInfo.committee_keys`)."""
    info = await chain.system_info()
    by_key = {m.public_key: i for i, m in enumerate(info.committee_keys)}
    members = await chain.committee()
    return info, sorted((Node(by_key[m.public_key], m) for m in members), key=lambda n: n.index)


def node_of_shard(all_nodes: list[Node], shard: int) -> Node:
    return next(n for n in all_nodes if shard in n.member.shards)


async def register(
    chain: WalrusChain, enc: codec.EncodedBlob, epochs: int = 2, deletable: bool = False
) -> mt.Blob:
    blob, _, _ = await chain.register_blob(
        enc.blob_id.to_u256(),
        int.from_bytes(enc.root_hash, "little"),
        enc.unencoded_length,
        epochs,
        deletable=deletable,
    )
    return blob


async def upload(
    client: httpx.AsyncClient, all_nodes: list[Node], enc: codec.EncodedBlob, skip: set[int]
) -> None:
    """PUT metadata and both slivers of each pair to the node holding its shard."""
    for node in all_nodes:
        if node.index in skip:
            continue
        rsp = await client.put(
            f"{node.url}/v1/blobs/{enc.blob_id}/metadata", content=enc.metadata_bcs
        )
        assert rsp.status_code in (200, 201), rsp.text
        for shard in node.member.shards:
            pair = enc.pair_for_shard(shard)
            for sliver in (pair.primary, pair.secondary):
                rsp = await client.put(
                    f"{node.url}/v1/blobs/{enc.blob_id}/slivers/{pair.pair_index}/{sliver.axis}",
                    content=sliver.bcs,
                )
                assert rsp.status_code in (200, 201), rsp.text


async def confirmations(
    client: httpx.AsyncClient,
    all_nodes: list[Node],
    blob_id: codec.BlobId,
    object_id: str | None = None,
) -> dict[int, tuple[bytes, bytes]]:
    """member index -> (message, signature) from every node that answers, each verified."""
    out = {}
    for node in all_nodes:
        path = "permanent" if object_id is None else f"deletable/{object_id}"
        try:
            rsp = await client.get(f"{node.url}/v1/blobs/{blob_id}/confirmation/{path}")
        except httpx.TransportError:
            continue
        if rsp.status_code != 200:
            continue
        signed = rsp.json()["success"]["data"]["signed"]
        message = base64.b64decode(signed["serializedMessage"])
        signature = base64.b64decode(signed["signature"])
        pubkey = g1_compress(node.member.public_key)
        assert aggregate_verify(signature, [pubkey], message), f"bad signature from {node.index}"
        out[node.index] = (message, signature)
    return out


def certificate(
    info: SystemInfo, confirmed: dict[int, tuple[bytes, bytes]]
) -> tuple[bytes, bytes, bytes] | None:
    """(aggregate signature, bitmap, message) if the signers' shards reach 3w >= 2n+1."""
    weight = sum(info.committee_keys[i].weight for i in confirmed)
    if 3 * weight < 2 * info.n_shards + 1:
        return None
    messages = {m for m, _ in confirmed.values()}
    assert len(messages) == 1, "nodes signed different messages"
    bitmap = bytearray((len(info.committee_keys) + 7) // 8)
    for i in confirmed:
        bitmap[i // 8] |= 1 << (i % 8)
    return aggregate([s for _, s in confirmed.values()]), bytes(bitmap), messages.pop()


async def get_sliver(
    client: httpx.AsyncClient, node: Node, blob_id: codec.BlobId, pair: int, axis: str
) -> httpx.Response:
    return await client.get(f"{node.url}/v1/blobs/{blob_id}/slivers/{pair}/{axis}")


def error_reason(rsp: httpx.Response) -> str:
    body: dict[str, Any] = rsp.json()
    return str(body["error"]["details"][0]["reason"])
