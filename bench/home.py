"""A WALRUSFS_HOME for the benchmarks: its own devnet, and the CLI run in it (the same
interpreter and tree as the benchmark, nothing of the caller's network or wallet choice)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class WalrusfsHome:
    """`path` as WALRUSFS_HOME, with a devnet of `n_shards` shards brought up in it."""

    def __init__(self, path: Path, n_shards: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, WALRUSFS_HOME=str(path), PYTHONPATH=str(ROOT))
        for name in ("WALRUSFS_NETWORK", "WALRUSFS_WALLET"):
            self.env.pop(name, None)
        self.cli("devnet", "up", "--n-shards", str(n_shards))

    def cli(self, *args: str) -> None:
        """`walrusfs ARGS` in this home; its output is not kept.

        Raises:
            subprocess.CalledProcessError: the command failed (its stderr was shown).
        """
        subprocess.run(
            [sys.executable, "-m", "walrusfs.cli", *args],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
