"""Allocator tuning for a process that encodes and decodes large blobs repeatedly.

Encoding a blob allocates ~4.5x its size in sliver buffers and frees them soon after. With
glibc's defaults each of those buffers is a fresh `mmap` (or the freed heap is trimmed back to
the OS), so every encode pays page faults and zeroing for hundreds of megabytes: about a quarter
of the encode time at 64 MiB, and most of the system time. Keeping large buffers on the heap
and not trimming below `retain_bytes` lets the next encode reuse the same pages.

Retained heap is per arena, and glibc gives each new thread its own arena (up to 8 per core):
a process whose encodes, verifications and file reads run on many worker threads kept a
retained heap in each (the mount's upload worker reached 3.1 GiB writing a 4 GiB file). At most
`MAX_ARENAS` arenas bounds what is retained to a small multiple of one encode's peak, and
`release_free_memory` hands the free pages back once a large encoding is dropped.

This changes process-wide allocator settings, so it is opt-in: the `walrusfs` command calls it
at start-up; a library user of `codec` decides for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

# <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: arenas at most: the main one and one shared by every worker thread (a store encodes one blob
#: at a time, so the threads seldom allocate large buffers at once)
MAX_ARENAS = 2
#: glibc refuses an mmap threshold above HEAP_MAX_SIZE/2 (32 MiB on 64-bit).
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
DEFAULT_RETAIN_BYTES = 1 << 30


def tune_allocator(retain_bytes: int = DEFAULT_RETAIN_BYTES) -> bool:
    """Serve buffers up to 32 MiB from the heap and keep up to `retain_bytes` of freed heap.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None) if libc is not None else None
    if mallopt is None:
        log.debug("no mallopt in the C library; allocator left at its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, min(retain_bytes, 2**31 - 1))) and ok
    ok = bool(mallopt(_M_ARENA_MAX, MAX_ARENAS)) and ok
    return ok


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS (glibc `malloc_trim(0)`), wherever they are
    in the heaps: for a long-lived process after it drops a large encoding, so its RSS falls
    back instead of staying at the peak. False where there is no malloc_trim."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once: `find_library` runs `ldconfig` in a subprocess, too dear for
    a call after every upload."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None
