"""The kernel's read-ahead window for the mount: 1 MiB instead of the 128 KiB a new FUSE
filesystem gets.

A buffered sequential read reaches the mount as read requests of at most the read-ahead
window (`/sys/class/bdi/<major>:<minor>/read_ahead_kb`, 128 by default for FUSE). Each request
costs the daemon a fixed amount of Python besides the bytes, so larger requests read faster:
on this machine a 512 MiB file read after its upload (from the block cache) went from 340-411
MiB/s at 128 KiB to 533-596 MiB/s at 1 MiB (`dd bs=1M`, 100 shards; docs/benchmarks.md). The
kernel caps requests at the connection's max_pages (libfuse 3.14 asks for 256 pages, 1 MiB),
so 1 MiB is also the largest request there can be.

The window is set once the kernel's FUSE_INIT has been answered: the answer sets it too (to
the smaller of the kernel's and libfuse's maximum read-ahead, 128 KiB), so a window set before
it is undone. Only root may write the setting; for other users the mount keeps the kernel's
default and says so in its log.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import trio

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024


def device_of(mountpoint: Path, mountinfo: str) -> str | None:
    """The "major:minor" of the filesystem mounted at `mountpoint` (the last mount there), from
    the text of /proc/self/mountinfo. Read from there, not with stat(): the mount's own
    handlers do not run yet when this is asked, and a stat would wait for them."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4 and _unescape(fields[4]) == str(mountpoint):
            found = fields[2]
    return found


def _unescape(path: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    for code in ("040", "011", "012", "134"):
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


def raise_read_ahead(mountpoint: Path, kb: int = READ_AHEAD_KB) -> bool:
    """Set the read-ahead window of the filesystem at `mountpoint` to `kb` KiB; whether it
    was set (False, and a log line, when not permitted or not found)."""
    try:
        device = device_of(mountpoint, Path("/proc/self/mountinfo").read_text())
        if device is None:
            log.info("read-ahead left at the kernel's default: %s not in mountinfo", mountpoint)
            return False
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{kb}\n")
    except OSError as exc:
        log.info("read-ahead left at the kernel's default (%s)", exc)
        return False
    return True


async def raise_read_ahead_when_live(mountpoint: Path, kb: int = READ_AHEAD_KB) -> None:
    """`raise_read_ahead` once the mount answers: a stat of the mountpoint (in a worker
    thread, served by the mount's own loop) returns only after FUSE_INIT was answered."""
    try:
        # abandoned if the mount ends first: a stat the loop will never serve must not hold it
        await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
    except OSError as exc:
        log.info("read-ahead left at the kernel's default (%s)", exc)
        return
    await trio.to_thread.run_sync(raise_read_ahead, mountpoint, kb)
