"""A storage node's identity on disk: `node.json` (name, port, chain endpoint) and `bls.key`.

The launcher writes both at genesis; the node process reads them at start. The key file is
0600 because whoever reads it can sign confirmations in the node's name.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain.bls import BlsKeypair
from chain.client import NetworkProfile, devnet_profile

NODE_CONFIG = "node.json"
BLS_KEY_FILE = "bls.key"


@dataclass(frozen=True)
class NodeConfig:
    """`node.json`: written by the launcher at genesis, read by the node process."""

    name: str
    host: str
    port: int
    chain: dict[str, Any]  # devnet_profile(**chain)
    fsync: bool = True
    #: seconds between full catch-ups (the epoch included) besides those the checkpoint
    #: stream triggers: a safety net, not the way the node learns of changes
    resync_interval: float = 30.0

    @classmethod
    def load(cls, directory: Path) -> NodeConfig:
        """Read `node.json` from `directory`, ignoring keys this version does not know (a
        devnet created by another version keeps starting)."""
        raw = json.loads((directory / NODE_CONFIG).read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, directory: Path) -> None:
        text = json.dumps(self.__dict__, indent=2) + "\n"
        (directory / NODE_CONFIG).write_text(text, encoding="utf-8")

    def profile(self) -> NetworkProfile:
        return devnet_profile(**self.chain)


def load_bls_key(directory: Path) -> BlsKeypair:
    seed = bytes.fromhex((directory / BLS_KEY_FILE).read_text(encoding="ascii").strip())
    return BlsKeypair.from_seed(seed)


def write_bls_key(directory: Path, seed: bytes) -> None:
    """Write the node's BLS seed, hex, readable by its owner only (created 0600, never
    widened afterwards)."""
    path = directory / BLS_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(seed.hex() + "\n")
