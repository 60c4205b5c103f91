"""The client against a committee the size of Walrus mainnet's: 120 storage-node identities
(each its own BLS key, network key, stake, shards, node ID and port) over 1000 shards, served
by 4 processes. Store, certify (a signers bitmap of 15 bytes), status, read, a mount round
trip, and reads while an epoch change moves a quarter of the shards, counted per committee.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

import codec
from chain.client import WalrusChain
from codec.params import EncodingParams
from tests.devnet_harness import RunningDevnet, heal_all, node_requests, start_devnet
from tests.mount_harness import Mount
from walrusfs.store.client import WalrusStore
from walrusfs.store.nodes import ActiveCommittees

N_NODES = 120
N_SHARDS = 1000
PROCESSES = 4
#: stakes of 2..6 units: D'Hondt gives the nodes 4 to 13 shards
STAKES = [(2 + (i * 7) % 5) * 10**15 for i in range(N_NODES)]
LEAVING = range(0, 120, 4)  # 30 nodes unstake in the epoch change: ~250 shards move

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield from start_devnet(
        tmp_path_factory.mktemp("real-home"),
        N_SHARDS,
        n_nodes=N_NODES,
        processes=PROCESSES,
        stakes=STAKES,
    )


@pytest.fixture
async def chain(dn: RunningDevnet) -> AsyncIterator[WalrusChain]:
    chain = await dn.chain()
    yield chain
    await chain.close()


@pytest.mark.trio
async def test_a_committee_of_120_identities_in_4_processes(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    committees = await ActiveCommittees.load(chain)  # pools read in batches of 50
    nodes = committees.current.nodes
    assert len(nodes) == N_NODES and committees.epoch == 0
    for attribute in ("public_key", "network_key", "node_id", "url", "name"):
        assert len({getattr(n, attribute) for n in nodes}) == N_NODES, attribute
    assert all(len(n.network_key) == 33 for n in nodes)  # compressed P-256, as on chain
    assert sorted(s for n in nodes for s in n.shards) == list(range(N_SHARDS))
    # shards follow stake (D'Hondt): more stake never means fewer shards
    stake = {f"node-{i}": s for i, s in enumerate(STAKES)}
    levels: dict[int, list[int]] = {}
    for n in nodes:
        levels.setdefault(stake[n.name], []).append(len(n.shards))
    ordered = [levels[s] for s in sorted(levels)]
    assert len(ordered) == 5
    assert all(max(low) <= min(high) for low, high in itertools.pairwise(ordered))
    assert max(ordered[0]) < min(ordered[-1])
    pids = {dn.devnet.pid(f"node-{i}") for i in range(N_NODES)}
    assert len(pids) == PROCESSES and None not in pids


@pytest.mark.trio
async def test_store_certify_status_and_read(dn: RunningDevnet, chain: WalrusChain) -> None:
    data = os.urandom(1_500_000)
    store = WalrusStore(chain)
    try:
        result = await store.store(data, 3, deletable=False)
        committee = await store.committee()
        weight = sum(n.weight for n in committee.nodes if n.name in result.signers)
        assert weight >= committee.quorum
        # the certificate's bitmap covers 120 members (15 bytes): the chain accepted it
        blob = await chain.blob(result.object_id)
        assert blob.certified_epoch == 0
        assert len(store.nodes._pools) == N_NODES  # one connection pool per node
    finally:
        await store.close()
    reader = WalrusStore(chain)
    try:
        status = await reader.blob_status(result.blob_id)
        assert status is not None and status.kind == "permanent"
        assert status.is_certified and status.initial_certified_epoch == 0
        assert await reader.read(result.blob_id) == data
        assert await reader.read(result.blob_id, 777_777, 5_000) == data[777_777:782_777]
        assert reader.nodes.counts["get_metadata"] == 1
    finally:
        await reader.close()


def test_a_mount_round_trip(dn: RunningDevnet, tmp_path: Path) -> None:
    m = Mount(dn, tmp_path / "mnt", "big-committee")
    files = {"small.txt": b"hello walrus\n" * 50, "blob.bin": os.urandom(2_500_000)}
    files.update({f"dir/f{i}": os.urandom(3_000 + i) for i in range(5)})
    try:
        m.mount()
        (m.path / "dir").mkdir()
        for name, data in files.items():
            (m.path / name).write_bytes(data)
        m.sync()
        m.umount()
        m.drop_cache()
        m.mount()
        for name, data in files.items():
            assert (m.path / name).read_bytes() == data, name
    finally:
        m.teardown()


@pytest.mark.trio
async def test_reads_during_an_epoch_change_that_moves_shards(
    dn: RunningDevnet, chain: WalrusChain
) -> None:
    data = os.urandom(1_000_000)
    store = WalrusStore(chain)
    try:
        old = await store.store(data, 5, deletable=False)
    finally:
        await store.close()
    before = await ActiveCommittees.load(chain)
    leaving = {f"node-{i}" for i in LEAVING}
    try:
        for i in range(N_NODES):  # the new holders do not take over yet
            dn.devnet.set_faults(i, sync_paused=True)
        for i in LEAVING:
            dn.devnet.set_stake(i, 0)
        dn.devnet.advance_epoch(1)
        committees = await ActiveCommittees.load(chain)
        previous, current = committees.previous, committees.current
        assert committees.is_change_in_progress() and previous is not None
        assert {n.name for n in previous.nodes} == {n.name for n in before.current.nodes}
        assert len(current.nodes) == N_NODES - len(LEAVING)
        assert not leaving & {n.name for n in current.nodes}
        moved = {s for s in range(N_SHARDS) if previous.holder(s).name != current.holder(s).name}
        assert len(moved) >= 200

        reader = WalrusStore(chain)
        reader.nodes.trace = []
        served_before = node_requests(dn)
        try:
            assert await reader.read(old.blob_id) == data
            got = _sliver_reads(reader.nodes.trace, old.blob_id)
            on_moved = [(node, shard) for node, shard in got if shard in moved]
            # every sliver from the previous committee; many of them on shards that moved,
            # from the nodes that are leaving
            assert all(node == previous.holder(shard).name for node, shard in got)
            assert len(on_moved) >= 20, f"{len(on_moved)} reads on moved shards"
            served = node_requests(dn)
            by_leavers = sum(
                served[n].get("GET get_sliver", 0) - served_before[n].get("GET get_sliver", 0)
                for n in leaving
            )
            to_leavers = sum(node in leaving for node, _ in got)
            assert 0 < by_leavers <= to_leavers  # the nodes that left served them
            # writes go to the new committee
            written = await reader.store(os.urandom(200_000), 2)
            assert set(written.signers) <= {n.name for n in current.nodes}
        finally:
            await reader.close()
    finally:
        heal_all(dn)
    deadline = time.monotonic() + 180
    while (await ActiveCommittees.load(chain)).is_change_in_progress():
        assert time.monotonic() < deadline, "the epoch change never finished"
        await trio.sleep(1.0)
    after = WalrusStore(chain)
    after.nodes.trace = []
    try:
        assert await after.read(old.blob_id) == data
        got = _sliver_reads(after.nodes.trace, old.blob_id)
        assert all(node == current.holder(shard).name for node, shard in got)
        assert sum(shard in moved for _, shard in got) >= 20
    finally:
        await after.close()


def _sliver_reads(
    trace: list[tuple[str, str, str]], blob_id: codec.BlobId
) -> list[tuple[str, int]]:
    params = EncodingParams(N_SHARDS)
    out = []
    for kind, node, path in trace:
        if kind == "get_sliver" and str(blob_id) in path:
            pair = int(path.split("/")[5])
            out.append((node, params.shard_for_pair(blob_id.raw, pair)))
    return out
