"""The stand-in every test of this package runs against: a fresh ledger with the two funded
accounts of `helpers.py`, served over gRPC on localhost, and a chain client of USER on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chain.client import WalrusChain
from tests.chain_localnet.helpers import OTHER, USER
from tests.localnet_harness import LocalTestnet, localnet


@pytest.fixture
def testnet(tmp_path: Path) -> Iterator[LocalTestnet]:
    with localnet(tmp_path, [USER, OTHER]) as tn:
        yield tn


@pytest.fixture
async def chain(testnet: LocalTestnet) -> AsyncIterator[WalrusChain]:
    client = WalrusChain(testnet.profile, USER)
    yield client
    await client.close()
