"""One transaction at a time per wallet address on this machine, across processes.

A mount and its upload worker are two processes signing with the same key, and so is a second
`WALRUSFS_HOME` pointed at the same Sui wallet. Both pick the wallet's largest SUI coin for gas
and merge its WAL coins. Two transactions built from the same owned-object versions are not a
harmless race on a real network: the second is refused as stale at best, and a pair signed
before either executes is an equivocation that leaves the coin locked until the epoch ends
(Sui's owned-object locks; the Walrus client keeps its wallet behind a mutex for the same
reason, `crates/walrus-sui/src/client.rs` in MystenLabs/walrus). A mutex is per process; this
lock is per machine.

The lock is an `flock(2)` on a file named after the address in a directory only this user can
write: `$XDG_RUNTIME_DIR/walrusfs` when it exists, else `/tmp/walrusfs-<uid>` (created 0700;
refused when someone else owns it). `flock` ends with the process, so a killed holder never
leaves the wallet locked.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from chain import errors


def lock_dir() -> Path:
    """The per-user directory of wallet locks, created private.

    Raises:
        WalletError: the directory exists but belongs to another user or others can write it.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = (
        Path(runtime) / "walrusfs"
        if runtime and Path(runtime).is_dir()
        else Path(tempfile.gettempdir()) / f"walrusfs-{os.getuid()}"
    )
    base.mkdir(mode=0o700, exist_ok=True)
    st = base.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise errors.WalletError(
            f"{base}: the wallet lock directory must be a directory of uid {os.getuid()} that "
            "only its owner can write; remove it and retry"
        )
    return base


@contextlib.asynccontextmanager
async def wallet_lock(address: str) -> AsyncIterator[None]:
    """Hold the machine-wide lock of `address` (waiting in a thread, never on the loop)."""
    path = lock_dir() / f"{address.lower()}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
