"""The Move functions the stand-in executes: Walrus `system`, `blob`, `metadata`,
`storage_resource`, `storage_pool`, `wal_exchange` and `0x2::coin`, re-implemented from the
Move source, one module here per Move module (the System's pool entry points are
`storage_pool` and `pool_capacity`, `storage_pool.move`'s own public functions `pool_blobs`).

Every `assert!` on the path of these functions is mirrored with its module and abort code
(contracts/walrus/sources/system/*.move at the version the research note names); the function
names and argument orders are the Move ones, so a PTB built for the real chain runs here
unchanged. Where the Move code calls into the Sui framework the framework's aborts are used
(`sui::balance::split` aborts with ENotEnough = 2 when a coin is short).
"""

from __future__ import annotations

from chain.localnet.moves import (
    blob,
    coin,
    metadata,
    pool_blobs,
    pool_capacity,
    storage_pool,
    storage_resource,
    system,
    wal_exchange,
)
from chain.localnet.moves.deployment import Deployment
from chain.localnet.moves.registry import FunctionKey, Registry
from chain.localnet.txcontext import MoveFunction


def build_functions(dep: Deployment) -> dict[FunctionKey, MoveFunction]:
    """The dispatch table: (package, module, function) -> implementation."""
    registry = Registry(dep)
    for module in (
        system,
        storage_pool,
        pool_capacity,
        pool_blobs,
        blob,
        metadata,
        storage_resource,
        wal_exchange,
        coin,
    ):
        module.register(registry)
    return registry.table
