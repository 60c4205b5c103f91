"""Fixtures shared by the devnet test modules (each defines its own module-scoped `dn`)."""

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
