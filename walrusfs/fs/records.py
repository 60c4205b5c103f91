"""The sealed file record every uploaded chunk carries (a blob's attribute, a quilt patch's
tag): what `walrusfs fsck --rebuild` (rebuild.py) needs to put the chunk back in a tree
without the database. Its layout is in docs/formats.md ("Blob attributes").

The record names its version (`v`): a walrusfs that meets a newer record than it reads says
so instead of misreading it. A record without the field is version 1."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from cache import Key
from walrusfs.fs import crypto
from walrusfs.fs.schema import path_of

FILE_ATTR = "walrusfs:file"  # blob attribute / quilt patch tag: the sealed file record
RECORD_VERSION = 1  # the `v` this walrusfs writes and the newest it reads


def is_file_attr(key: str) -> bool:
    """`walrusfs:file`, or `walrusfs:file:<n>`: the records of further files whose bytes
    equal the first's, added when a storage pool's blob is reused (one entry per blob ID)."""
    return key == FILE_ATTR or (
        key.startswith(FILE_ATTR + ":") and key[len(FILE_ATTR) + 1 :].isdigit()
    )


@dataclass(frozen=True)
class Record:
    """One chunk as its blob describes it (the fields of the sealed `walrusfs:file`)."""

    path: str
    inode: int
    chunk: int
    chunk_size: int
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    length: int
    blob: str  # object ID of the Blob holding it
    patch: str | None  # quilt patch ID (text), None for a blob of its own


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
        "v": RECORD_VERSION,
    }
    return crypto.seal_json(keys, info)


def read_record(value: str, keys: crypto.VolumeKeys | None, blob: str, patch: str | None) -> Record:
    """The record sealed in `value`, found on Blob `blob` (in quilt patch `patch`, if any).

    Raises:
        crypto.DecryptError: sealed with another key, or altered.
        ValueError: not a record, or a newer version than RECORD_VERSION.
        KeyError, TypeError: a field missing or of the wrong type.
    """
    info = crypto.open_json(keys, value)
    version = int(info.get("v", 1))
    if version > RECORD_VERSION:
        raise ValueError(
            f"file record version {version} is newer than this walrusfs reads "
            f"({RECORD_VERSION}): upgrade walrusfs"
        )
    return Record(
        path=str(info["path"] or ""),
        inode=int(info["inode"]),
        chunk=int(info["chunk"]),
        chunk_size=int(info["chunk_size"]),
        mode=int(info["mode"]),
        uid=int(info["uid"]),
        gid=int(info["gid"]),
        size=int(info["size"]),
        mtime_ns=int(info["mtime_ns"]),
        length=int(info["length"]),
        blob=blob,
        patch=patch,
    )
