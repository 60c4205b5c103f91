"""Fixtures shared by the devnet test modules (each defines its own module-scoped `dn`), and
the tiers: every test is marked by what it needs, so `make test-fast` (`-m "not devnet and
not fuse and not slow"`) runs the unit and in-process tests alone.

  devnet  a devnet's processes (`dn`) or the in-process Sui stand-in over gRPC (`testnet`)
  fuse    a real FUSE mount (its module uses tests/mount_harness.py)
  slow    long on its own (large blobs, `make run` from scratch, 120-node committees)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chain.client import WalrusChain
from tests.devnet_harness import RunningDevnet


@pytest.fixture
async def chain(dn: RunningDevnet) -> AsyncIterator[WalrusChain]:
    """A client with the devnet wallet; closed after the test."""
    c = await dn.chain()
    try:
        yield c
    finally:
        await c.close()


#: fixtures that start a devnet or the Sui stand-in
DEVNET_FIXTURES = {"dn", "healed", "testnet"}


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
