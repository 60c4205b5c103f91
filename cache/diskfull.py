"""A full disk is ENOSPC, whichever store ran out.

pwrite raises OSError(ENOSPC) itself; SQLite reports "database or disk is full" (SQLITE_FULL)
as a sqlite3.OperationalError, which the mount's handlers would pass to the kernel as EIO. The
staging area's small.db and the volume database both go through here, so a writer sees one
errno for a full disk under WALRUSFS_HOME.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


def _is_full(exc: BaseException) -> bool:
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def is_disk_full(exc: BaseException) -> bool:
    """SQLite's "database or disk is full" (SQLITE_FULL), or an OSError ENOSPC: the disk under
    WALRUSFS_HOME is full, which the writer must see as ENOSPC (not EIO)."""
    return _is_full(exc) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


@contextmanager
def disk_full_is_enospc() -> Iterator[None]:
    """Re-raise SQLITE_FULL as OSError(ENOSPC): the one errno for a full disk, which the
    mount's handlers pass to the kernel unchanged (a bare sqlite3 error would become EIO).

    Raises:
        OSError: ENOSPC, for an SQLITE_FULL raised inside; other errors pass unchanged.
    """
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not _is_full(exc):
            raise
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})") from exc
