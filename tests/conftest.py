"""Fixtures shared by the devnet test modules, and the tiers: every test is marked by what it
needs, so `make test-fast` (`-m "not devnet and not fuse and not slow"`) runs the unit and
in-process tests alone.

  devnet  a devnet's processes (`dn`) or the in-process Sui stand-in over gRPC (`testnet`)
  fuse    a real FUSE mount (its module uses tests/mount_harness.py)
  slow    long on its own (large blobs, `make run` from scratch, 120-node committees)

Each devnet module defines a module-scoped `dn`. A module that leaves the devnet as it found
it (no epoch advanced, every fault healed) takes an account on the worker's shared devnet of
its shard count (`devnets.account`); one that advances epochs, kills the chain or changes
stakes starts its own (`start_devnet`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet, SharedDevnets


@pytest.fixture(scope="session")
def devnets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedDevnets]:
    """The devnets this worker's modules share, one per shard count, started on first use."""
    shared = SharedDevnets(tmp_path_factory.mktemp("shared-devnets"))
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
async def chain(dn: RunningDevnet) -> AsyncIterator[WalrusChain]:
    """A client with the module's wallet; closed after the test."""
    c = await dn.chain()
    try:
        yield c
    finally:
        await c.close()


#: fixtures that start a devnet or the Sui stand-in
DEVNET_FIXTURES = {"dn", "healed", "testnet", "devnets"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & DEVNET_FIXTURES:
            item.add_marker(pytest.mark.devnet)
        if isinstance(item, pytest.Function) and _mounts(item.module):
            item.add_marker(pytest.mark.fuse)


def _mounts(module: object) -> bool:
    """Whether a test module mounts: it took something from tests/mount_harness.py."""
    return any(
        getattr(value, "__module__", None) == "tests.mount_harness"
        for value in vars(module).values()
    )
