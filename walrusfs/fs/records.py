"""The sealed file record every uploaded chunk carries (a blob's attribute, a quilt patch's
tag): what `walrusfs fsck --rebuild` (rebuild.py) needs to put the chunk back in a tree
without the database."""

from __future__ import annotations

import sqlite3

from cache import Key
from walrusfs.fs import crypto
from walrusfs.fs.schema import path_of

FILE_ATTR = "walrusfs:file"  # blob attribute / quilt patch tag: the sealed file record


def file_record(
    db: sqlite3.Connection,
    keys: crypto.VolumeKeys | None,
    key: Key,
    *,
    chunk_size: int,
    length: int,
) -> str:
    """The file's path, metadata and the chunk's place (`length` bytes of it), sealed with the
    volume's metadata key (a path is as private as the content)."""
    inode, chunkno = key
    row = db.execute(
        "SELECT mode, uid, gid, size, mtime_ns FROM inodes WHERE id = ?", (inode,)
    ).fetchone()
    mode, uid, gid, size, mtime_ns = row if row is not None else (0o100644, 0, 0, 0, 0)
    info = {
        "path": path_of(db, inode),
        "inode": inode,
        "chunk": chunkno,
        "chunk_size": chunk_size,
        "mode": mode,
        "uid": uid,
        "gid": gid,
        "size": size,
        "mtime_ns": mtime_ns,
        "length": length,
    }
    return crypto.seal_json(keys, info)
