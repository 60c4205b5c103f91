"""Locate and install the official Walrus wasm encoder (shared/tools/oracle) outside the repo.

The oracle's npm packages are installed into a scratch copy, never into the repository.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "tools" / "oracle"


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def install_oracle(dest: Path, source: Path = DEFAULT_SOURCE) -> Path:
    """Copy the oracle to `dest` and `npm ci` its pinned packages there (idempotent)."""
    if not (source / "blob_id.mjs").exists():
        raise FileNotFoundError(f"no Walrus oracle at {source}")
    if not (dest / "node_modules" / "@mysten" / "walrus-wasm").exists():
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(source, dest, ignore=shutil.ignore_patterns("node_modules"))
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=dest, check=True
        )
    return dest
