"""A node's test switches: `faults.json` in the node directory.

The launcher's `walrusfs devnet node corrupt|slow|refuse|heal` (`Devnet.set_faults`) writes
the file; the node re-reads it whenever its modification time changes, so a switch takes
effect at the next request without restarting the node:

    {"corrupt": true}       flip bytes in every sliver served (the BCS stays well-formed, the
                            Merkle root does not match)
    {"delay_ms": N}         answer every request N ms late
    {"refuse": true}        answer every request 503 UNAVAILABLE
    {"sync_paused": true}   hold the node before it fetches the shards an epoch change gave it
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codec.bcs import Reader

log = logging.getLogger("walrusfs.devnet.node")

FAULTS_FILE = "faults.json"


@dataclass
class Faults:
    corrupt: bool = False
    delay_ms: int = 0
    refuse: bool = False
    #: the node neither fetches the shards it gained nor attests `epoch_sync_done` while set
    #: (a node slow to take over its shards: the epoch change stays in progress)
    sync_paused: bool = False


class FaultSwitch:
    """`faults.json`, re-read when its modification time changes (one stat per request)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None
        self.current = Faults()

    def get(self) -> Faults:
        try:
            stamp = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._stamp, self.current = None, Faults()
            return self.current
        if stamp != self._stamp:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
                self.current = Faults(
                    bool(raw.get("corrupt", False)),
                    int(raw.get("delay_ms", 0)),
                    bool(raw.get("refuse", False)),
                    bool(raw.get("sync_paused", False)),
                )
            except (ValueError, OSError, AttributeError) as exc:
                log.warning("ignoring unreadable %s: %s", self.path, exc)
                self.current = Faults()
            self._stamp = stamp
        return self.current


def read_faults(node_dir: Path) -> dict[str, Any]:
    """The switches as written (for `devnet status`); {} when there is no readable file."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        raw: dict[str, Any] = json.loads((node_dir / FAULTS_FILE).read_text())
        return raw
    return {}


def write_faults(node_dir: Path, faults: dict[str, Any]) -> dict[str, Any]:
    """Merge `faults` into the node's switches; an empty `faults` clears them (heal). The
    file is replaced atomically: the node never reads a half-written one.

    Returns:
        the switches now in force.
    """
    path = node_dir / FAULTS_FILE
    current: dict[str, Any] = {}
    if faults:
        with contextlib.suppress(FileNotFoundError, ValueError):
            current = json.loads(path.read_text(encoding="utf-8"))
        current.update(faults)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return current


def corrupt_sliver(sliver_bcs: bytes) -> bytes:
    """Flip the first byte of every symbol: same length and BCS shape, wrong content (what
    the `corrupt` switch serves, so a client must catch it by the Merkle root)."""
    reader = Reader(sliver_bcs)
    length = reader.uleb128()
    start = reader.pos
    reader.take(length)
    symbol_size = reader.u16()
    out = bytearray(sliver_bcs)
    for i in range(start, start + length, symbol_size):
        out[i] ^= 0xFF
    return bytes(out)
