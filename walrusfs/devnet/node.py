"""The storage-node process: `python -m walrusfs.devnet.node DIR [DIR ...]`.

One process serves one or more node identities (a directory each, written by the launcher:
`node.json`, `bls.key`, the disk, `faults.json`). Each identity is a `DevnetNode`: its parts
(`node_state.py`), a chain follower (`follower.py`, with the shard moves of an epoch change in
`shard_sync.py`) and the REST API (`api.py`) served by `server.py` on its own port. The
process shares one chain client and one checkpoint subscription among its identities
(`shared.py`), and exits when SIGTERM/SIGINT arrives or its directories are deleted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from chain.client import WalrusChain
from walrusfs.devnet import server
from walrusfs.devnet.api import NodeApi
from walrusfs.devnet.follower import ChainFollower, follow_checkpoints, resync_periodically
from walrusfs.devnet.node_config import NODE_CONFIG, NodeConfig, load_bls_key
from walrusfs.devnet.node_state import NodeParts
from walrusfs.devnet.shared import SharedChain

log = logging.getLogger("walrusfs.devnet.node")


@dataclass
class DevnetNode:
    """One node identity of the devnet as the process runs it."""

    parts: NodeParts
    follower: ChainFollower
    api: NodeApi

    @classmethod
    def open(cls, directory: Path, config: NodeConfig, chain: SharedChain) -> DevnetNode:
        parts = NodeParts.open(directory, config, load_bls_key(directory), chain)
        follower = ChainFollower(parts)
        return cls(parts, follower, NodeApi(parts, follower))

    @property
    def config(self) -> NodeConfig:
        return self.parts.config


def quiet_pysui() -> None:
    """pysui logs every RPC at INFO and every NOT_FOUND with a traceback at ERROR; a node
    polling the chain would fill its log. Our own errors are logged where they are handled."""
    logging.getLogger("pgrpc_client").setLevel(logging.CRITICAL)


async def serve(directories: list[Path], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Run the node identities in `directories` (one port, key and disk each) until cancelled
    or SIGTERM/SIGINT: one chain client and one checkpoint subscription for all of them
    (`SharedChain`), each identity catching up at every checkpoint.

    Args:
        directories: node directories as the launcher wrote them.
        task_status: reports the `DevnetNode` (a list of them for several directories) once
            every identity has caught up with the chain and listens.
    """
    configs = [NodeConfig.load(d) for d in directories]
    shared = SharedChain(WalrusChain(configs[0].profile(), None))
    nodes = [DevnetNode.open(d, c, shared) for d, c in zip(directories, configs, strict=True)]
    followers = [node.follower for node in nodes]
    try:
        async with trio.open_nursery() as nursery:
            for follower in followers:
                follower.tasks = nursery
            async with trio.open_nursery() as first:
                for follower in followers:
                    first.start_soon(follower.first_sync)
            for node in nodes:
                config = node.config
                await nursery.start(server.serve, node.api.handle, config.host, config.port)
                shards = sorted(node.parts.view.shards)
                log.info(
                    "%s serving on http://%s:%d, shards %s",
                    config.name,
                    config.host,
                    config.port,
                    shards,
                )
            nursery.start_soon(follow_checkpoints, followers, shared)
            nursery.start_soon(resync_periodically, followers, configs[0].resync_interval)
            nursery.start_soon(_watch_directories, directories)
            task_status.started(nodes[0] if len(nodes) == 1 else nodes)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        for node in nodes:
            node.parts.store.close()
        await shared.close()


async def _watch_directories(directories: list[Path]) -> None:
    """Exit when the devnet is destroyed under us (or a test's temp dir removed): an orphan
    must not keep ports and a chain subscription forever."""
    while all((d / NODE_CONFIG).exists() for d in directories):
        await trio.sleep(1.0)
    log.error("a node directory of %s vanished: exiting", directories[0].parent)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="walrusfs devnet storage node(s)")
    parser.add_argument("directories", type=Path, nargs="+", help="one per node identity")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    quiet_pysui()
    trio.run(serve, args.directories)


if __name__ == "__main__":
    main()
