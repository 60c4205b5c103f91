"""The store/read client at mainnet's shard count (1000) on a devnet of real processes:
large blobs, range reads that touch only their rows, a 500-file quilt."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

import codec
from cache.ranges import RangeCache
from cache.slivers import SliverCache
from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, SharedDevnets
from walrusfs.store.client import WalrusStore

pytestmark = [pytest.mark.trio, pytest.mark.timeout(900)]

N = 1000


@pytest.fixture(scope="module")
def dn(devnets: SharedDevnets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDevnet]:
    yield devnets.account(N, tmp_path_factory.mktemp("large-home"))


@pytest.mark.parametrize("mib", [64, 256])
async def test_large_round_trip(chain: WalrusChain, tmp_path: Path, mib: int) -> None:
    data = os.urandom(mib << 20)
    store = WalrusStore(chain, grace=60.0)
    try:
        result = await store.store(data, epochs=1)
        assert result.blob_id == codec.blob_id_of(data, N)
        assert await store.read(result.blob_id) == data
    finally:
        await store.close()
    if mib != 64:
        return
    # A 4 KiB range of the 64 MiB blob: at most 2 slivers; again: no request at all.
    reader = WalrusStore(
        chain, cache=SliverCache(tmp_path / "c", 1 << 30), ranges=RangeCache(1 << 20)
    )
    try:
        offset = 40_000_000
        assert await reader.read(result.blob_id, offset, 4096) == data[offset : offset + 4096]
        assert reader.nodes.counts["get_sliver"] <= 2
        before = sum(reader.nodes.counts.values())
        assert await reader.read(result.blob_id, offset, 4096) == data[offset : offset + 4096]
        assert sum(reader.nodes.counts.values()) == before
    finally:
        await reader.close()


async def test_quilt_of_500_files(chain: WalrusChain) -> None:
    rng = random.Random(5)
    items = [
        codec.QuiltItem(f"dir/file-{i:04}.txt", rng.randbytes(rng.randrange(0, 3000)))
        for i in range(500)
    ]
    store = WalrusStore(chain, grace=60.0)
    try:
        result = await store.store_quilt(items, epochs=1)
        assert len(result.patches) == 500
        for item in items:
            patch = await store.read_patch(result.patches[item.identifier], use_cache=False)
            assert (patch.identifier, patch.data) == (item.identifier, item.data)
    finally:
        await store.close()
